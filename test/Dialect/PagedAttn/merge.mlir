// RUN: paged-attn-opt %s | paged-attn-opt | FileCheck %s
// RUN: paged-attn-opt %s --mlir-print-op-generic | paged-attn-opt | FileCheck %s
// RUN: paged-attn-opt %s --one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" | FileCheck %s --check-prefix=BUF

// CHECK-LABEL: func.func @tensor_merge
// CHECK: %{{.*}}, %{{.*}} = paged_attn.merge %arg0, %arg1 sinks(%arg2 : tensor<32xf32>) : tensor<2x?x32x128xbf16>, tensor<2x?x32xf32> -> tensor<?x32x128xbf16>, tensor<?x32xf32>
// BUF-LABEL: func.func @tensor_merge
// BUF-SAME: (%[[P:.*]]: memref<2x?x32x128xbf16>, %[[L:.*]]: memref<2x?x32xf32>, %[[S:.*]]: memref<32xf32>)
// BUF: %[[B:.*]] = memref.dim %[[P]], %c1
// BUF: %[[OUT:.*]] = memref.alloc(%[[B]]) {{.*}} : memref<?x32x128xbf16>
// BUF: %[[LSE:.*]] = memref.alloc(%{{.*}}) {{.*}} : memref<?x32xf32>
// BUF: paged_attn.merge %[[P]], %[[L]] sinks(%[[S]] : memref<32xf32>) outs(%[[OUT]] : memref<?x32x128xbf16>) lse(%[[LSE]] : memref<?x32xf32>)
// BUF: return %[[OUT]], %[[LSE]]
func.func @tensor_merge(%p: tensor<2x?x32x128xbf16>, %l: tensor<2x?x32xf32>, %s: tensor<32xf32>) -> (tensor<?x32x128xbf16>, tensor<?x32xf32>) {
  %o, %lse = paged_attn.merge %p, %l sinks(%s : tensor<32xf32>)
      : tensor<2x?x32x128xbf16>, tensor<2x?x32xf32> -> tensor<?x32x128xbf16>, tensor<?x32xf32>
  return %o, %lse : tensor<?x32x128xbf16>, tensor<?x32xf32>
}

// CHECK-LABEL: func.func @memref_merge
// CHECK: paged_attn.merge %arg0, %arg1 outs(%arg2 : memref<?x8x64xf32>) : memref<?x?x8x64xf32>, memref<?x?x8xf32>
func.func @memref_merge(%p: memref<?x?x8x64xf32>, %l: memref<?x?x8xf32>, %o: memref<?x8x64xf32>) {
  paged_attn.merge %p, %l outs(%o : memref<?x8x64xf32>) : memref<?x?x8x64xf32>, memref<?x?x8xf32>
  return
}
