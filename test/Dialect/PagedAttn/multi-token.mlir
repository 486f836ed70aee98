// RUN: paged-attn-opt %s | paged-attn-opt | FileCheck %s
// RUN: paged-attn-opt %s --mlir-print-op-generic | paged-attn-opt | FileCheck %s
// paged-attn-compile builds the GPU kernels of each op's config (their
// own functions take i8 tree masks); a multi-token entry gives query_len
// and the decode kernel's queries per CTA.
// RUN: paged-attn-compile %s -o %t && FileCheck %s --check-prefix=COMPILE < %t.json
// COMPILE: "name": "h32_kv8_d128_p16_bf16_nhd_w4_l4_lse_tree"
// COMPILE: "query_len": 4
// COMPILE: "name": "tree_mask"
// COMPILE-NEXT: "rank": 3
// COMPILE: "queries_per_cta": 4
// COMPILE: "name": "h8_kv2_d64_p16_f16_nhd_w4_l8_win_sinks_tree"
// COMPILE: "query_len": 8

// A multi-token decode: 4 new tokens per sequence, a draft-tree mask and
// the log-sum-exp of each new token.
// CHECK-LABEL: func.func @tensor_multi_token
// CHECK: %{{.*}}, %{{.*}} = paged_attn.decode %arg0, %arg1, %arg2, %arg3, %arg4 tree_mask(%arg5 : tensor<?x4x4xi1>)
// CHECK-SAME: : tensor<?x4x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x4x32x128xbf16>, tensor<?x4x32xf32>
func.func @tensor_multi_token(%q: tensor<?x4x32x128xbf16>, %k: tensor<?x16x8x128xbf16>,
    %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>,
    %m: tensor<?x4x4xi1>) -> (tensor<?x4x32x128xbf16>, tensor<?x4x32xf32>) {
  %o, %l = paged_attn.decode %q, %k, %v, %bt, %sl tree_mask(%m : tensor<?x4x4xi1>)
       : tensor<?x4x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>,
         tensor<?x?xi32>, tensor<?xi32> -> tensor<?x4x32x128xbf16>, tensor<?x4x32xf32>
  return %o, %l : tensor<?x4x32x128xbf16>, tensor<?x4x32xf32>
}

// CHECK-LABEL: func.func @memref_multi_token
// CHECK: paged_attn.decode %arg0, %arg1, %arg2, %arg3, %arg4 sinks(%arg5 : memref<8xf32>) tree_mask(%arg6 : memref<2x8x8xi8>) outs(%arg7 : memref<2x8x8x64xf16>) {window = 128 : i64}
func.func @memref_multi_token(%q: memref<2x8x8x64xf16>, %k: memref<?x16x2x64xf16>,
    %v: memref<?x16x2x64xf16>, %bt: memref<2x?xi32>, %sl: memref<2xi32>,
    %s: memref<8xf32>, %m: memref<2x8x8xi8>, %o: memref<2x8x8x64xf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl sinks(%s : memref<8xf32>) tree_mask(%m : memref<2x8x8xi8>)
      outs(%o : memref<2x8x8x64xf16>) {window = 128 : i64}
      : memref<2x8x8x64xf16>, memref<?x16x2x64xf16>, memref<?x16x2x64xf16>, memref<2x?xi32>, memref<2xi32>
  return
}
