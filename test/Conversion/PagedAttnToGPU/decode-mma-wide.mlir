// RUN: paged-attn-opt %s --convert-paged-attn-to-gpu -canonicalize -cse | FileCheck %s

// The tensor-core decode kernel above head_dim 128 (docs/design.md): a warp
// serves at most 8 query rows (a CTA two row groups of them), and rows of
// more than 16 chunks are copied one per copy with the lanes past the row
// predicated off.

// head_dim 144: three stages of 16-token K and V tiles per warp, rows padded
// to 152 elements (4 * 3 * 2 * 16 * 152 * 2 bytes); the 18 lanes of a row's
// chunks copy it, every copy under the same predicate (and rows past the
// chunk read nothing: source size $2).
// CHECK-LABEL: func.func @d144
// CHECK: gpu.launch_func @paged_attn_kernels::@paged_attn_decode_h8_kv2_d144_p16_bf16_nhd_w4
// CHECK-SAME: dynamic_shared_memory_size %c116736_i32
// MQA with 16 query heads at head_dim 256: one CTA of two row groups of 8
// rows per KV head, 2 rings * 6 stages * 2 * 16 * 256 * 2 bytes (rows of
// 32 chunks are dense, swizzled).
// CHECK-LABEL: func.func @mqa16_d256
// CHECK: gpu.launch_func @paged_attn_kernels::@paged_attn_decode_h16_kv1_d256_p16_bf16_nhd_w4 blocks in (%c1,
// CHECK-SAME: dynamic_shared_memory_size %c196608_i32

// CHECK-LABEL: gpu.func @paged_attn_decode_h8_kv2_d144_p16_bf16_nhd_w4(
// CHECK: [[COPIES:%.+]] = arith.cmpi ult, %{{.+}}, %c18 : index
// CHECK: nvvm.inline_ptx "cp.async.cg.shared.global.L2::128B [$0], [$1], 16, $2;" ro(%{{.+}}, %{{.+}}, %{{.+}} : i32, i64, i32), predicate = [[COPIES]]
// CHECK: nvvm.inline_ptx "cp.async.cg.shared.global.L2::128B [$0], [$1], 16, $2;" ro(%{{.+}}, %{{.+}}, %{{.+}} : i32, i64, i32), predicate = [[COPIES]]
// CHECK-LABEL: gpu.func @paged_attn_merge_h8_kv2_d144

// Rows of 32 chunks: every lane copies, no predicate; q's second mma row
// block is the zero operand (8 rows).
// CHECK-LABEL: gpu.func @paged_attn_decode_h16_kv1_d256_p16_bf16_nhd_w4(
// CHECK-NOT: predicate
// CHECK: nvvm.inline_ptx "cp.async.cg.shared.global.L2::128B [$0], [$1], 16, $2;" ro(%{{.+}}, %{{.+}}, %{{.+}} : i32, i64, i32){{$}}
// CHECK-NOT: predicate
// CHECK: nvvm.mma.sync A[%{{.+}}, [[ZERO:%.+]], %{{.+}}, [[ZERO]]]
// CHECK-NOT: predicate
// CHECK-LABEL: gpu.func @paged_attn_merge_h16_kv1_d256

func.func @d144(%q: memref<?x8x144xbf16>, %k: memref<?x16x2x144xbf16>,
                %v: memref<?x16x2x144xbf16>, %bt: memref<?x?xi32>,
                %sl: memref<?xi32>, %o: memref<?x8x144xbf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x8x144xbf16>)
    : memref<?x8x144xbf16>, memref<?x16x2x144xbf16>, memref<?x16x2x144xbf16>,
      memref<?x?xi32>, memref<?xi32>
  return
}

func.func @mqa16_d256(%q: memref<?x16x256xbf16>, %k: memref<?x16x1x256xbf16>,
                      %v: memref<?x16x1x256xbf16>, %bt: memref<?x?xi32>,
                      %sl: memref<?xi32>, %o: memref<?x16x256xbf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x16x256xbf16>)
    : memref<?x16x256xbf16>, memref<?x16x1x256xbf16>, memref<?x16x1x256xbf16>,
      memref<?x?xi32>, memref<?xi32>
  return
}
