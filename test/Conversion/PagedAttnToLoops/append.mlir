// RUN: paged-attn-opt %s --convert-paged-attn-to-loops -canonicalize -cse | FileCheck %s
// RUN: paged-attn-opt %s --paged-attn-to-cpu | FileCheck %s --check-prefix=LLVM

// A copy: for each token whose slot is in [0, num_pages * page), every KV
// head's row goes to (slot / page, slot % page) element by element.
// CHECK-LABEL: func.func @copy_hnd
// CHECK-DAG: %[[C0:.*]] = arith.constant 0 : index
// CHECK-DAG: %[[PAGE:.*]] = arith.constant 16 : index
// CHECK-DAG: %[[ZERO64:.*]] = arith.constant 0 : i64
// CHECK: %[[PAGES:.*]] = memref.dim %arg3, %[[C0]]
// CHECK: %[[CAP:.*]] = arith.muli %[[PAGES]], %[[PAGE]]
// CHECK: %[[CAP64:.*]] = arith.index_cast %[[CAP]] : index to i64
// CHECK: scf.for %[[T:.*]] = %[[C0]] to %{{.*}}
// CHECK: %[[SLOT:.*]] = memref.load %arg2[%[[T]]] : memref<?xi64>
// CHECK-DAG: %[[BELOW:.*]] = arith.cmpi slt, %[[SLOT]], %[[CAP64]] : i64
// CHECK-DAG: %[[NONNEG:.*]] = arith.cmpi sge, %[[SLOT]], %[[ZERO64]] : i64
// CHECK: %[[IN:.*]] = arith.andi
// CHECK: scf.if %[[IN]]
// CHECK: %[[S:.*]] = arith.index_cast %[[SLOT]] : i64 to index
// CHECK: %[[P:.*]] = arith.divui %[[S]], %[[PAGE]]
// CHECK: %[[O:.*]] = arith.remui %[[S]], %[[PAGE]]
// CHECK: scf.for %[[H:.*]] =
// CHECK: scf.for %[[D:.*]] =
// CHECK: %[[X:.*]] = memref.load %arg0[%[[T]], %[[H]], %[[D]]] : memref<?x8x64xf16>
// CHECK: memref.store %[[X]], %arg3[%[[P]], %[[H]], %[[O]], %[[D]]] : memref<?x8x16x64xf16>
// CHECK: memref.load %arg1[%[[T]], %[[H]], %{{.*}}] : memref<?x8x64xf16>
// CHECK: memref.store %{{.*}}, %arg4[%[[P]], %[[H]], %[[O]], %{{.*}}] : memref<?x8x16x64xf16>
func.func @copy_hnd(%k: memref<?x8x64xf16>, %v: memref<?x8x64xf16>, %s: memref<?xi64>, %kc: memref<?x8x16x64xf16>, %vc: memref<?x8x16x64xf16>) {
  paged_attn.append %k, %v, %s, %kc, %vc {layout = #paged_attn.kv_layout<hnd>} : memref<?x8x64xf16>, memref<?x8x64xf16>, memref<?xi64>, memref<?x8x16x64xf16>, memref<?x8x16x64xf16>
  return
}

// Per token: the row's largest magnitude (maximumf keeps NaN), its scale
// max(amax / 448, 2^-126) stored at the row's (page, slot, KV head), then
// each element times 1 / scale encoded by KVDequant's fp8FromF32.
// CHECK-LABEL: func.func @token_e4m3
// CHECK-DAG: %[[FMAX:.*]] = arith.constant 4.480000e+02 : f32
// CHECK-DAG: %[[FLOOR:.*]] = arith.constant 1.17549435E-38 : f32
// CHECK-DAG: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK: %[[AMAX:.*]] = scf.for {{.*}} iter_args(%[[ACC:.*]] = %{{.*}}) -> (f32)
// CHECK: %[[ABS:.*]] = math.absf
// CHECK: arith.maximumf %[[ACC]], %[[ABS]] : f32
// CHECK: %[[Q:.*]] = arith.divf %[[AMAX]], %[[FMAX]] : f32
// CHECK: %[[SCALE:.*]] = arith.maximumf %[[Q]], %[[FLOOR]] : f32
// CHECK: memref.store %[[SCALE]], %arg5[%[[P:.*]], %[[O:.*]], %[[H:.*]]] : memref<?x16x8xf32>
// CHECK: %[[R:.*]] = arith.divf %[[ONE]], %[[SCALE]] : f32
// CHECK: scf.for
// CHECK: %[[SCALED:.*]] = arith.mulf %{{.*}}, %[[R]] : f32
// CHECK: arith.bitcast %[[SCALED]] : f32 to i32
// CHECK: %[[CODE:.*]] = arith.trunci %{{.*}} : i32 to i8
// CHECK: %[[FP8:.*]] = arith.bitcast %[[CODE]] : i8 to f8E4M3FN
// CHECK: memref.store %[[FP8]], %arg3[%[[P]], %[[O]], %[[H]], %{{.*}}] : memref<?x16x8x128xf8E4M3FN>
// V's scale goes to v_scale.
// CHECK: memref.store %{{.*}}, %arg6[%[[P]], %[[O]], %[[H]]] : memref<?x16x8xf32>
// LLVM-LABEL: llvm.func @token_e4m3
// LLVM-NOT: paged_attn
func.func @token_e4m3(%k: memref<?x8x128xbf16>, %v: memref<?x8x128xbf16>, %s: memref<?xi64>, %kc: memref<?x16x8x128xf8E4M3FN>, %vc: memref<?x16x8x128xf8E4M3FN>, %ks: memref<?x16x8xf32>, %vs: memref<?x16x8xf32>) {
  paged_attn.append %k, %v, %s, %kc, %vc k_scale(%ks : memref<?x16x8xf32>) v_scale(%vs : memref<?x16x8xf32>) : memref<?x8x128xbf16>, memref<?x8x128xbf16>, memref<?xi64>, memref<?x16x8x128xf8E4M3FN>, memref<?x16x8x128xf8E4M3FN>
  return
}

// Per KV head: the head's scale is read, not written.
// CHECK-LABEL: func.func @head_e5m2
// CHECK: %[[SCALE:.*]] = memref.load %arg5[%[[H:.*]]] : memref<8xf32>
// CHECK: arith.divf %{{.*}}, %[[SCALE]] : f32
// CHECK-NOT: memref.store %{{.*}}, %arg5
// CHECK: memref.store %{{.*}}, %arg3{{.*}} : memref<?x16x8x128xf8E5M2>
func.func @head_e5m2(%k: memref<?x8x128xf16>, %v: memref<?x8x128xf16>, %s: memref<?xi64>, %kc: memref<?x16x8x128xf8E5M2>, %vc: memref<?x16x8x128xf8E5M2>, %ks: memref<8xf32>, %vs: memref<8xf32>) {
  paged_attn.append %k, %v, %s, %kc, %vc k_scale(%ks : memref<8xf32>) v_scale(%vs : memref<8xf32>) : memref<?x8x128xf16>, memref<?x8x128xf16>, memref<?xi64>, memref<?x16x8x128xf8E5M2>, memref<?x16x8x128xf8E5M2>
  return
}
