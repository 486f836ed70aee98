// RUN: paged-attn-opt %s --convert-paged-attn-to-loops -canonicalize -cse | FileCheck %s
// RUN: paged-attn-opt %s --paged-attn-to-cpu | FileCheck %s --check-prefix=LLVM

// A multi-token decode in the reference: a loop over the L = 4 new
// queries; query i's keys end at max(n - (3 - i), 0) (causal among the new
// tokens); the tree mask is read at the key's index among the new tokens
// (clamped: keys before them are always visible) and a hidden key's logit
// is -inf and its weight 0; out and the log-sum-exp are stored per query.
// CHECK-LABEL: func.func @decode_multi_token
// CHECK-DAG: %[[NEGINF:.*]] = arith.constant 0xFF800000 : f32
// CHECK: %[[LEN:.*]] = arith.index_cast %{{.*}} : i32 to index
// CHECK: scf.for %[[I:.*]] = %c0 to %c4 step %c1 {
// CHECK: %[[BEHIND:.*]] = arith.subi %c3, %[[I]] : index
// CHECK: %[[END0:.*]] = arith.subi %[[LEN]], %[[BEHIND]] : index
// CHECK: %[[END:.*]] = arith.maxsi %[[END0]], %c0 : index
// CHECK: scf.for %[[H:.*]] = %c0 to %c8 step %c1 {
// CHECK: %[[MAX:.*]] = scf.for %[[T:.*]] = %c0 to %[[END]] step %c1
// CHECK: memref.load %arg0[%{{.*}}, %[[I]], %[[H]], %{{.*}}] : memref<?x4x8x64xf32>
// CHECK: %[[FIRSTNEW:.*]] = arith.subi %[[LEN]], %c4 : index
// CHECK: %[[J:.*]] = arith.subi %[[T]], %[[FIRSTNEW]] : index
// CHECK: %[[OLD:.*]] = arith.cmpi slt, %[[J]], %c0 : index
// CHECK: %[[J0:.*]] = arith.maxsi %[[J]], %c0 : index
// CHECK: %[[JC:.*]] = arith.minsi %[[J0]], %c3 : index
// CHECK: %[[ENTRY:.*]] = memref.load %arg5[%{{.*}}, %[[I]], %[[JC]]] : memref<?x4x4xi8>
// CHECK: %[[SET:.*]] = arith.cmpi ne, %[[ENTRY]], %c0_i8 : i8
// CHECK: %[[SEEN:.*]] = arith.ori %[[OLD]], %[[SET]] : i1
// CHECK: arith.select %[[SEEN]], %{{.*}}, %[[NEGINF]] : f32
// CHECK: %[[SUM:.*]] = scf.for %{{.*}} = %c0 to %[[END]] step %c1
// CHECK: %[[HIDDEN:.*]] = arith.cmpf oeq, %{{.*}}, %[[NEGINF]] : f32
// CHECK: arith.select %[[HIDDEN]], %{{.*}}, %{{.*}} : f32
// CHECK: memref.store %{{.*}}, %arg7[%{{.*}}, %[[I]], %[[H]]] : memref<?x4x8xf32>
// CHECK: memref.store %{{.*}}, %arg6[%{{.*}}, %[[I]], %[[H]], %{{.*}}] : memref<?x4x8x64xf32>
// LLVM-LABEL: llvm.func @decode_multi_token
// LLVM-NOT: paged_attn.
func.func @decode_multi_token(%q: memref<?x4x8x64xf32>, %k: memref<?x16x2x64xf32>, %v: memref<?x16x2x64xf32>,
    %bt: memref<?x?xi32>, %sl: memref<?xi32>, %m: memref<?x4x4xi8>, %o: memref<?x4x8x64xf32>, %l: memref<?x4x8xf32>) {
  paged_attn.decode %q, %k, %v, %bt, %sl tree_mask(%m : memref<?x4x4xi8>) outs(%o : memref<?x4x8x64xf32>) lse(%l : memref<?x4x8xf32>)
    : memref<?x4x8x64xf32>, memref<?x16x2x64xf32>, memref<?x16x2x64xf32>, memref<?x?xi32>, memref<?xi32>
  return
}

// Without a tree mask, no mask is read and no weight is selected; one
// query token of rank 4 (L = 1) sees every key.
// CHECK-LABEL: func.func @decode_one_new_token
// CHECK-NOT: arith.cmpf oeq
// CHECK: scf.for %{{.*}} = %c0 to %{{.*}} step %c1 iter_args
// CHECK-NOT: arith.maxsi
// CHECK: return
func.func @decode_one_new_token(%q: memref<?x1x8x64xbf16>, %k: memref<?x16x2x64xbf16>, %v: memref<?x16x2x64xbf16>,
    %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x1x8x64xbf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x1x8x64xbf16>)
    : memref<?x1x8x64xbf16>, memref<?x16x2x64xbf16>, memref<?x16x2x64xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}
