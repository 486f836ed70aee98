// @run for examples/host/runner/main.mlir on the GPU: the inputs copied to
// device memory, @split_decode on them with a device workspace for its two
// partials, the output and log-sum-exps copied back. gpu-async-region (in
// paged-attn-to-host) puts it all on one stream; the copies back are
// waited for before @run returns.
func.func @run(%q: memref<?x16x64xbf16>, %k: memref<?x16x4x64xbf16>,
               %v: memref<?x16x4x64xbf16>, %bt: memref<?x?xi32>, %split: index,
               %prefix_lens: memref<?xi32>, %suffix_lens: memref<?xi32>,
               %sinks: memref<16xf32>, %out: memref<?x16x64xbf16>,
               %lse: memref<?x16xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %batch = memref.dim %q, %c0 : memref<?x16x64xbf16>
  %pool = memref.dim %k, %c0 : memref<?x16x4x64xbf16>
  %pages = memref.dim %bt, %c1 : memref<?x?xi32>

  %dq = gpu.alloc (%batch) : memref<?x16x64xbf16>
  %dk = gpu.alloc (%pool) : memref<?x16x4x64xbf16>
  %dv = gpu.alloc (%pool) : memref<?x16x4x64xbf16>
  %dbt = gpu.alloc (%batch, %pages) : memref<?x?xi32>
  %dprefix = gpu.alloc (%batch) : memref<?xi32>
  %dsuffix = gpu.alloc (%batch) : memref<?xi32>
  %dsinks = gpu.alloc () : memref<16xf32>
  %dparts = gpu.alloc (%batch) : memref<2x?x16x64xbf16>
  %dplse = gpu.alloc (%batch) : memref<2x?x16xf32>
  %dout = gpu.alloc (%batch) : memref<?x16x64xbf16>
  %dlse = gpu.alloc (%batch) : memref<?x16xf32>

  gpu.memcpy %dq, %q : memref<?x16x64xbf16>, memref<?x16x64xbf16>
  gpu.memcpy %dk, %k : memref<?x16x4x64xbf16>, memref<?x16x4x64xbf16>
  gpu.memcpy %dv, %v : memref<?x16x4x64xbf16>, memref<?x16x4x64xbf16>
  gpu.memcpy %dbt, %bt : memref<?x?xi32>, memref<?x?xi32>
  gpu.memcpy %dprefix, %prefix_lens : memref<?xi32>, memref<?xi32>
  gpu.memcpy %dsuffix, %suffix_lens : memref<?xi32>, memref<?xi32>
  gpu.memcpy %dsinks, %sinks : memref<16xf32>, memref<16xf32>
  // NaNs in the outputs, so that a row the kernels skip shows.
  %nan16 = arith.constant 0xFFFF : bf16
  %nan32 = arith.constant 0xFFFFFFFF : f32
  gpu.memset %dout, %nan16 : memref<?x16x64xbf16>, bf16
  gpu.memset %dlse, %nan32 : memref<?x16xf32>, f32

  func.call @split_decode(%dq, %dk, %dv, %dbt, %split, %dprefix, %dsuffix,
                          %dsinks, %dparts, %dplse, %dout, %dlse)
      : (memref<?x16x64xbf16>, memref<?x16x4x64xbf16>, memref<?x16x4x64xbf16>,
         memref<?x?xi32>, index, memref<?xi32>, memref<?xi32>, memref<16xf32>,
         memref<2x?x16x64xbf16>, memref<2x?x16xf32>, memref<?x16x64xbf16>,
         memref<?x16xf32>) -> ()

  gpu.memcpy %out, %dout : memref<?x16x64xbf16>, memref<?x16x64xbf16>
  gpu.memcpy %lse, %dlse : memref<?x16xf32>, memref<?x16xf32>
  gpu.dealloc %dq : memref<?x16x64xbf16>
  gpu.dealloc %dk : memref<?x16x4x64xbf16>
  gpu.dealloc %dv : memref<?x16x4x64xbf16>
  gpu.dealloc %dbt : memref<?x?xi32>
  gpu.dealloc %dprefix : memref<?xi32>
  gpu.dealloc %dsuffix : memref<?xi32>
  gpu.dealloc %dsinks : memref<16xf32>
  gpu.dealloc %dparts : memref<2x?x16x64xbf16>
  gpu.dealloc %dplse : memref<2x?x16xf32>
  gpu.dealloc %dout : memref<?x16x64xbf16>
  gpu.dealloc %dlse : memref<?x16xf32>
  return
}
