// fuzz: num-splits=4 prefetch-page-table=on tensor-cores=off
func.func @decode(%q: memref<?x16x64xf16>, %k: memref<?x16x4x64xf16>, %v: memref<?x16x4x64xf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x16x64xf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x16x64xf16>) : memref<?x16x64xf16>, memref<?x16x4x64xf16>, memref<?x16x4x64xf16>, memref<?x?xi32>, memref<?xi32>
  return
}
