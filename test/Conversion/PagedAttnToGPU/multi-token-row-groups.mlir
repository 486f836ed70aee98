// RUN: paged-attn-opt %s --paged-attn-select-decode-kernel | FileCheck %s --check-prefix=SELECT
// RUN: paged-attn-opt %s --paged-attn-select-decode-kernel="num-warps=3" | FileCheck %s --check-prefix=ODD
// RUN: paged-attn-opt %s --convert-paged-attn-to-gpu -canonicalize -cse | FileCheck %s

// A multi-token CTA with more rows than one warp's mma (docs/design.md,
// "Multi-token decode"): L = 8 queries of a group of 4 heads are 32 rows,
// two row groups of 2 warps each. One CTA per KV head reads every tile once.
// SELECT-LABEL: func.func @l8_group4
// SELECT: kernel = tensor_cores, num_warps = 4, heads_per_cta = 4, kv_stages = 6, {{.*}} queries_per_cta = 8>
// Odd warp counts cannot split into row groups: 16 rows, two CTAs.
// ODD-LABEL: func.func @l8_group4
// ODD: kernel = tensor_cores, num_warps = 3, heads_per_cta = 4, kv_stages = 3, {{.*}} queries_per_cta = 4>

// One CTA per KV head; shared memory for the rings of the 2 warps that
// split the tiles, each ring 3 stages per sharing warp: 2 * 6 stages * 2 *
// 16 * 64 * 2 bytes (dense, swizzled rows).
// CHECK-LABEL: func.func @l8_group4
// CHECK: gpu.launch_func @paged_attn_kernels::@paged_attn_decode_h8_kv2_d64_p16_bf16_nhd_w4_l8 blocks in (%c2,
// CHECK-SAME: threads in (%c128, %c1, %c1) dynamic_shared_memory_size %c49152_i32

// Warp w is token warp w mod 2 of row group w / 2, whose rows start at
// 16 * (w / 2). Every warp runs ceil(tiles / 2) iterations, and the ring's
// two sharers meet on barrier 1 + w mod 2 of 64 threads, once the copies of
// a tile land and once it is consumed. Each row group issues half of a
// tile's 4 copies (rows 0-3 and 8-11, rows 4-7 and 12-15) under a branch
// on the group.
// CHECK-LABEL: gpu.func @paged_attn_decode_h8_kv2_d64_p16_bf16_nhd_w4_l8(
// CHECK: [[WARP:%.+]] = arith.divui %{{.+}}, %c32 : index
// CHECK: [[TOKEN_WARP:%.+]] = arith.remui [[WARP]], %c2 : index
// CHECK: [[GROUP:%.+]] = arith.divui [[WARP]], %c2 : index
// CHECK: [[FIRST_ROW:%.+]] = arith.muli [[GROUP]], %c16 : index
// CHECK: [[ID:%.+]] = arith.addi [[TOKEN_WARP]], %c1 : index
// CHECK: [[ID32:%.+]] = arith.index_cast [[ID]] : index to i32
// CHECK: [[TILES:%.+]] = arith.ceildivui %{{.+}}, %c16 : index
// CHECK: [[WARP_TILES:%.+]] = arith.ceildivui [[TILES]], %c2 : index
// CHECK: [[OURS0:%.+]] = arith.cmpi eq, [[GROUP]], %c0 : index
// CHECK: scf.if [[OURS0]] {
// CHECK-COUNT-4: nvvm.inline_ptx "cp.async
// CHECK-NOT: cp.async
// CHECK: [[OURS1:%.+]] = arith.cmpi eq, [[GROUP]], %c1 : index
// CHECK: scf.if [[OURS1]] {
// CHECK-COUNT-4: nvvm.inline_ptx "cp.async
// CHECK: scf.for %{{.+}} = %c0 to [[WARP_TILES]] step %c1
// CHECK: nvvm.cp.async.wait.group 5
// CHECK-NEXT: nvvm.barrier id = [[ID32]] number_of_threads = %c64_i32
// CHECK: nvvm.mma.sync
// CHECK: nvvm.barrier id = [[ID32]] number_of_threads = %c64_i32
// CHECK-NEXT: scf.yield
// CHECK: gpu.barrier
// CHECK-LABEL: gpu.func @paged_attn_merge_h8_kv2_d64_p16_bf16_nhd_w4_l8
func.func @l8_group4(%q: memref<?x8x8x64xbf16>, %k: memref<?x16x2x64xbf16>,
    %v: memref<?x16x2x64xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>,
    %o: memref<?x8x8x64xbf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x8x8x64xbf16>)
    : memref<?x8x8x64xbf16>, memref<?x16x2x64xbf16>, memref<?x16x2x64xbf16>,
      memref<?x?xi32>, memref<?xi32>
  return
}
