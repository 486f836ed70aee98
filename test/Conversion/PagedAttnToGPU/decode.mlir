// RUN: paged-attn-opt %s --convert-paged-attn-to-gpu="num-splits=4 prefetch-page-table=on tensor-cores=off" -canonicalize -cse | FileCheck %s
// RUN: paged-attn-opt %s --convert-paged-attn-to-gpu=tensor-cores=off -canonicalize -cse | FileCheck %s --check-prefix=UNSPLIT
// RUN: paged-attn-opt %s --convert-paged-attn-to-gpu="prefetch-page-table=off tokens-per-lane-group=2 tensor-cores=off" -canonicalize -cse | FileCheck %s --check-prefix=NOPREFETCH
// These check the CUDA-core kernel; decode-mma.mlir checks the tensor-core
// one, which `auto` picks for this config. Its K/V rows are plain vector
// loads: the L2 prefetch hint is the tensor-core kernel's (inline PTX loads
// here cost up to 12 registers and were 3-8% slower on H200, bench/NOTES.md).

// Without prefetching the page-table load sits in the loop before the K/V
// loads that use it; two tokens per lane group make 16 per iteration.
// NOPREFETCH: gpu.func @paged_attn_decode_h32_kv8_d128_p16_bf16_nhd_w4(
// NOPREFETCH: } else {
// NOPREFETCH-NOT: scf.if
// NOPREFETCH: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c16 iter_args(
// NOPREFETCH: %[[PAGE:.*]] = memref.load %{{.*}}[%block_id_y, %{{.*}}]
// NOPREFETCH: %[[PIDX:.*]] = arith.index_castui %[[PAGE]] : i32 to index
// NOPREFETCH: vector.load %{{.*}}[%[[PIDX]], %{{.*}}, %block_id_x, %{{.*}}] {alignment = 16 : i64}

// Host side: the split-KV workspace, casts to the kernels' strided argument
// types, the decode launch over (kv heads, batch, splits) and the merge.
// CHECK-LABEL: func.func @nhd
// CHECK-SAME: (%[[Q:.*]]: memref<?x32x128xbf16>, %{{.*}}: memref<?x16x8x128xbf16>
// CHECK-DAG: %[[C4:.*]] = arith.constant 4 : index
// CHECK-DAG: %[[C8:.*]] = arith.constant 8 : index
// CHECK-DAG: %[[C32:.*]] = arith.constant 32 : index
// CHECK-DAG: %[[C128:.*]] = arith.constant 128 : index
// CHECK: %[[B:.*]] = memref.dim %[[Q]], %c0
// CHECK: %[[PO:.*]] = gpu.alloc (%[[B]], %[[C4]]) : memref<?x32x?x128xf32>
// CHECK: %[[LSE:.*]] = gpu.alloc (%[[B]], %[[C4]]) : memref<?x32x?xf32>
// CHECK: memref.cast %[[Q]] : memref<?x32x128xbf16> to memref<?x32x128xbf16, strided<[?, ?, 1], offset: ?>>
// CHECK: gpu.launch_func @paged_attn_kernels::@paged_attn_decode_h32_kv8_d128_p16_bf16_nhd_w4 blocks in (%[[C8]], %[[B]], %[[C4]]) threads in (%[[C128]], %c1, %c1)
// The scale, num_splits and split_chunk: even chunks, as the pass knows
// no lengths to plan for.
// CHECK-SAME: %{{.*}} : f32, %c4_i32 : i32, %c0_i32 : i32)
// CHECK: gpu.launch_func @paged_attn_kernels::@paged_attn_merge_h32_kv8_d128_p16_bf16_nhd_w4 blocks in (%[[C32]], %[[B]], %c1) threads in (%[[C128]], %c1, %c1)
// CHECK: gpu.dealloc %[[PO]]
// CHECK: gpu.dealloc %[[LSE]]
// CHECK-NOT: paged_attn.decode

// UNSPLIT-LABEL: func.func @nhd
// UNSPLIT: gpu.launch_func @paged_attn_kernels::@paged_attn_decode_
// UNSPLIT-NOT: gpu.launch_func @paged_attn_kernels::@paged_attn_merge_
// UNSPLIT: return
func.func @nhd(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>,
               %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>)
    : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// A second op with the same config reuses the kernels.
// CHECK-LABEL: func.func @same_config
// CHECK: gpu.launch_func @paged_attn_kernels::@paged_attn_decode_h32_kv8_d128_p16_bf16_nhd_w4
func.func @same_config(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>,
                       %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) {scale = 0.25 : f32}
    : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// The kernel: one CTA per (KV head, sequence, chunk) serving the whole GQA
// group (4 query heads), shared memory for the cross-warp merge.
// CHECK: gpu.module @paged_attn_kernels
// CHECK: gpu.func @paged_attn_decode_h32_kv8_d128_p16_bf16_nhd_w4(
// CHECK-SAME: %[[KQ:[a-z0-9]+]]: memref<?x32x128xbf16, strided<[?, ?, 1], offset: ?>>
// CHECK-SAME: %[[KK:[a-z0-9]+]]: memref<?x16x8x128xbf16, strided<[?, ?, ?, 1], offset: ?>>
// CHECK-SAME: %[[KV:[a-z0-9]+]]: memref<?x16x8x128xbf16, strided<[?, ?, ?, 1], offset: ?>>
// CHECK-SAME: %[[KBT:[a-z0-9]+]]: memref<?x?xi32, strided<[?, ?], offset: ?>>
// CHECK-SAME: %{{.*}}: f32, %[[NUM_SPLITS:[a-z0-9]+]]: i32, %[[SPLIT_CHUNK:[a-z0-9]+]]: i32)
// CHECK-SAME: workgroup(%[[ACC:.*]] : memref<4x4x128xf32, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}, %[[STAT:.*]] : memref<2x4x4xf32, #gpu.address_space<workgroup>> {llvm.align = 16 : i64})
// CHECK-SAME: kernel attributes {known_block_size = array<i32: 128, 1, 1>}
// The split's chunk (Spec's splitChunkLength): the keys' even share over
// num_splits, or split_chunk where that is more, in whole iterations of 32.
// CHECK-DAG: %[[NEG_INF:.*]] = arith.constant 0xFF800000 : f32
// CHECK-DAG: %[[ZEROS:.*]] = arith.constant dense<0.000000e+00> : vector<8xf32>
// CHECK: %[[KEYS:.*]] = arith.index_castui %{{.*}} : i32 to index
// CHECK: %[[SPLITS:.*]] = arith.index_castui %[[NUM_SPLITS]] : i32 to index
// CHECK: %[[SHARE:.*]] = arith.ceildivui %[[KEYS]], %[[SPLITS]] : index
// CHECK: %[[LEAST:.*]] = arith.index_castui %[[SPLIT_CHUNK]] : i32 to index
// CHECK: %[[LONGER:.*]] = arith.maxui %[[SHARE]], %[[LEAST]] : index
// CHECK: %[[ITERS:.*]] = arith.ceildivui %[[LONGER]], %c32 : index
// CHECK: %[[CHUNK:.*]] = arith.muli %[[ITERS]], %c32 : index
// CHECK: %[[START:.*]] = arith.muli %block_id_z, %[[CHUNK]] : index
// CHECK: %[[BEGIN:.*]] = arith.minui %[[START]], %[[KEYS]] : index
// CHECK: %[[STOP:.*]] = arith.addi %[[BEGIN]], %[[CHUNK]] : index
// CHECK: %[[END:.*]] = arith.minui %[[STOP]], %[[KEYS]] : index
// A split without keys writes its rows' empty partials (zeros, log-sum-exp
// -inf) and nothing else; the kernel's body is the else branch.
// CHECK: %[[IS_SPLIT:.*]] = arith.cmpi ugt, %[[SPLITS]], %c1 : index
// CHECK: %[[NO_KEYS:.*]] = arith.cmpi eq, %[[BEGIN]], %[[END]] : index
// CHECK: %[[SKIP:.*]] = arith.andi %[[IS_SPLIT]], %[[NO_KEYS]] : i1
// CHECK: scf.if %[[SKIP]] {
// CHECK: scf.for %{{.*}} = %thread_id_x to %c64 step %c128 {
// CHECK: vector.store %[[ZEROS]], %{{.*}}[%block_id_y, %{{.*}}, %block_id_z, %{{.*}}]
// CHECK: memref.store %[[NEG_INF]], %{{.*}}[%block_id_y, %{{.*}}, %block_id_z]
// CHECK: } else {
// q of the four heads, loaded once as 16-byte vectors.
// CHECK-COUNT-4: vector.load %[[KQ]]{{.*}} {alignment = 16 : i64} : {{.*}}, vector<8xbf16>
// The first iteration's four page-table entries, loaded before the loop
// when the chunk is not empty.
// CHECK: scf.if %{{.*}} -> (index, index, index, index) {
// CHECK-COUNT-4: memref.load %[[KBT]][%block_id_y, %{{.*}}]
// The main loop: 32 tokens per iteration (4 warps x 2 lane groups x 4),
// carrying the softmax state (4 max, 4 sum, 4 accumulators) and the pages.
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c32 iter_args({{.*}}, %[[P0:[a-z0-9]+]] = %{{.*}}#0, %{{.*}} = %{{.*}}#1, %{{.*}} = %{{.*}}#2, %{{.*}} = %{{.*}}#3) -> ({{.*}}index, index, index, index)
// The next iteration's pages are loaded first, then K and V rows
// (nhd: [page, slot, kv head, column]) with this iteration's pages.
// CHECK-COUNT-4: memref.load %[[KBT]][%block_id_y, %{{.*}}]
// CHECK: vector.load %[[KK]][%[[P0]], %{{.*}}, %block_id_x, %{{.*}}] {alignment = 16 : i64} : {{.*}}, vector<8xbf16>
// CHECK: vector.load %[[KV]][%[[P0]], %{{.*}}, %block_id_x, %{{.*}}] {alignment = 16 : i64} : {{.*}}, vector<8xbf16>
// Logits: a butterfly over the 16 lanes of a row (offsets 8, 4, 2, 1).
// CHECK: gpu.shuffle xor %{{.*}}, %c8_i32, %c32_i32 : f32
// CHECK: gpu.shuffle xor %{{.*}}, %c4_i32, %c32_i32 : f32
// CHECK: gpu.shuffle xor %{{.*}}, %c2_i32, %c32_i32 : f32
// CHECK: gpu.shuffle xor %{{.*}}, %c1_i32, %c32_i32 : f32
// Online softmax in base 2: one ex2.approx per exponential.
// CHECK: llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f"
// CHECK: scf.yield
// Merge of the two lane groups of each warp, then across warps.
// CHECK: gpu.shuffle xor %{{.*}}, %c16_i32, %c32_i32 : f32
// CHECK: vector.store %{{.*}}, %[[ACC]]
// CHECK: gpu.barrier
// CHECK: scf.for %{{.*}} = %thread_id_x to %c64 step %c128
// CHECK: scf.if
// The split path writes f32 partials and the log-sum-exp...
// CHECK: vector.store %{{.*}} : memref<?x32x?x128xf32, strided<[?, ?, ?, 1], offset: ?>>, vector<8xf32>
// CHECK: llvm.call_intrinsic "llvm.nvvm.lg2.approx.ftz.f"
// ...the unsplit path the output itself.
// CHECK: } else {
// CHECK: arith.truncf %{{.*}} : vector<8xf32> to vector<8xbf16>
// CHECK: vector.store %{{.*}} : memref<?x32x128xbf16, strided<[?, ?, 1], offset: ?>>, vector<8xbf16>
// CHECK: gpu.return

// The merge: 128 threads, each a 16-byte column (16 of them) and every
// eighth split; the max over splits through a per-warp buffer, the split
// lanes' sums and accumulators through shared memory.
// CHECK: gpu.func @paged_attn_merge_h32_kv8_d128_p16_bf16_nhd_w4(
// CHECK-SAME: workgroup(%[[MAXS:.*]] : memref<4xf32, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}, %[[SUMS:.*]] : memref<128xf32, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}, %[[ACCS:.*]] : memref<128x8xf32, #gpu.address_space<workgroup>> {llvm.align = 16 : i64})
// CHECK-SAME: known_block_size = array<i32: 128, 1, 1>
// CHECK: gpu.shuffle xor
// CHECK: memref.store %{{.*}}, %[[MAXS]]
// CHECK: gpu.barrier
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c8 iter_args(
// CHECK: vector.load %arg0[
// CHECK: memref.store %{{.*}}, %[[SUMS]]
// CHECK: vector.store %{{.*}}, %[[ACCS]]
// CHECK: gpu.barrier
// CHECK: vector.store %{{.*}} : memref<?x32x128xbf16, strided<[?, ?, 1], offset: ?>>, vector<8xbf16>
// CHECK: gpu.func @paged_attn_check_h32_kv8_d128_p16_bf16_nhd_w4(
// CHECK: memref.atomic_rmw mins

// hnd reads [page, kv head, slot, column]; an 8-head group of 64-wide f16
// rows takes 8 lanes a row.
// CHECK: gpu.func @paged_attn_decode_h16_kv2_d64_p128_f16_hnd_w4(
// CHECK: vector.load %{{.*}}[%{{.*}}, %block_id_x, %{{.*}}, %{{.*}}] {alignment = 16 : i64} : memref<?x2x128x64xf16, strided<[?, ?, ?, 1], offset: ?>>, vector<8xf16>
func.func @hnd(%q: memref<?x16x64xf16>, %k: memref<?x2x128x64xf16>, %v: memref<?x2x128x64xf16>,
               %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x16x64xf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x16x64xf16>) {layout = #paged_attn.kv_layout<hnd>}
    : memref<?x16x64xf16>, memref<?x2x128x64xf16>, memref<?x2x128x64xf16>, memref<?x?xi32>, memref<?xi32>
  return
}
