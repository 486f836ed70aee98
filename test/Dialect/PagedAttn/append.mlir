// RUN: paged-attn-opt %s | paged-attn-opt | FileCheck %s
// RUN: paged-attn-opt %s --one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" | FileCheck %s --check-prefix=BUF

// The memref form: in place, no results.
// CHECK-LABEL: func.func @append_memref
// CHECK: paged_attn.append %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : memref<?x8x128xbf16>, memref<?x8x128xbf16>, memref<?xi64>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>{{$}}
func.func @append_memref(%k: memref<?x8x128xbf16>, %v: memref<?x8x128xbf16>, %s: memref<?xi64>, %kc: memref<?x16x8x128xbf16>, %vc: memref<?x16x8x128xbf16>) {
  paged_attn.append %k, %v, %s, %kc, %vc : memref<?x8x128xbf16>, memref<?x8x128xbf16>, memref<?xi64>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>
  return
}

// The tensor form returns the caches; per-token scales are returned too.
// CHECK-LABEL: func.func @append_fp8_token
// CHECK: paged_attn.append {{.*}} k_scale(%{{.*}} : tensor<?x8x16xf32>) v_scale(%{{.*}} : tensor<?x8x16xf32>) {layout = #paged_attn.kv_layout<hnd>} : {{.*}} -> tensor<?x8x16x128xf8E4M3FN>, tensor<?x8x16x128xf8E4M3FN>, tensor<?x8x16xf32>, tensor<?x8x16xf32>
// Bufferized in place: the memref op writes the argument buffers, which are
// returned as they are (no copy).
// BUF-LABEL: func.func @append_fp8_token
// BUF-SAME: (%[[K:.*]]: memref<?x8x128xf16>, %[[V:.*]]: memref<?x8x128xf16>, %[[S:.*]]: memref<?xi64>, %[[KC:.*]]: memref<?x8x16x128xf8E4M3FN>, %[[VC:.*]]: memref<?x8x16x128xf8E4M3FN>, %[[KS:.*]]: memref<?x8x16xf32>, %[[VS:.*]]: memref<?x8x16xf32>)
// BUF-NOT: memref.alloc
// BUF-NOT: memref.copy
// BUF: paged_attn.append {{.*}}, %[[S]], {{.*}} k_scale(%[[KS]] : memref<?x8x16xf32>) v_scale(%[[VS]] : memref<?x8x16xf32>) {layout = #paged_attn.kv_layout<hnd>}
// BUF-NOT: memref.copy
// BUF: return %[[KC]], %[[VC]], %[[KS]], %[[VS]]
func.func @append_fp8_token(%k: tensor<?x8x128xf16>, %v: tensor<?x8x128xf16>, %s: tensor<?xi64>, %kc: tensor<?x8x16x128xf8E4M3FN>, %vc: tensor<?x8x16x128xf8E4M3FN>, %ks: tensor<?x8x16xf32>, %vs: tensor<?x8x16xf32>) -> (tensor<?x8x16x128xf8E4M3FN>, tensor<?x8x16x128xf8E4M3FN>, tensor<?x8x16xf32>, tensor<?x8x16xf32>) {
  %0:4 = paged_attn.append %k, %v, %s, %kc, %vc k_scale(%ks : tensor<?x8x16xf32>) v_scale(%vs : tensor<?x8x16xf32>) {layout = #paged_attn.kv_layout<hnd>} : tensor<?x8x128xf16>, tensor<?x8x128xf16>, tensor<?xi64>, tensor<?x8x16x128xf8E4M3FN>, tensor<?x8x16x128xf8E4M3FN> -> tensor<?x8x16x128xf8E4M3FN>, tensor<?x8x16x128xf8E4M3FN>, tensor<?x8x16xf32>, tensor<?x8x16xf32>
  return %0#0, %0#1, %0#2, %0#3 : tensor<?x8x16x128xf8E4M3FN>, tensor<?x8x16x128xf8E4M3FN>, tensor<?x8x16xf32>, tensor<?x8x16xf32>
}

// Per-head scales are read: only the caches are returned.
// CHECK-LABEL: func.func @append_fp8_head
// CHECK: paged_attn.append {{.*}} k_scale(%{{.*}} : tensor<8xf32>) v_scale(%{{.*}} : tensor<8xf32>) : {{.*}} -> tensor<?x16x8x64xf8E5M2>, tensor<?x16x8x64xf8E5M2>{{$}}
func.func @append_fp8_head(%k: tensor<?x8x64xbf16>, %v: tensor<?x8x64xbf16>, %s: tensor<?xi64>, %kc: tensor<?x16x8x64xf8E5M2>, %vc: tensor<?x16x8x64xf8E5M2>, %ks: tensor<8xf32>, %vs: tensor<8xf32>) -> (tensor<?x16x8x64xf8E5M2>, tensor<?x16x8x64xf8E5M2>) {
  %0:2 = paged_attn.append %k, %v, %s, %kc, %vc k_scale(%ks : tensor<8xf32>) v_scale(%vs : tensor<8xf32>) : tensor<?x8x64xbf16>, tensor<?x8x64xbf16>, tensor<?xi64>, tensor<?x16x8x64xf8E5M2>, tensor<?x16x8x64xf8E5M2> -> tensor<?x16x8x64xf8E5M2>, tensor<?x16x8x64xf8E5M2>
  return %0#0, %0#1 : tensor<?x16x8x64xf8E5M2>, tensor<?x16x8x64xf8E5M2>
}

// An append, then a decode of what it wrote: the decode reads the append's
// results, so bufferization keeps them in one buffer.
// BUF-LABEL: func.func @append_then_decode
// BUF-SAME: %[[KC:[a-z0-9]+]]: memref<?x16x8x128xbf16>, %[[VC:[a-z0-9]+]]: memref<?x16x8x128xbf16>
// BUF: paged_attn.append {{.*}}, %[[KC]], %[[VC]] :
// BUF: paged_attn.decode %{{.*}}, %[[KC]], %[[VC]],
func.func @append_then_decode(%q: tensor<?x32x128xbf16>, %k: tensor<?x8x128xbf16>, %v: tensor<?x8x128xbf16>, %s: tensor<?xi64>, %kc: tensor<?x16x8x128xbf16>, %vc: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  %c:2 = paged_attn.append %k, %v, %s, %kc, %vc : tensor<?x8x128xbf16>, tensor<?x8x128xbf16>, tensor<?xi64>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16> -> tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>
  %o = paged_attn.decode %q, %c#0, %c#1, %bt, %sl : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}
