// RUN: paged-attn-opt %s --convert-paged-attn-to-gpu -canonicalize -cse | FileCheck %s
// RUN: paged-attn-opt %s --convert-paged-attn-to-gpu="kv-stages=2" -canonicalize -cse | FileCheck %s --check-prefix=STAGES2
// RUN: paged-attn-opt %s --convert-paged-attn-to-gpu="tensor-cores=off" -canonicalize -cse | FileCheck %s --check-prefix=OFF
// RUN: paged-attn-opt %s --convert-paged-attn-to-gpu="shared-memory-limit=81920" -canonicalize -cse | FileCheck %s --check-prefix=LIMIT80K
// RUN: paged-attn-opt %s --convert-paged-attn-to-gpu="shared-memory-limit=49152" -canonicalize -cse | FileCheck %s --check-prefix=OFF
// RUN: not paged-attn-opt %s --convert-paged-attn-to-gpu="tensor-cores=maybe" 2>&1 | FileCheck %s --check-prefix=BADTC
// RUN: not paged-attn-opt %s --convert-paged-attn-to-gpu="kv-stages=5" 2>&1 | FileCheck %s --check-prefix=BADSTAGES
// RUN: not paged-attn-opt %s --convert-paged-attn-to-gpu="shared-memory-limit=-1" 2>&1 | FileCheck %s --check-prefix=BADLIMIT
// RUN: paged-attn-opt %s --convert-paged-attn-to-gpu="l2-prefetch=0" -canonicalize -cse | FileCheck %s --check-prefix=NOHINT
// RUN: paged-attn-opt %s --convert-paged-attn-to-gpu="l2-prefetch=256" -canonicalize -cse | FileCheck %s --check-prefix=HINT256
// RUN: not paged-attn-opt %s --convert-paged-attn-to-gpu="l2-prefetch=32" 2>&1 | FileCheck %s --check-prefix=BADHINT

// The tensor-core decode kernel, which `auto` picks for 16-bit caches with
// four or more query heads per KV head.

// Host side: the launch asks for the kernel's dynamic shared memory, three
// stages of a 16-token K and V tile per warp, dense rows of 128 elements
// (swizzled): 4 * 3 * 2 * 16 * 128 * 2 bytes.
// CHECK-LABEL: func.func @gqa4
// CHECK: gpu.launch_func @paged_attn_kernels::@paged_attn_decode_h32_kv8_d128_p16_bf16_nhd_w4
// CHECK-SAME: dynamic_shared_memory_size %c98304_i32
// STAGES2: dynamic_shared_memory_size %c65536_i32

// Device side: the rings and the merge buffers are views of dynamic shared
// memory; K and V rows arrive by cp.async (L2 only, asking L2 for the
// surrounding 128 bytes) from byte addresses built from the caches' global
// base addresses and strides, keyed by the shuffled page; the loop carries the softmax state, 32 accumulator registers and the
// next tile's page; each tile is waited for with stages - 1 groups still in
// flight, then read with ldmatrix (K as is, V transposed) into bf16 mma.sync.
// CHECK: gpu.func @paged_attn_decode_h32_kv8_d128_p16_bf16_nhd_w4(
// CHECK: %[[SMEM:.*]] = gpu.dynamic_shared_memory : memref<?xi8, #gpu.address_space<workgroup>>
// CHECK: %[[RINGS:.*]] = memref.view %[[SMEM]][%c0][] : memref<?xi8, #gpu.address_space<workgroup>> to memref<49152xbf16, #gpu.address_space<workgroup>>
// CHECK: memref.extract_aligned_pointer_as_index %[[SMEM]]
// CHECK: memref.extract_strided_metadata %arg1
// CHECK: nvvm.inline_ptx "cvta.to.global.u64 $0, $1;"
// CHECK: memref.extract_strided_metadata %arg2
// CHECK: nvvm.inline_ptx "cvta.to.global.u64 $0, $1;"
// CHECK: memref.view %[[SMEM]][%c0][] : memref<?xi8, #gpu.address_space<workgroup>> to memref<4x8x128xf32, #gpu.address_space<workgroup>>
// CHECK: memref.view %[[SMEM]][%c16384][] : memref<?xi8, #gpu.address_space<workgroup>> to memref<2x4x8xf32, #gpu.address_space<workgroup>>
// Pages of 16 tokens: a tile lies in one page, so the copies take no page
// by shuffle; they add each row's offset to the tile's start in the K and V
// caches (opaque to LLVM), and rows past the chunk read nothing and are
// zeros (source size $2).
// CHECK: nvvm.inline_ptx "mov.b64 $0, $1;"
// CHECK: nvvm.inline_ptx "mov.b64 $0, $1;"
// CHECK-NOT: gpu.shuffle idx
// CHECK: nvvm.inline_ptx "cp.async.cg.shared.global.L2::128B [$0], [$1], 16, $2;" ro(%{{.*}}, %{{.*}}, %[[BYTES:.*]] : i32, i64, i32)
// CHECK: nvvm.inline_ptx "cp.async.cg.shared.global.L2::128B [$0], [$1], 16, $2;" ro(%{{.*}}, %{{.*}}, %[[BYTES]] : i32, i64, i32)
// Copy k moves rows lane / 16 + 2k: a lane stores its chunk at copy 0's
// chunk XOR 2k mod 8, the XOR taken on its offset in the tile (8 elements a
// chunk).
// CHECK: arith.xori %{{.*}}, %c16 : index
// CHECK: nvvm.inline_ptx "cp.async.cg.shared.global.L2::128B [$0], [$1], 16, $2;"
// CHECK: arith.xori %{{.*}}, %c32 : index
// CHECK: arith.xori %{{.*}}, %c48 : index
// CHECK-COUNT-2: nvvm.cp.async.commit.group
// CHECK: scf.for {{.*}} -> (f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, i32) {
// CHECK: nvvm.cp.async.commit.group
// CHECK: nvvm.cp.async.wait.group 2
// CHECK: nvvm.bar.warp.sync
// CHECK: nvgpu.ldmatrix %[[RINGS]][{{.*}}] {numTiles = 4 : i32, transpose = false}
// CHECK: nvvm.mma.sync {{.*}} {layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>, multiplicandAPtxType = #nvvm.mma_type<bf16>, multiplicandBPtxType = #nvvm.mma_type<bf16>, shape = #nvvm.shape<m = 16, n = 8, k = 16>}
// CHECK: nvgpu.ldmatrix %[[RINGS]][{{.*}}] {numTiles = 4 : i32, transpose = true}
// CHECK: nvvm.bar.warp.sync
// CHECK: scf.yield
// CHECK: gpu.barrier
// CHECK: gpu.barrier
// STAGES2: nvvm.cp.async.wait.group 1

// A shared-memory limit drops stages until the kernel fits (80 KiB: two
// stages), and below the two-stage size gives the config to the CUDA-core
// kernel (the OFF checks, at 48 KiB).
// LIMIT80K: dynamic_shared_memory_size %c65536_i32
// LIMIT80K: nvvm.cp.async.wait.group 1

// Off: the CUDA-core kernel with its static shared memory.
// OFF: gpu.launch_func @paged_attn_kernels::@paged_attn_decode_h32_kv8_d128_p16_bf16_nhd_w4
// OFF-NOT: dynamic_shared_memory_size
// OFF: gpu.func @paged_attn_decode_h32_kv8_d128_p16_bf16_nhd_w4({{.*}}) workgroup(
// OFF-NOT: nvvm.mma.sync

// Two query heads per KV head stay on the CUDA cores under `auto`; f32
// caches always do.
// CHECK-LABEL: gpu.func @paged_attn_decode_h4_kv2_d64_p16_f16_nhd_w4(
// CHECK-SAME: workgroup(
// CHECK-NOT: nvvm.mma.sync
// CHECK: gpu.return
// CHECK-LABEL: gpu.func @paged_attn_decode_h16_kv2_d64_p16_f32_nhd_w4(
// CHECK-SAME: workgroup(
// CHECK-NOT: nvvm.mma.sync
// CHECK: gpu.return

// BADTC: tensor-cores must be auto, on or off, got 'maybe'
// BADSTAGES: kv-stages must be in [2, 4], got 5
// BADLIMIT: shared-memory-limit must not be negative, got -1
// BADHINT: l2-prefetch must be 0, 64, 128 or 256, got 32

// The prefetch hint's size, or none.
// NOHINT: nvvm.inline_ptx "cp.async.cg.shared.global [$0], [$1], 16, $2;"
// NOHINT-NOT: L2::
// HINT256: nvvm.inline_ptx "cp.async.cg.shared.global.L2::256B [$0], [$1], 16, $2;"

func.func @gqa4(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>,
                %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>)
    : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

func.func @gqa2(%q: memref<?x4x64xf16>, %k: memref<?x16x2x64xf16>, %v: memref<?x16x2x64xf16>,
                %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x4x64xf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x4x64xf16>)
    : memref<?x4x64xf16>, memref<?x16x2x64xf16>, memref<?x16x2x64xf16>, memref<?x?xi32>, memref<?xi32>
  return
}

func.func @f32(%q: memref<?x16x64xf32>, %k: memref<?x16x2x64xf32>, %v: memref<?x16x2x64xf32>,
               %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x16x64xf32>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x16x64xf32>)
    : memref<?x16x64xf32>, memref<?x16x2x64xf32>, memref<?x16x2x64xf32>, memref<?x?xi32>, memref<?xi32>
  return
}
