// RUN: paged-attn-opt %s --convert-paged-attn-to-loops -canonicalize -cse | FileCheck %s
// RUN: paged-attn-opt %s --paged-attn-to-cpu | FileCheck %s --check-prefix=LLVM

// An fp8 cache's element is its code's value times its scale: the scale
// of the same (page, KV head, slot) under hnd, the code widened through
// f16 by KVDequant (E4M3FN's fields moved into an f16, times 2^8, its NaN
// code selected apart).
// CHECK-LABEL: func.func @token_hnd
// CHECK-DAG: %[[NAN:.*]] = arith.constant 0x7E00 : f16
// CHECK-DAG: %[[TWO8:.*]] = arith.constant 2.560000e+02 : f16
// CHECK-DAG: %[[C7:.*]] = arith.constant 7 : i16
// CHECK-DAG: %[[M7F:.*]] = arith.constant 127 : i16
// CHECK-DAG: %[[M80:.*]] = arith.constant 128 : i16
// CHECK-DAG: %[[C8:.*]] = arith.constant 8 : i16
// CHECK: %[[CODE:.*]] = memref.load %arg1[%[[PAGE:.*]], %[[KVH:.*]], %[[SLOT:.*]], %{{.*}}] : memref<?x2x16x32xf8E4M3FN>
// CHECK: %[[SCALE:.*]] = memref.load %arg5[%[[PAGE]], %[[KVH]], %[[SLOT]]] : memref<?x2x16xf32>
// CHECK: %[[BITS:.*]] = arith.bitcast %[[CODE]] : f8E4M3FN to i8
// CHECK: %[[WIDE:.*]] = arith.extui %[[BITS]] : i8 to i16
// CHECK: %[[SIGN:.*]] = arith.andi %[[WIDE]], %[[M80]] : i16
// CHECK: %[[SIGN15:.*]] = arith.shli %[[SIGN]], %[[C8]] : i16
// CHECK: %[[MAG:.*]] = arith.andi %[[WIDE]], %[[M7F]] : i16
// CHECK: %[[FIELDS:.*]] = arith.shli %[[MAG]], %[[C7]] : i16
// CHECK: %[[HALFBITS:.*]] = arith.ori %[[SIGN15]], %[[FIELDS]] : i16
// CHECK: %[[HALF:.*]] = arith.bitcast %[[HALFBITS]] : i16 to f16
// CHECK: %[[VALUE:.*]] = arith.mulf %[[HALF]], %[[TWO8]] : f16
// CHECK: %[[ISNAN:.*]] = arith.cmpi eq, %[[MAG]], %[[M7F]] : i16
// CHECK: %[[CODEVAL:.*]] = arith.select %[[ISNAN]], %[[NAN]], %[[VALUE]] : f16
// CHECK: %[[F32:.*]] = arith.extf %[[CODEVAL]] : f16 to f32
// CHECK: arith.mulf %[[F32]], %[[SCALE]] : f32
// V's come from v_scale.
// CHECK: memref.load %arg6[%{{.*}}, %{{.*}}, %{{.*}}] : memref<?x2x16xf32>

// LLVM-LABEL: llvm.func @token_hnd
// LLVM: llvm.load %{{.*}} : !llvm.ptr -> i8
// LLVM: llvm.fmul %{{.*}}, %{{.*}} : f16

func.func @token_hnd(%q: memref<?x8x32xf16>, %k: memref<?x2x16x32xf8E4M3FN>, %v: memref<?x2x16x32xf8E4M3FN>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %ks: memref<?x2x16xf32>, %vs: memref<?x2x16xf32>, %o: memref<?x8x32xf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : memref<?x2x16xf32>) v_scale(%vs : memref<?x2x16xf32>) outs(%o : memref<?x8x32xf16>) {layout = #paged_attn.kv_layout<hnd>} : memref<?x8x32xf16>, memref<?x2x16x32xf8E4M3FN>, memref<?x2x16x32xf8E4M3FN>, memref<?x?xi32>, memref<?xi32>
  return
}
