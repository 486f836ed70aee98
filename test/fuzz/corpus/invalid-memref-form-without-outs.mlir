func.func @memref_no_outs(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>) {
  paged_attn.decode %q, %k, %v, %bt, %sl : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}
