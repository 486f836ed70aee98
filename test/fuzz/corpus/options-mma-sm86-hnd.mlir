// fuzz: chip=sm_86 tensor-cores=on kv-stages=4
func.func @decode(%q: memref<?x28x64xf16>, %k: memref<?x4x32x64xf16>, %v: memref<?x4x32x64xf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x28x64xf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x28x64xf16>) {layout = #paged_attn.kv_layout<hnd>} : memref<?x28x64xf16>, memref<?x4x32x64xf16>, memref<?x4x32x64xf16>, memref<?x?xi32>, memref<?xi32>
  return
}
