// RUN: paged-attn-opt %s --paged-attn-select-decode-kernel | FileCheck %s --check-prefix=SELECT
// RUN: paged-attn-opt %s --paged-attn-select-decode-kernel="tensor-cores=off" | FileCheck %s --check-prefix=CUDA
// RUN: paged-attn-opt %s --convert-paged-attn-to-gpu="num-splits=4" -canonicalize -cse | FileCheck %s
// RUN: paged-attn-opt %s --paged-attn-to-ptx="chip=sm_90" | FileCheck %s --check-prefix=PTX

// A multi-token decode's CTA serves (new query, head) rows: on tensor
// cores the 4 queries of a group of 4 heads fill one mma row block (16
// rows), on CUDA cores 2 queries of 4 heads fill its 8 rows.
// SELECT-LABEL: func.func @multi_token
// SELECT: heads_per_cta = 4, {{.*}} queries_per_cta = 4>
// CUDA-LABEL: func.func @multi_token
// CUDA: kernel = cuda_cores, {{.*}} heads_per_cta = 4, {{.*}} queries_per_cta = 2>

// The decode grid is (KV heads x CTAs per KV head, batch, splits); the
// split merge's is (L x num_heads rows, batch): its partials have a row per
// (query, head), and it writes out and the log-sum-exp [batch, L, heads].
// The tree mask is the decode kernel's last argument, i8 bytes.
// CHECK-LABEL: func.func @multi_token
// CHECK: gpu.launch_func @paged_attn_kernels::@paged_attn_decode_h8_kv2_d64_p16_f16_nhd_w4_l4_lse_tree blocks in (%c2, %{{.*}}, %c4)
// CHECK-SAME: memref<?x4x8x64xf16, strided<[?, ?, ?, 1], offset: ?>>
// CHECK-SAME: memref<?x32x?x64xf32, strided<[?, ?, ?, 1], offset: ?>>
// CHECK-SAME: memref<?x4x8xf32, strided<[?, ?, ?], offset: ?>>, %{{.*}} : memref<?x4x4xi8, strided<[?, ?, ?], offset: ?>>)
// CHECK: gpu.launch_func @paged_attn_kernels::@paged_attn_merge_h8_kv2_d64_p16_f16_nhd_w4_l4_lse_tree blocks in (%c32, %{{.*}}, %c1)
// CHECK-SAME: memref<?x32x?x64xf32, {{.*}}>, %{{.*}} : memref<?x32x?xf32, {{.*}}>, %{{.*}} : memref<?x4x8x64xf16, {{.*}}>, %{{.*}} : i32, %{{.*}} : memref<?x4x8xf32,

// A rank-4 q of one new query without a mask is a single-token decode: its
// views without the query dim go to the single-token kernels.
// CHECK-LABEL: func.func @one_query
// CHECK: memref.subview %arg0[0, 0, 0, 0] [%{{.*}}, 1, 8, 64] [1, 1, 1, 1] : memref<?x1x8x64xf16> to memref<?x8x64xf16
// CHECK: gpu.launch_func @paged_attn_kernels::@paged_attn_decode_h8_kv2_d64_p16_f16_nhd_w4 blocks in (%c2, %{{.*}}, %c4)

// PTX-LABEL: .visible .entry paged_attn_decode_h8_kv2_d64_p16_f16_nhd_w4_l4_lse_tree(
// PTX-LABEL: .visible .entry paged_attn_merge_h8_kv2_d64_p16_f16_nhd_w4_l4_lse_tree(
// PTX-LABEL: .visible .entry paged_attn_decode_h8_kv2_d64_p16_f16_nhd_w4(
func.func @multi_token(%q: memref<?x4x8x64xf16>, %k: memref<?x16x2x64xf16>, %v: memref<?x16x2x64xf16>,
    %bt: memref<?x?xi32>, %sl: memref<?xi32>, %m: memref<?x4x4xi8>, %o: memref<?x4x8x64xf16>, %l: memref<?x4x8xf32>) {
  paged_attn.decode %q, %k, %v, %bt, %sl tree_mask(%m : memref<?x4x4xi8>)
      outs(%o : memref<?x4x8x64xf16>) lse(%l : memref<?x4x8xf32>)
    : memref<?x4x8x64xf16>, memref<?x16x2x64xf16>, memref<?x16x2x64xf16>, memref<?x?xi32>, memref<?xi32>
  return
}

func.func @one_query(%q: memref<?x1x8x64xf16>, %k: memref<?x16x2x64xf16>, %v: memref<?x16x2x64xf16>,
    %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x1x8x64xf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x1x8x64xf16>)
    : memref<?x1x8x64xf16>, memref<?x16x2x64xf16>, memref<?x16x2x64xf16>, memref<?x?xi32>, memref<?xi32>
  return
}
