func.func @padded(%q: memref<?x8x64xf16, strided<[1024, 72, 1], offset: ?>>, %k: memref<?x16x2x64xf16>, %v: memref<?x16x2x64xf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x8x64xf16, strided<[?, ?, 1], offset: ?>>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x8x64xf16, strided<[?, ?, 1], offset: ?>>) : memref<?x8x64xf16, strided<[1024, 72, 1], offset: ?>>, memref<?x16x2x64xf16>, memref<?x16x2x64xf16>, memref<?x?xi32>, memref<?xi32>
  return
}
