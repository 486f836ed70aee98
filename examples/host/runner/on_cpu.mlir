// @run for examples/host/runner/main.mlir on the CPU: @split_decode on the
// host buffers, lowered by paged-attn-to-cpu (the ops' reference loops).
// The same main and checker then test the inputs' formulas and the
// checker's float64 recomputation where no GPU is (test/Integration).
func.func @run(%q: memref<?x16x64xbf16>, %k: memref<?x16x4x64xbf16>,
               %v: memref<?x16x4x64xbf16>, %bt: memref<?x?xi32>, %split: index,
               %prefix_lens: memref<?xi32>, %suffix_lens: memref<?xi32>,
               %sinks: memref<16xf32>, %out: memref<?x16x64xbf16>,
               %lse: memref<?x16xf32>) {
  %c0 = arith.constant 0 : index
  %batch = memref.dim %q, %c0 : memref<?x16x64xbf16>
  %parts = memref.alloc(%batch) : memref<2x?x16x64xbf16>
  %plse = memref.alloc(%batch) : memref<2x?x16xf32>
  func.call @split_decode(%q, %k, %v, %bt, %split, %prefix_lens, %suffix_lens,
                          %sinks, %parts, %plse, %out, %lse)
      : (memref<?x16x64xbf16>, memref<?x16x4x64xbf16>, memref<?x16x4x64xbf16>,
         memref<?x?xi32>, index, memref<?xi32>, memref<?xi32>, memref<16xf32>,
         memref<2x?x16x64xbf16>, memref<2x?x16xf32>, memref<?x16x64xbf16>,
         memref<?x16xf32>) -> ()
  memref.dealloc %parts : memref<2x?x16x64xbf16>
  memref.dealloc %plse : memref<2x?x16xf32>
  return
}
