// A decode with a log-sum-exp output and the merge of its partials.
func.func @decode(%q: memref<?x8x64xbf16>, %k: memref<?x16x2x64xbf16>, %v: memref<?x16x2x64xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x8x64xbf16>, %l: memref<?x8xf32>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x8x64xbf16>) lse(%l : memref<?x8xf32>) {layout = #paged_attn.kv_layout<nhd>} : memref<?x8x64xbf16>, memref<?x16x2x64xbf16>, memref<?x16x2x64xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

func.func @merge(%p: memref<2x?x8x64xbf16>, %pl: memref<2x?x8xf32>, %o: memref<?x8x64xbf16>) {
  paged_attn.merge %p, %pl outs(%o : memref<?x8x64xbf16>) : memref<2x?x8x64xbf16>, memref<2x?x8xf32>
  return
}
