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
