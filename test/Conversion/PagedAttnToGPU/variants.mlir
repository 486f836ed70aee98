// RUN: paged-attn-opt %s --convert-paged-attn-to-gpu="num-splits=4" -canonicalize -cse | FileCheck %s
// RUN: paged-attn-opt %s --convert-paged-attn-to-gpu="num-splits=4 tensor-cores=off" -canonicalize -cse | FileCheck %s
// RUN: paged-attn-opt %s --paged-attn-to-ptx="chip=sm_90" | FileCheck %s --check-prefix=PTX
// RUN: paged-attn-opt %s --convert-paged-attn-to-gpu="num-splits=4" -canonicalize -cse | FileCheck %s --check-prefix=INPAGE

// A decode with variants launches kernels named and specialised by them,
// whose arguments after the plain ones are the variants' values in the
// Spec's order: window (i64), soft_cap (f32), alibi_slopes, sinks, lse.
// Split, the merge kernel applies the sinks and writes the log-sum-exp.
// CHECK-LABEL: func.func @decode_variants
// CHECK-SAME: %[[SLOPES:[^:]*]]: memref<8xf32>, %[[SINKS:[^:]*]]: memref<8xf32>, %[[LSE:[^:]*]]: memref<?x8xf32>)
// CHECK-DAG: %[[W:.*]] = arith.constant 100 : i64
// CHECK-DAG: %[[CAP:.*]] = arith.constant 3.000000e+01 : f32
// CHECK-DAG: %[[SLOPESC:.*]] = memref.cast %[[SLOPES]] : memref<8xf32> to memref<8xf32, strided<[?], offset: ?>>
// CHECK-DAG: %[[SINKSC:.*]] = memref.cast %[[SINKS]] : memref<8xf32> to memref<8xf32, strided<[?], offset: ?>>
// CHECK-DAG: %[[LSEC:.*]] = memref.cast %[[LSE]] : memref<?x8xf32> to memref<?x8xf32, strided<[?, ?], offset: ?>>
// CHECK: gpu.launch_func @paged_attn_kernels::@paged_attn_decode_h8_kv2_d64_p16_f16_nhd_w4_win_cap_alibi_sinks_lse
// CHECK-SAME: %{{.*}} : f32, %{{.*}} : i32, %[[W]] : i64, %[[CAP]] : f32, %[[SLOPESC]] : {{.*}}, %[[SINKSC]] : {{.*}}, %[[LSEC]] : {{.*}})
// CHECK: gpu.launch_func @paged_attn_kernels::@paged_attn_merge_h8_kv2_d64_p16_f16_nhd_w4_win_cap_alibi_sinks_lse
// CHECK-SAME: %{{.*}} : i32, %[[SINKSC]] : {{.*}}, %[[LSEC]] : {{.*}})
// CHECK: gpu.func @paged_attn_decode_h8_kv2_d64_p16_f16_nhd_w4_win_cap_alibi_sinks_lse({{.*}}, %{{.*}}: i64, %{{.*}}: f32, %{{.*}}: memref<8xf32, strided<[?], offset: ?>>, %{{.*}}: memref<8xf32, strided<[?], offset: ?>>, %{{.*}}: memref<?x8xf32, strided<[?, ?], offset: ?>>)
// The window: the chunk starts at max(n - W, 0).
// CHECK: arith.maxsi
// CHECK: gpu.func @paged_attn_merge_h8_kv2_d64_p16_f16_nhd_w4_win_cap_alibi_sinks_lse({{.*}}, %{{.*}}: i32, %{{.*}}: memref<8xf32, strided<[?], offset: ?>>, %{{.*}}: memref<?x8xf32, strided<[?, ?], offset: ?>>)

// On tensor cores with pages of 16 a tile lies in one page under a window
// too: the tiles start at the multiple of 16 at or before the chunk's first
// key, and a row is zero-filled where its distance from that key, unsigned,
// is not below the chunk's length (before the chunk or past it).
// INPAGE-LABEL: gpu.func @paged_attn_decode_h8_kv2_d64_p16_f16_nhd_w4_win_cap_alibi_sinks_lse(
// INPAGE: %[[FIRST:.*]] = arith.maxsi
// INPAGE: %[[BEGIN:.*]] = arith.addi %{{.*}}, %[[FIRST]] : index
// INPAGE: %[[END:.*]] = arith.addi %{{.*}}, %[[FIRST]] : index
// INPAGE: %[[INTILE:.*]] = arith.remui %[[BEGIN]], %c16 : index
// INPAGE: %[[ORIGIN:.*]] = arith.subi %[[BEGIN]], %[[INTILE]] : index
// INPAGE: %[[LEN:.*]] = arith.subi %[[END]], %[[BEGIN]] : index
// INPAGE: %[[LEN32:.*]] = arith.index_cast %[[LEN]] : index to i32
// INPAGE: arith.subi %[[END]], %[[ORIGIN]] : index
// INPAGE: scf.for
// INPAGE: nvvm.inline_ptx "mov.b64 $0, $1;"
// INPAGE: %[[AHEAD:.*]] = arith.subi %{{.*}}, %{{.*}} : i32
// INPAGE: %[[OUT:.*]] = arith.cmpi uge, %[[AHEAD]], %[[LEN32]] : i32
// INPAGE: nvvm.inline_ptx "cp.async.cg.shared.global.L2::128B [$0], [$1], 16, $2;"

// PTX-LABEL: .visible .entry paged_attn_decode_h8_kv2_d64_p16_f16_nhd_w4_win_cap_alibi_sinks_lse(
// PTX-LABEL: .visible .entry paged_attn_merge_h8_kv2_d64_p16_f16_nhd_w4_win_cap_alibi_sinks_lse(
func.func @decode_variants(%q: memref<?x8x64xf16>, %k: memref<?x16x2x64xf16>, %v: memref<?x16x2x64xf16>,
    %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x8x64xf16>, %a: memref<8xf32>, %s: memref<8xf32>, %l: memref<?x8xf32>) {
  paged_attn.decode %q, %k, %v, %bt, %sl alibi_slopes(%a : memref<8xf32>) sinks(%s : memref<8xf32>)
      outs(%o : memref<?x8x64xf16>) lse(%l : memref<?x8xf32>) {window = 100 : i64, soft_cap = 30.0 : f32}
    : memref<?x8x64xf16>, memref<?x16x2x64xf16>, memref<?x16x2x64xf16>, memref<?x?xi32>, memref<?xi32>
  return
}
