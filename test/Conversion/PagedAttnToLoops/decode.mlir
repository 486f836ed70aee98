// RUN: paged-attn-opt %s --convert-paged-attn-to-loops -canonicalize -cse | FileCheck %s
// RUN: paged-attn-opt %s --paged-attn-to-cpu | FileCheck %s --check-prefix=LLVM

// The reference semantics: per sequence and query head, a max pass and a
// sum pass over the sequence's tokens, through the page table.
// CHECK-LABEL: func.func @decode
// CHECK-SAME: (%[[Q:.*]]: memref<?x8x64xf16>, %[[K:.*]]: memref<?x16x2x64xf16>, %[[V:.*]]: memref<?x16x2x64xf16>, %[[BT:.*]]: memref<?x?xi32>, %[[SL:.*]]: memref<?xi32>, %[[O:.*]]: memref<?x8x64xf16>)
// CHECK-DAG: %[[NEGINF:.*]] = arith.constant 0xFF800000 : f32
// CHECK-DAG: %[[SCALE:.*]] = arith.constant 1.250000e-01 : f32
// CHECK: %[[ACC:.*]] = memref.alloca() : memref<64xf32>
// CHECK: scf.for %[[B:.*]] = %c0 to %{{.*}} step %c1 {
// CHECK: %[[LEN32:.*]] = memref.load %[[SL]][%[[B]]]
// CHECK: %[[LEN:.*]] = arith.index_cast %[[LEN32]] : i32 to index
// CHECK: scf.for %[[H:.*]] = %c0 to %c8 step %c1 {
// CHECK: %[[KVH:.*]] = arith.divui %[[H]], %c4 : index
// CHECK: %[[MAX:.*]] = scf.for %[[T:.*]] = %c0 to %[[LEN]] step %c1 iter_args(%{{.*}} = %[[NEGINF]]) -> (f32) {
// CHECK: arith.divui %[[T]], %c16
// CHECK: arith.remui %[[T]], %c16
// CHECK: memref.load %[[BT]][%[[B]], %{{.*}}]
// CHECK: arith.extf %{{.*}} : f16 to f32
// CHECK: math.fma
// CHECK: arith.mulf %{{.*}}, %[[SCALE]] : f32
// CHECK: arith.maximumf
// CHECK: %[[SUM:.*]] = scf.for %{{.*}} = %c0 to %[[LEN]] step %c1 iter_args(
// CHECK: math.exp
// CHECK: memref.load %[[V]]
// CHECK: memref.store %{{.*}}, %[[ACC]]
// CHECK: arith.cmpf ogt, %[[SUM]]
// CHECK: arith.truncf %{{.*}} : f32 to f16
// CHECK: memref.store %{{.*}}, %[[O]][%[[B]], %[[H]], %{{.*}}]
// CHECK-NOT: paged_attn.decode

// Through to the LLVM dialect for the CPU JIT.
// LLVM: llvm.func @decode
// LLVM-NOT: paged_attn
// LLVM-NOT: scf.
// LLVM: llvm.intr.exp
func.func @decode(%q: memref<?x8x64xf16>, %k: memref<?x16x2x64xf16>, %v: memref<?x16x2x64xf16>,
                  %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x8x64xf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x8x64xf16>)
    : memref<?x8x64xf16>, memref<?x16x2x64xf16>, memref<?x16x2x64xf16>, memref<?x?xi32>, memref<?xi32>
  return
}
