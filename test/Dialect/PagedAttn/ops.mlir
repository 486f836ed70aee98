// RUN: paged-attn-opt %s | paged-attn-opt | FileCheck %s
// RUN: paged-attn-opt %s --mlir-print-op-generic | paged-attn-opt | FileCheck %s
// The same file through Debian's stock mlir-opt with the dialect plugin.
// RUN: mlir-opt-22 --load-dialect-plugin=%paged_attn_plugin %s | FileCheck %s

// CHECK-LABEL: func.func @tensor_nhd_dynamic_batch
// CHECK: %{{.*}} = paged_attn.decode %arg0, %arg1, %arg2, %arg3, %arg4 {scale = 8.838830e-02 : f32}
// CHECK-SAME: : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
func.func @tensor_nhd_dynamic_batch(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>,
    %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  %o = paged_attn.decode %q, %k, %v, %bt, %sl
         {layout = #paged_attn.kv_layout<nhd>, scale = 0.0883883 : f32}
       : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>,
         tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// The default layout (nhd) and the default scale are not printed.
// CHECK-LABEL: func.func @tensor_hnd_static_batch
// CHECK: paged_attn.decode %arg0, %arg1, %arg2, %arg3, %arg4 {layout = #paged_attn.kv_layout<hnd>}
// CHECK-SAME: : tensor<4x8x64xf16>, tensor<100x2x16x64xf16>, tensor<100x2x16x64xf16>, tensor<4x7xi32>, tensor<4xi32> -> tensor<4x8x64xf16>
func.func @tensor_hnd_static_batch(%q: tensor<4x8x64xf16>, %k: tensor<100x2x16x64xf16>,
    %v: tensor<100x2x16x64xf16>, %bt: tensor<4x7xi32>, %sl: tensor<4xi32>) -> tensor<4x8x64xf16> {
  %o = paged_attn.decode %q, %k, %v, %bt, %sl {layout = #paged_attn.kv_layout<hnd>}
       : tensor<4x8x64xf16>, tensor<100x2x16x64xf16>, tensor<100x2x16x64xf16>,
         tensor<4x7xi32>, tensor<4xi32> -> tensor<4x8x64xf16>
  return %o : tensor<4x8x64xf16>
}

// CHECK-LABEL: func.func @memref_nhd_dynamic_batch
// CHECK: paged_attn.decode %arg0, %arg1, %arg2, %arg3, %arg4 outs(%arg5 : memref<?x32x128xbf16>)
// CHECK-SAME: : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
// CHECK-NOT: ->
func.func @memref_nhd_dynamic_batch(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>,
    %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>)
    : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>,
      memref<?x?xi32>, memref<?xi32>
  return
}

// MQA (one KV head), f32, page 1, static batch, strided caches (K and V as
// halves of one [pages, 2, page, heads, dim] pool).
// CHECK-LABEL: func.func @memref_hnd_static_batch_strided
// CHECK: paged_attn.decode %arg0, %arg1, %arg2, %arg3, %arg4 outs(%arg5 : memref<2x16x32xf32>) {layout = #paged_attn.kv_layout<hnd>, scale = 5.000000e-01 : f32}
// CHECK-SAME: memref<10x1x1x32xf32, strided<[64, 32, 32, 1], offset: ?>>
func.func @memref_hnd_static_batch_strided(%q: memref<2x16x32xf32>,
    %k: memref<10x1x1x32xf32, strided<[64, 32, 32, 1], offset: ?>>,
    %v: memref<10x1x1x32xf32, strided<[64, 32, 32, 1], offset: ?>>,
    %bt: memref<2x5xi32>, %sl: memref<2xi32>, %o: memref<2x16x32xf32>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<2x16x32xf32>)
    {layout = #paged_attn.kv_layout<hnd>, scale = 0.5 : f32}
    : memref<2x16x32xf32>, memref<10x1x1x32xf32, strided<[64, 32, 32, 1], offset: ?>>,
      memref<10x1x1x32xf32, strided<[64, 32, 32, 1], offset: ?>>, memref<2x5xi32>, memref<2xi32>
  return
}

// Every variant at once, in both forms.
// CHECK-LABEL: func.func @tensor_variants
// CHECK: %{{.*}}, %{{.*}} = paged_attn.decode %arg0, %arg1, %arg2, %arg3, %arg4 alibi_slopes(%arg5 : tensor<32xf32>) sinks(%arg6 : tensor<32xf32>) {soft_cap = 5.000000e+01 : f32, window = 4096 : i64}
// CHECK-SAME: -> tensor<?x32x128xbf16>, tensor<?x32xf32>
func.func @tensor_variants(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>,
    %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>,
    %a: tensor<32xf32>, %s: tensor<32xf32>) -> (tensor<?x32x128xbf16>, tensor<?x32xf32>) {
  %o, %lse = paged_attn.decode %q, %k, %v, %bt, %sl alibi_slopes(%a : tensor<32xf32>)
         sinks(%s : tensor<32xf32>) {window = 4096 : i64, soft_cap = 50.0 : f32}
       : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>,
         tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>, tensor<?x32xf32>
  return %o, %lse : tensor<?x32x128xbf16>, tensor<?x32xf32>
}

// CHECK-LABEL: func.func @memref_variants
// CHECK: paged_attn.decode %arg0, %arg1, %arg2, %arg3, %arg4 sinks(%arg6 : memref<32xf32>) outs(%arg5 : memref<?x32x128xbf16>) lse(%arg7 : memref<?x32xf32>) {window = 128 : i64}
func.func @memref_variants(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>,
    %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>,
    %o: memref<?x32x128xbf16>, %s: memref<32xf32>, %l: memref<?x32xf32>) {
  paged_attn.decode %q, %k, %v, %bt, %sl sinks(%s : memref<32xf32>)
      outs(%o : memref<?x32x128xbf16>) lse(%l : memref<?x32xf32>) {window = 128 : i64}
    : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>,
      memref<?x?xi32>, memref<?xi32>
  return
}

// fp8 KV caches: f8E4M3FN or f8E5M2 with f32 scales, whose rank says the
// granularity. One scale per cache (rank 0).
// CHECK-LABEL: func.func @tensor_fp8_e4m3_per_tensor
// CHECK: %{{.*}} = paged_attn.decode %arg0, %arg1, %arg2, %arg3, %arg4 k_scale(%arg5 : tensor<f32>) v_scale(%arg6 : tensor<f32>)
// CHECK-SAME: : tensor<?x32x128xbf16>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
func.func @tensor_fp8_e4m3_per_tensor(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xf8E4M3FN>,
    %v: tensor<?x16x8x128xf8E4M3FN>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>,
    %ks: tensor<f32>, %vs: tensor<f32>) -> tensor<?x32x128xbf16> {
  %o = paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : tensor<f32>) v_scale(%vs : tensor<f32>)
       : tensor<?x32x128xbf16>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN>,
         tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// One scale per KV head ([num_kv_heads]), f16 q.
// CHECK-LABEL: func.func @tensor_fp8_e5m2_per_head
// CHECK: paged_attn.decode %arg0, %arg1, %arg2, %arg3, %arg4 k_scale(%arg5 : tensor<8xf32>) v_scale(%arg6 : tensor<8xf32>)
// CHECK-SAME: : tensor<4x32x128xf16>, tensor<100x16x8x128xf8E5M2>, tensor<100x16x8x128xf8E5M2>, tensor<4x7xi32>, tensor<4xi32> -> tensor<4x32x128xf16>
func.func @tensor_fp8_e5m2_per_head(%q: tensor<4x32x128xf16>, %k: tensor<100x16x8x128xf8E5M2>,
    %v: tensor<100x16x8x128xf8E5M2>, %bt: tensor<4x7xi32>, %sl: tensor<4xi32>,
    %ks: tensor<8xf32>, %vs: tensor<8xf32>) -> tensor<4x32x128xf16> {
  %o = paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : tensor<8xf32>) v_scale(%vs : tensor<8xf32>)
       : tensor<4x32x128xf16>, tensor<100x16x8x128xf8E5M2>, tensor<100x16x8x128xf8E5M2>,
         tensor<4x7xi32>, tensor<4xi32> -> tensor<4x32x128xf16>
  return %o : tensor<4x32x128xf16>
}

// One scale per token and KV head: nhd [pages, page, num_kv_heads].
// CHECK-LABEL: func.func @tensor_fp8_e4m3_per_token_nhd
// CHECK: paged_attn.decode %arg0, %arg1, %arg2, %arg3, %arg4 k_scale(%arg5 : tensor<?x16x8xf32>) v_scale(%arg6 : tensor<?x16x8xf32>)
// CHECK-SAME: : tensor<?x32x128xbf16>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
func.func @tensor_fp8_e4m3_per_token_nhd(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xf8E4M3FN>,
    %v: tensor<?x16x8x128xf8E4M3FN>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>,
    %ks: tensor<?x16x8xf32>, %vs: tensor<?x16x8xf32>) -> tensor<?x32x128xbf16> {
  %o = paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : tensor<?x16x8xf32>) v_scale(%vs : tensor<?x16x8xf32>)
       : tensor<?x32x128xbf16>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN>,
         tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// Per token under hnd: [pages, num_kv_heads, page]; a static page count
// matches a dynamic one.
// CHECK-LABEL: func.func @tensor_fp8_e5m2_per_token_hnd
// CHECK: paged_attn.decode %arg0, %arg1, %arg2, %arg3, %arg4 k_scale(%arg5 : tensor<100x8x16xf32>) v_scale(%arg6 : tensor<100x8x16xf32>) {layout = #paged_attn.kv_layout<hnd>}
// CHECK-SAME: : tensor<?x32x64xbf16>, tensor<?x8x16x64xf8E5M2>, tensor<?x8x16x64xf8E5M2>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x64xbf16>
func.func @tensor_fp8_e5m2_per_token_hnd(%q: tensor<?x32x64xbf16>, %k: tensor<?x8x16x64xf8E5M2>,
    %v: tensor<?x8x16x64xf8E5M2>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>,
    %ks: tensor<100x8x16xf32>, %vs: tensor<100x8x16xf32>) -> tensor<?x32x64xbf16> {
  %o = paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : tensor<100x8x16xf32>) v_scale(%vs : tensor<100x8x16xf32>)
         {layout = #paged_attn.kv_layout<hnd>}
       : tensor<?x32x64xbf16>, tensor<?x8x16x64xf8E5M2>, tensor<?x8x16x64xf8E5M2>,
         tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x64xbf16>
  return %o : tensor<?x32x64xbf16>
}

// The memref form: per tensor, f8E5M2, head_dim 16 (16-byte fp8 rows).
// CHECK-LABEL: func.func @memref_fp8_e5m2_per_tensor
// CHECK: paged_attn.decode %arg0, %arg1, %arg2, %arg3, %arg4 k_scale(%arg5 : memref<f32>) v_scale(%arg6 : memref<f32>) outs(%arg7 : memref<?x8x16xf16>)
// CHECK-SAME: : memref<?x8x16xf16>, memref<?x16x2x16xf8E5M2>, memref<?x16x2x16xf8E5M2>, memref<?x?xi32>, memref<?xi32>
// CHECK-NOT: ->
func.func @memref_fp8_e5m2_per_tensor(%q: memref<?x8x16xf16>, %k: memref<?x16x2x16xf8E5M2>,
    %v: memref<?x16x2x16xf8E5M2>, %bt: memref<?x?xi32>, %sl: memref<?xi32>,
    %ks: memref<f32>, %vs: memref<f32>, %o: memref<?x8x16xf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : memref<f32>) v_scale(%vs : memref<f32>)
      outs(%o : memref<?x8x16xf16>)
    : memref<?x8x16xf16>, memref<?x16x2x16xf8E5M2>, memref<?x16x2x16xf8E5M2>,
      memref<?x?xi32>, memref<?xi32>
  return
}

// Per KV head, with variants: the scales come after the variants' operands
// and before outs and lse.
// CHECK-LABEL: func.func @memref_fp8_e4m3_per_head_variants
// CHECK: paged_attn.decode %arg0, %arg1, %arg2, %arg3, %arg4 sinks(%arg6 : memref<32xf32>) k_scale(%arg8 : memref<8xf32>) v_scale(%arg9 : memref<8xf32>) outs(%arg5 : memref<?x32x128xbf16>) lse(%arg7 : memref<?x32xf32>) {window = 128 : i64}
// CHECK-SAME: : memref<?x32x128xbf16>, memref<?x16x8x128xf8E4M3FN>, memref<?x16x8x128xf8E4M3FN>, memref<?x?xi32>, memref<?xi32>
func.func @memref_fp8_e4m3_per_head_variants(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xf8E4M3FN>,
    %v: memref<?x16x8x128xf8E4M3FN>, %bt: memref<?x?xi32>, %sl: memref<?xi32>,
    %o: memref<?x32x128xbf16>, %s: memref<32xf32>, %l: memref<?x32xf32>,
    %ks: memref<8xf32>, %vs: memref<8xf32>) {
  paged_attn.decode %q, %k, %v, %bt, %sl sinks(%s : memref<32xf32>)
      k_scale(%ks : memref<8xf32>) v_scale(%vs : memref<8xf32>)
      outs(%o : memref<?x32x128xbf16>) lse(%l : memref<?x32xf32>) {window = 128 : i64}
    : memref<?x32x128xbf16>, memref<?x16x8x128xf8E4M3FN>, memref<?x16x8x128xf8E4M3FN>,
      memref<?x?xi32>, memref<?xi32>
  return
}

// Per token, nhd, the scale caches strided (K's and V's as halves of one
// [pages, 2, page, num_kv_heads] pool).
// CHECK-LABEL: func.func @memref_fp8_e4m3_per_token_nhd
// CHECK: paged_attn.decode %arg0, %arg1, %arg2, %arg3, %arg4 k_scale(%arg5 : memref<?x16x8xf32, strided<[256, 8, 1]>>) v_scale(%arg6 : memref<?x16x8xf32, strided<[256, 8, 1]>>) outs(%arg7 : memref<?x32x128xbf16>)
// CHECK-SAME: : memref<?x32x128xbf16>, memref<?x16x8x128xf8E4M3FN>, memref<?x16x8x128xf8E4M3FN>, memref<?x?xi32>, memref<?xi32>
func.func @memref_fp8_e4m3_per_token_nhd(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xf8E4M3FN>,
    %v: memref<?x16x8x128xf8E4M3FN>, %bt: memref<?x?xi32>, %sl: memref<?xi32>,
    %ks: memref<?x16x8xf32, strided<[256, 8, 1]>>, %vs: memref<?x16x8xf32, strided<[256, 8, 1]>>,
    %o: memref<?x32x128xbf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : memref<?x16x8xf32, strided<[256, 8, 1]>>)
      v_scale(%vs : memref<?x16x8xf32, strided<[256, 8, 1]>>) outs(%o : memref<?x32x128xbf16>)
    : memref<?x32x128xbf16>, memref<?x16x8x128xf8E4M3FN>, memref<?x16x8x128xf8E4M3FN>,
      memref<?x?xi32>, memref<?xi32>
  return
}

// Per token, hnd, f8E5M2, MQA.
// CHECK-LABEL: func.func @memref_fp8_e5m2_per_token_hnd
// CHECK: paged_attn.decode %arg0, %arg1, %arg2, %arg3, %arg4 k_scale(%arg5 : memref<?x1x32xf32>) v_scale(%arg6 : memref<?x1x32xf32>) outs(%arg7 : memref<?x16x128xbf16>) {layout = #paged_attn.kv_layout<hnd>}
// CHECK-SAME: : memref<?x16x128xbf16>, memref<?x1x32x128xf8E5M2>, memref<?x1x32x128xf8E5M2>, memref<?x?xi32>, memref<?xi32>
func.func @memref_fp8_e5m2_per_token_hnd(%q: memref<?x16x128xbf16>, %k: memref<?x1x32x128xf8E5M2>,
    %v: memref<?x1x32x128xf8E5M2>, %bt: memref<?x?xi32>, %sl: memref<?xi32>,
    %ks: memref<?x1x32xf32>, %vs: memref<?x1x32xf32>, %o: memref<?x16x128xbf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : memref<?x1x32xf32>) v_scale(%vs : memref<?x1x32xf32>)
      outs(%o : memref<?x16x128xbf16>) {layout = #paged_attn.kv_layout<hnd>}
    : memref<?x16x128xbf16>, memref<?x1x32x128xf8E5M2>, memref<?x1x32x128xf8E5M2>,
      memref<?x?xi32>, memref<?xi32>
  return
}

// A multi-token decode of fp8 caches: the scales follow the tree mask.
// CHECK-LABEL: func.func @tensor_fp8_multi_token
// CHECK: %{{.*}}, %{{.*}} = paged_attn.decode %arg0, %arg1, %arg2, %arg3, %arg4 tree_mask(%arg5 : tensor<?x4x4xi1>) k_scale(%arg6 : tensor<8xf32>) v_scale(%arg7 : tensor<8xf32>)
// CHECK-SAME: : tensor<?x4x32x128xbf16>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x4x32x128xbf16>, tensor<?x4x32xf32>
func.func @tensor_fp8_multi_token(%q: tensor<?x4x32x128xbf16>, %k: tensor<?x16x8x128xf8E4M3FN>,
    %v: tensor<?x16x8x128xf8E4M3FN>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>,
    %m: tensor<?x4x4xi1>, %ks: tensor<8xf32>, %vs: tensor<8xf32>)
    -> (tensor<?x4x32x128xbf16>, tensor<?x4x32xf32>) {
  %o, %l = paged_attn.decode %q, %k, %v, %bt, %sl tree_mask(%m : tensor<?x4x4xi1>)
         k_scale(%ks : tensor<8xf32>) v_scale(%vs : tensor<8xf32>)
       : tensor<?x4x32x128xbf16>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN>,
         tensor<?x?xi32>, tensor<?xi32> -> tensor<?x4x32x128xbf16>, tensor<?x4x32xf32>
  return %o, %l : tensor<?x4x32x128xbf16>, tensor<?x4x32xf32>
}
