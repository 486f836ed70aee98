// RUN: paged-attn-opt %s --convert-paged-attn-to-gpu -canonicalize -cse | FileCheck %s
// RUN: paged-attn-opt %s --paged-attn-to-ptx="chip=sm_90" | FileCheck %s --check-prefix=PTX

// The merge kernel with a thread per 16-byte column (8 heads of 8 columns
// in one CTA of 64 threads), built for bf16 partials with natural
// log-sum-exps, launched over (heads / 8, batch) on [batch, heads, N, ...]
// views of the partials; N is its num_splits. It folds in two partials at
// a time (16-byte loads, made only for partials that exist) and shares
// nothing: no workgroup memory, no barrier.
// CHECK-LABEL: func.func @merge
// CHECK: %[[PV:.*]] = memref.transpose %arg0 (d0, d1, d2, d3) -> (d1, d2, d0, d3)
// CHECK: %[[LV:.*]] = memref.transpose %arg1 (d0, d1, d2) -> (d1, d2, d0)
// CHECK: gpu.launch_func @paged_attn_kernels::@paged_attn_merge_op_h8_d64_bf16_ln_sinks_lse blocks in (%c1, %{{.*}}, %c1) threads in (%c64, %c1, %c1)
// CHECK-SAME: %c3_i32 : i32
// CHECK: gpu.func @paged_attn_merge_op_h8_d64_bf16_ln_sinks_lse(%{{.*}}: memref<?x8x?x64xbf16, strided<[?, ?, ?, 1], offset: ?>>, %{{.*}}: memref<?x8x?xf32, strided<[?, ?, ?], offset: ?>>, %{{.*}}: memref<?x8x64xbf16, strided<[?, ?, 1], offset: ?>>, %{{.*}}: i32, %{{.*}}: memref<8xf32, strided<[?], offset: ?>>, %{{.*}}: memref<?x8xf32, strided<[?, ?], offset: ?>>)
// CHECK-SAME: known_block_size = array<i32: 64, 1, 1>
// CHECK-NOT: workgroup
// CHECK: scf.for %{{.*}} = %c0 to %{{.*}} step %c2 iter_args
// CHECK-COUNT-2: scf.if %{{.*}} -> (f32, vector<4xf32>, vector<4xf32>)
// CHECK-NOT: gpu.barrier
// CHECK: gpu.return
// PTX: .visible .entry paged_attn_merge_op_h8_d64_bf16_ln_sinks_lse(
// PTX-NOT: bar.sync
// PTX: ld.global.v4.b32
func.func @merge(%p: memref<3x?x8x64xbf16>, %l: memref<3x?x8xf32>, %s: memref<8xf32>, %o: memref<?x8x64xbf16>, %lo: memref<?x8xf32>) {
  paged_attn.merge %p, %l sinks(%s : memref<8xf32>) outs(%o : memref<?x8x64xbf16>) lse(%lo : memref<?x8xf32>) : memref<3x?x8x64xbf16>, memref<3x?x8xf32>
  return
}
