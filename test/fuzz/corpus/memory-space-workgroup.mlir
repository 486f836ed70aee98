func.func @space(%q: memref<?x8x64xf16, 3>, %k: memref<?x16x2x64xf16, 3>, %v: memref<?x16x2x64xf16, 3>, %bt: memref<?x?xi32, 3>, %sl: memref<?xi32, 3>, %o: memref<?x8x64xf16, 3>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x8x64xf16, 3>) : memref<?x8x64xf16, 3>, memref<?x16x2x64xf16, 3>, memref<?x16x2x64xf16, 3>, memref<?x?xi32, 3>, memref<?xi32, 3>
  return
}
