// RUN: paged-attn-opt %s --convert-paged-attn-to-loops -canonicalize -cse | FileCheck %s
// RUN: paged-attn-opt %s --paged-attn-to-cpu | FileCheck %s --check-prefix=LLVM

// The reference: per sequence and head the largest partial log-sum-exp
// (0 when all are -inf), the weights e^(lse_n - m), the sink in the
// denominator, m + log(sum) or -inf, and each column's weighted sum.
// CHECK-LABEL: func.func @merge
// CHECK-DAG: %[[NEGINF:.*]] = arith.constant 0xFF800000 : f32
// CHECK: %[[B:.*]] = memref.dim %arg0, %c1
// CHECK: scf.for %[[BI:.*]] = %c0 to %[[B]] step %c1 {
// CHECK: scf.for %[[H:.*]] = %c0 to %c8 step %c1 {
// CHECK: %[[MAX:.*]] = scf.for {{.*}} iter_args(%{{.*}} = %[[NEGINF]]) -> (f32) {
// CHECK: arith.maximumf
// CHECK: %[[EMPTY:.*]] = arith.cmpf oeq, %[[MAX]], %[[NEGINF]] : f32
// CHECK: %[[REF:.*]] = arith.select %[[EMPTY]], %{{.*}}, %[[MAX]] : f32
// CHECK: %[[SUM:.*]] = scf.for
// CHECK: math.exp
// CHECK: %[[SINK:.*]] = memref.load %arg2[%[[H]]] : memref<8xf32>
// CHECK: %[[SM:.*]] = arith.subf %[[SINK]], %[[REF]] : f32
// CHECK: %[[SW:.*]] = math.exp %[[SM]] : f32
// CHECK: arith.addf %[[SUM]], %[[SW]] : f32
// CHECK: %[[LOG:.*]] = math.log %[[SUM]] : f32
// CHECK: %[[LSE:.*]] = arith.addf %[[REF]], %[[LOG]] : f32
// CHECK: %[[LSEV:.*]] = arith.select %{{.*}}, %[[LSE]], %[[NEGINF]] : f32
// CHECK: memref.store %[[LSEV]], %arg4[%[[BI]], %[[H]]] : memref<?x8xf32>
// CHECK: arith.extf %{{.*}} : bf16 to f32
// CHECK: math.fma
// CHECK: arith.truncf %{{.*}} : f32 to bf16
// LLVM-LABEL: llvm.func @merge
// LLVM-NOT: paged_attn.merge

func.func @merge(%p: memref<3x?x8x64xbf16>, %l: memref<3x?x8xf32>, %s: memref<8xf32>, %o: memref<?x8x64xbf16>, %lo: memref<?x8xf32>) {
  paged_attn.merge %p, %l sinks(%s : memref<8xf32>) outs(%o : memref<?x8x64xbf16>) lse(%lo : memref<?x8xf32>) : memref<3x?x8x64xbf16>, memref<3x?x8xf32>
  return
}
