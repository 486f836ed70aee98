func.func @non_strided_layout(%q: memref<4x32x128xbf16, affine_map<(d0, d1, d2) -> (d0 floordiv 2, d1, d2)>>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<4x32x128xbf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<4x32x128xbf16>) : memref<4x32x128xbf16, affine_map<(d0, d1, d2) -> (d0 floordiv 2, d1, d2)>>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}
