// RUN: paged-attn-opt %s --convert-paged-attn-to-gpu -canonicalize -cse | FileCheck %s
// RUN: paged-attn-opt %s --paged-attn-to-ptx="chip=sm_90" | FileCheck %s --check-prefix=PTX

// The split-KV merge kernel, built for bf16 partials with natural
// log-sum-exps, launched over (num_heads, batch) on [batch, heads, N, ...]
// views of the partials; N is its num_splits.
// CHECK-LABEL: func.func @merge
// CHECK: %[[PV:.*]] = memref.transpose %arg0 (d0, d1, d2, d3) -> (d1, d2, d0, d3)
// CHECK: %[[LV:.*]] = memref.transpose %arg1 (d0, d1, d2) -> (d1, d2, d0)
// CHECK: gpu.launch_func @paged_attn_kernels::@paged_attn_merge_op_h8_d64_bf16_ln_sinks_lse blocks in (%c8, %{{.*}}, %c1) threads in (%c128, %c1, %c1)
// CHECK-SAME: %c3_i32 : i32
// CHECK: gpu.func @paged_attn_merge_op_h8_d64_bf16_ln_sinks_lse(%{{.*}}: memref<?x8x?x64xbf16, strided<[?, ?, ?, 1], offset: ?>>, %{{.*}}: memref<?x8x?xf32, strided<[?, ?, ?], offset: ?>>, %{{.*}}: memref<?x8x64xbf16, strided<[?, ?, 1], offset: ?>>, %{{.*}}: i32, %{{.*}}: memref<8xf32, strided<[?], offset: ?>>, %{{.*}}: memref<?x8xf32, strided<[?, ?], offset: ?>>)
// PTX: .visible .entry paged_attn_merge_op_h8_d64_bf16_ln_sinks_lse(
func.func @merge(%p: memref<3x?x8x64xbf16>, %l: memref<3x?x8xf32>, %s: memref<8xf32>, %o: memref<?x8x64xbf16>, %lo: memref<?x8xf32>) {
  paged_attn.merge %p, %l sinks(%s : memref<8xf32>) outs(%o : memref<?x8x64xbf16>) lse(%lo : memref<?x8xf32>) : memref<3x?x8x64xbf16>, memref<3x?x8xf32>
  return
}
