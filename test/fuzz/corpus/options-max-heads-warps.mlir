// fuzz: max-heads-per-cta=2 num-warps=8 tokens-per-lane-group=2 min-ctas-per-sm=2
func.func @decode(%q: memref<4x64x256xf32>, %k: memref<100x8x1x256xf32>, %v: memref<100x8x1x256xf32>, %bt: memref<4x9xi32>, %sl: memref<4xi32>, %o: memref<4x64x256xf32>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<4x64x256xf32>) {scale = 0.0625 : f32} : memref<4x64x256xf32>, memref<100x8x1x256xf32>, memref<100x8x1x256xf32>, memref<4x9xi32>, memref<4xi32>
  return
}
