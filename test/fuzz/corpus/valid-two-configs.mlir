func.func @a(%q: memref<?x4x32xf32>, %k: memref<?x1x4x32xf32>, %v: memref<?x1x4x32xf32>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x4x32xf32>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x4x32xf32>) : memref<?x4x32xf32>, memref<?x1x4x32xf32>, memref<?x1x4x32xf32>, memref<?x?xi32>, memref<?xi32>
  return
}
func.func @b(%q: memref<?x64x128xbf16>, %k: memref<?x4x16x128xbf16>, %v: memref<?x4x16x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x64x128xbf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x64x128xbf16>) {layout = #paged_attn.kv_layout<hnd>} : memref<?x64x128xbf16>, memref<?x4x16x128xbf16>, memref<?x4x16x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}
