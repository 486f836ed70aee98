// RUN: paged-attn-opt %s --paged-attn-select-decode-kernel --convert-paged-attn-to-gpu -canonicalize -cse | FileCheck %s
// RUN: paged-attn-opt %s --paged-attn-select-decode-kernel="fp8-conversions=true" --convert-paged-attn-to-gpu | FileCheck %s --check-prefix=CVT
// RUN: paged-attn-opt %s --paged-attn-to-ptx="chip=sm_90" | FileCheck %s --check-prefix=PTX90
// RUN: paged-attn-opt %s --paged-attn-to-ptx="chip=sm_80" | FileCheck %s --check-prefix=PTX80

// Host: one launch of 256 threads over ceil(T * num_kv_heads / rows per
// CTA) CTAs, skipped when there are no new tokens. A bf16 row of 128 is 16
// pieces of 16 bytes: 16 lanes a row, 16 rows a CTA.
// CHECK-LABEL: func.func @copy
// CHECK-DAG: %[[C8:.*]] = arith.constant 8 : index
// CHECK-DAG: %[[C16:.*]] = arith.constant 16 : index
// CHECK-DAG: %[[C256:.*]] = arith.constant 256 : index
// CHECK: %[[T:.*]] = memref.dim %arg0, %{{.*}}
// CHECK: %[[ROWS:.*]] = arith.muli %[[T]], %[[C8]] : index
// CHECK: %[[CTAS:.*]] = arith.ceildivui %[[ROWS]], %[[C16]] : index
// CHECK: %[[ANY:.*]] = arith.cmpi ugt, %[[ROWS]]
// CHECK: scf.if %[[ANY]] {
// CHECK: gpu.launch_func @paged_attn_kernels::@paged_attn_append_kv8_d128_p16_bf16_nhd blocks in (%[[CTAS]], %{{.*}}, %{{.*}}) threads in (%[[C256]], %{{.*}}, %{{.*}})
// Device: 16-byte loads of k and v before any store; stores predicated on
// the row existing and its slot being in the cache.
// CHECK: gpu.func @paged_attn_append_kv8_d128_p16_bf16_nhd(
// CHECK-SAME: known_block_size = array<i32: 256, 1, 1>
// CHECK: vector.load %arg0{{.*}} {alignment = 16 : i64} {{.*}} vector<8xbf16>
// CHECK: vector.load %arg1{{.*}} {alignment = 16 : i64} {{.*}} vector<8xbf16>
// CHECK: scf.if
// CHECK: vector.store {{.*}}, %arg3{{.*}} {alignment = 16 : i64} {{.*}} vector<8xbf16>
// CHECK: scf.if
// CHECK: vector.store {{.*}}, %arg4{{.*}} {alignment = 16 : i64} {{.*}} vector<8xbf16>
func.func @copy(%k: memref<?x8x128xbf16>, %v: memref<?x8x128xbf16>, %s: memref<?xi64>, %kc: memref<?x16x8x128xbf16>, %vc: memref<?x16x8x128xbf16>) {
  paged_attn.append %k, %v, %s, %kc, %vc : memref<?x8x128xbf16>, memref<?x8x128xbf16>, memref<?xi64>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>
  return
}

// Per token: the row's largest magnitude over the 16 lanes of a row by
// xor shuffles (8, 4, 2, 1), its scale stored by the row's first lane, the
// codes by integer arithmetic without fp8 conversions, by cvt.rn.satfinite
// in pairs with them, stored 8 bytes at a time.
// CHECK-LABEL: gpu.func @paged_attn_append_kv8_d128_p16_bf16_nhd_f8e4m3fn_token(
// CHECK: gpu.shuffle xor %{{.*}}, %c8_i32
// CHECK: gpu.shuffle xor %{{.*}}, %c4_i32
// CHECK: gpu.shuffle xor %{{.*}}, %c2_i32
// CHECK: gpu.shuffle xor %{{.*}}, %c1_i32
// CHECK: memref.store %{{.*}}, %arg5
// CHECK-NOT: nvvm.convert
// CHECK: arith.trunci %{{.*}} : vector<8xi32> to vector<8xi8>
// CHECK: vector.store %{{.*}}, %arg3{{.*}} {alignment = 8 : i64} {{.*}} vector<8xf8E4M3FN>
// CVT-LABEL: gpu.func @paged_attn_append_kv8_d128_p16_bf16_nhd_f8e4m3fn_token(
// CVT-COUNT-4: nvvm.convert.f32x2.to.f8x2 {{.*}} {rnd = #nvvm.fp_rnd_mode<rn>, sat = #nvvm.sat_mode<satfinite>} : vector<2xi8>(f8E4M3FN)
// PTX90-LABEL: .entry paged_attn_append_kv8_d128_p16_bf16_nhd_f8e4m3fn_token
// PTX90: cvt.rn.satfinite.e4m3x2.f32
// PTX80-LABEL: .entry paged_attn_append_kv8_d128_p16_bf16_nhd_f8e4m3fn_token
// PTX80-NOT: cvt.rn.satfinite
// PTX80: st.global.v2.b32
func.func @token(%k: memref<?x8x128xbf16>, %v: memref<?x8x128xbf16>, %s: memref<?xi64>, %kc: memref<?x16x8x128xf8E4M3FN>, %vc: memref<?x16x8x128xf8E4M3FN>, %ks: memref<?x16x8xf32>, %vs: memref<?x16x8xf32>) {
  paged_attn.append %k, %v, %s, %kc, %vc k_scale(%ks : memref<?x16x8xf32>) v_scale(%vs : memref<?x16x8xf32>) : memref<?x8x128xbf16>, memref<?x8x128xbf16>, memref<?xi64>, memref<?x16x8x128xf8E4M3FN>, memref<?x16x8x128xf8E4M3FN>
  return
}
