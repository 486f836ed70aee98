// RUN: paged-attn-opt %s --convert-paged-attn-to-loops -canonicalize -cse | FileCheck %s
// RUN: paged-attn-opt %s --paged-attn-to-cpu | FileCheck %s --check-prefix=LLVM

// The variants in the reference: the window starts the key loops at
// max(n - W, 0); each logit is soft-capped (tanh from one exp2) and then
// biased by the head's slope times (t - (n - 1)); the sink joins the
// denominator; the log-sum-exp is max + log(sum) or -inf.
// CHECK-LABEL: func.func @decode_variants
// 2 log2(e) / c, folded.
// CHECK-DAG: %[[TWO_LOG2E_C:.*]] = arith.constant 0.0961796715 : f32
// CHECK-DAG: %[[NEGINF:.*]] = arith.constant 0xFF800000 : f32
// CHECK-DAG: %[[W:.*]] = arith.constant 100 : index
// CHECK-DAG: %[[CAP:.*]] = arith.constant 3.000000e+01 : f32
// CHECK: %[[LEN:.*]] = arith.index_cast %{{.*}} : i32 to index
// CHECK: scf.for %[[H:.*]] = %c0 to %c8 step %c1 {
// CHECK: %[[SLOPE:.*]] = memref.load %[[SLOPES:.*]][%[[H]]] : memref<8xf32>
// CHECK: %[[NW:.*]] = arith.subi %[[LEN]], %[[W]] : index
// CHECK: %[[FIRST:.*]] = arith.maxsi %[[NW]], %c0 : index
// CHECK: %[[MAX:.*]] = scf.for %[[T:.*]] = %[[FIRST]] to %[[LEN]] step %c1
// CHECK: %[[X2:.*]] = arith.mulf %{{.*}}, %[[TWO_LOG2E_C]] : f32
// CHECK: %[[E2X:.*]] = math.exp2 %[[X2]] : f32
// CHECK: %[[E2X1:.*]] = arith.addf %[[E2X]], %{{.*}} : f32
// CHECK: arith.divf %{{.*}}, %[[E2X1]] : f32
// CHECK: %[[CAPPED:.*]] = arith.mulf %{{.*}}, %[[CAP]] : f32
// CHECK: %[[DIST:.*]] = arith.subi %[[T]], %{{.*}} : index
// CHECK: %[[DISTF:.*]] = arith.sitofp %{{.*}} : i64 to f32
// CHECK: %[[BIAS:.*]] = arith.mulf %[[SLOPE]], %[[DISTF]] : f32
// CHECK: arith.addf %[[CAPPED]], %[[BIAS]] : f32
// CHECK: %[[SUM:.*]] = scf.for %{{.*}} = %[[FIRST]] to %[[LEN]] step %c1
// CHECK: %[[NONEMPTY:.*]] = arith.cmpf ogt, %[[SUM]]
// CHECK: %[[SINK:.*]] = memref.load %[[SINKS:.*]][%[[H]]] : memref<8xf32>
// CHECK: %[[SM:.*]] = arith.subf %[[SINK]], %[[MAX]] : f32
// CHECK: %[[SW:.*]] = math.exp %[[SM]] : f32
// CHECK: %[[DEN:.*]] = arith.addf %[[SUM]], %[[SW]] : f32
// CHECK: arith.divf %{{.*}}, %[[DEN]] : f32
// CHECK: %[[LOG:.*]] = math.log %[[SUM]] : f32
// CHECK: %[[LSE:.*]] = arith.addf %[[MAX]], %[[LOG]] : f32
// CHECK: %[[LSEV:.*]] = arith.select %[[NONEMPTY]], %[[LSE]], %[[NEGINF]] : f32
// CHECK: memref.store %[[LSEV]], %{{.*}}[%{{.*}}, %[[H]]] : memref<?x8xf32>

// Down to LLVM for the JIT-run tests.
// LLVM-LABEL: llvm.func @decode_variants
// LLVM-NOT: paged_attn.decode
func.func @decode_variants(%q: memref<?x8x64xf16>, %k: memref<?x16x2x64xf16>, %v: memref<?x16x2x64xf16>,
    %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x8x64xf16>, %a: memref<8xf32>, %s: memref<8xf32>, %l: memref<?x8xf32>) {
  paged_attn.decode %q, %k, %v, %bt, %sl alibi_slopes(%a : memref<8xf32>) sinks(%s : memref<8xf32>)
      outs(%o : memref<?x8x64xf16>) lse(%l : memref<?x8xf32>) {window = 100 : i64, soft_cap = 30.0 : f32}
    : memref<?x8x64xf16>, memref<?x16x2x64xf16>, memref<?x16x2x64xf16>, memref<?x?xi32>, memref<?xi32>
  return
}
