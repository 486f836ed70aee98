func.func @memref_result(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) -> tensor<?x32x128xbf16> {
  %r = paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32> -> tensor<?x32x128xbf16>
  return %r : tensor<?x32x128xbf16>
}
