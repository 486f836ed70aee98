// RUN: paged-attn-opt %s --one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" | FileCheck %s
// RUN: paged-attn-opt %s --one-shot-bufferize="bufferize-function-boundaries" | FileCheck %s --check-prefix=DYNAMIC

// The tensor form becomes the memref form writing a new buffer shaped like q.
// CHECK-LABEL: func.func @decode
// CHECK-SAME: (%[[Q:.*]]: memref<?x32x128xbf16>, %[[K:.*]]: memref<?x8x16x128xbf16>, %[[V:.*]]: memref<?x8x16x128xbf16>, %[[BT:.*]]: memref<?x?xi32>, %[[SL:.*]]: memref<?xi32>) -> memref<?x32x128xbf16>
// CHECK: %[[B:.*]] = memref.dim %[[Q]], %c0
// CHECK: %[[OUT:.*]] = memref.alloc(%[[B]]) {{.*}} : memref<?x32x128xbf16>
// CHECK: paged_attn.decode %[[Q]], %[[K]], %[[V]], %[[BT]], %[[SL]] outs(%[[OUT]] : memref<?x32x128xbf16>) {layout = #paged_attn.kv_layout<hnd>, scale = 5.000000e-01 : f32}
// CHECK: return %[[OUT]]

// With fully dynamic layouts at the function boundary, the vector-loaded
// operands are cast to a unit innermost stride so the memref form verifies.
// DYNAMIC: %[[QC:.*]] = memref.cast %{{.*}} : memref<?x32x128xbf16, strided<[?, ?, ?], offset: ?>> to memref<?x32x128xbf16, strided<[?, ?, 1], offset: ?>>
// DYNAMIC: paged_attn.decode %[[QC]]
func.func @decode(%q: tensor<?x32x128xbf16>, %k: tensor<?x8x16x128xbf16>, %v: tensor<?x8x16x128xbf16>,
                  %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  %o = paged_attn.decode %q, %k, %v, %bt, %sl {layout = #paged_attn.kv_layout<hnd>, scale = 0.5 : f32}
       : tensor<?x32x128xbf16>, tensor<?x8x16x128xbf16>, tensor<?x8x16x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// The log-sum-exp result becomes a second buffer [batch, num_heads]; the
// slopes and sinks are read in place.
// CHECK-LABEL: func.func @decode_lse
// CHECK-SAME: (%[[Q:.*]]: memref<?x32x128xbf16>, %{{.*}}: memref<?x8x16x128xbf16>, %{{.*}}: memref<?x8x16x128xbf16>, %{{.*}}: memref<?x?xi32>, %{{.*}}: memref<?xi32>, %[[S:.*]]: memref<32xf32>)
// CHECK: %[[B:.*]] = memref.dim %[[Q]], %c0
// CHECK: %[[OUT:.*]] = memref.alloc(%[[B]]) {{.*}} : memref<?x32x128xbf16>
// CHECK: %[[B2:.*]] = memref.dim %[[Q]], %c0
// CHECK: %[[LSE:.*]] = memref.alloc(%[[B2]]) {{.*}} : memref<?x32xf32>
// CHECK: paged_attn.decode {{.*}} sinks(%[[S]] : memref<32xf32>) outs(%[[OUT]] : memref<?x32x128xbf16>) lse(%[[LSE]] : memref<?x32xf32>) {layout = #paged_attn.kv_layout<hnd>, window = 64 : i64}
// CHECK: return %[[OUT]], %[[LSE]]
func.func @decode_lse(%q: tensor<?x32x128xbf16>, %k: tensor<?x8x16x128xbf16>, %v: tensor<?x8x16x128xbf16>,
                      %bt: tensor<?x?xi32>, %sl: tensor<?xi32>, %s: tensor<32xf32>) -> (tensor<?x32x128xbf16>, tensor<?x32xf32>) {
  %o, %l = paged_attn.decode %q, %k, %v, %bt, %sl sinks(%s : tensor<32xf32>) {layout = #paged_attn.kv_layout<hnd>, window = 64 : i64}
       : tensor<?x32x128xbf16>, tensor<?x8x16x128xbf16>, tensor<?x8x16x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>, tensor<?x32xf32>
  return %o, %l : tensor<?x32x128xbf16>, tensor<?x32xf32>
}

// A multi-token decode's tree mask is read in place; its out and
// log-sum-exp are new buffers of q's batch.
// CHECK-LABEL: func.func @decode_multi_token
// CHECK-SAME: (%[[Q:.*]]: memref<?x4x32x128xbf16>, %{{.*}}: memref<?x16x8x128xbf16>, %{{.*}}: memref<?x16x8x128xbf16>, %{{.*}}: memref<?x?xi32>, %{{.*}}: memref<?xi32>, %[[M:.*]]: memref<?x4x4xi8>)
// CHECK: %[[OUT:.*]] = memref.alloc(%{{.*}}) {{.*}} : memref<?x4x32x128xbf16>
// CHECK: %[[LSE:.*]] = memref.alloc(%{{.*}}) {{.*}} : memref<?x4x32xf32>
// CHECK: paged_attn.decode {{.*}} tree_mask(%[[M]] : memref<?x4x4xi8>) outs(%[[OUT]] : memref<?x4x32x128xbf16>) lse(%[[LSE]] : memref<?x4x32xf32>)
// CHECK: return %[[OUT]], %[[LSE]]
func.func @decode_multi_token(%q: tensor<?x4x32x128xbf16>, %k: tensor<?x16x8x128xbf16>,
    %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>,
    %m: tensor<?x4x4xi8>) -> (tensor<?x4x32x128xbf16>, tensor<?x4x32xf32>) {
  %o, %l = paged_attn.decode %q, %k, %v, %bt, %sl tree_mask(%m : tensor<?x4x4xi8>)
       : tensor<?x4x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>,
         tensor<?x?xi32>, tensor<?xi32> -> tensor<?x4x32x128xbf16>, tensor<?x4x32xf32>
  return %o, %l : tensor<?x4x32x128xbf16>, tensor<?x4x32xf32>
}

// fp8 caches' scales are read in place, like the slopes and sinks; the
// scales are not cast (they are not loaded as vectors).
// CHECK-LABEL: func.func @decode_fp8
// CHECK-SAME: (%[[Q:.*]]: memref<?x32x128xbf16>, %[[K:.*]]: memref<?x16x8x128xf8E4M3FN>, %[[V:.*]]: memref<?x16x8x128xf8E4M3FN>, %[[BT:.*]]: memref<?x?xi32>, %[[SL:.*]]: memref<?xi32>, %[[KS:.*]]: memref<?x16x8xf32>, %[[VS:.*]]: memref<?x16x8xf32>) -> memref<?x32x128xbf16>
// CHECK: %[[OUT:.*]] = memref.alloc(%{{.*}}) {{.*}} : memref<?x32x128xbf16>
// CHECK: paged_attn.decode %[[Q]], %[[K]], %[[V]], %[[BT]], %[[SL]] k_scale(%[[KS]] : memref<?x16x8xf32>) v_scale(%[[VS]] : memref<?x16x8xf32>) outs(%[[OUT]] : memref<?x32x128xbf16>)
// CHECK-SAME: : memref<?x32x128xbf16>, memref<?x16x8x128xf8E4M3FN>, memref<?x16x8x128xf8E4M3FN>, memref<?x?xi32>, memref<?xi32>
// CHECK: return %[[OUT]]
// DYNAMIC-LABEL: func.func @decode_fp8
// DYNAMIC: memref.cast %{{.*}} : memref<?x16x8x128xf8E4M3FN, strided<[?, ?, ?, ?], offset: ?>> to memref<?x16x8x128xf8E4M3FN, strided<[?, ?, ?, 1], offset: ?>>
// DYNAMIC: paged_attn.decode {{.*}} k_scale(%{{.*}} : memref<?x16x8xf32, strided<[?, ?, ?], offset: ?>>) v_scale(%{{.*}} : memref<?x16x8xf32, strided<[?, ?, ?], offset: ?>>) outs(
func.func @decode_fp8(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xf8E4M3FN>,
    %v: tensor<?x16x8x128xf8E4M3FN>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>,
    %ks: tensor<?x16x8xf32>, %vs: tensor<?x16x8xf32>) -> tensor<?x32x128xbf16> {
  %o = paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : tensor<?x16x8xf32>) v_scale(%vs : tensor<?x16x8xf32>)
       : tensor<?x32x128xbf16>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN>,
         tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}
