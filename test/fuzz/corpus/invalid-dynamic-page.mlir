func.func @dynamic_page(%q: memref<?x32x128xbf16>, %k: memref<?x?x8x128xbf16>, %v: memref<?x?x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x?x8x128xbf16>, memref<?x?x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}
