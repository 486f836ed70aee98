func.func @batch_mismatch(%q: memref<4x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<3x?xi32>, %sl: memref<?xi32>, %o: memref<4x32x128xbf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<4x32x128xbf16>) : memref<4x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<3x?xi32>, memref<?xi32>
  return
}
