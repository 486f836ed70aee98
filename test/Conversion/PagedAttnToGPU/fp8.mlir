// RUN: paged-attn-opt %s --paged-attn-select-decode-kernel | FileCheck %s --check-prefix=SELECT
// RUN: paged-attn-opt %s --paged-attn-select-decode-kernel="fp8-conversions=true" | FileCheck %s --check-prefix=CVT
// RUN: paged-attn-opt %s --paged-attn-select-decode-kernel="fp8-conversions=true" --convert-paged-attn-to-gpu | FileCheck %s --check-prefix=TC
// RUN: paged-attn-opt %s --paged-attn-select-decode-kernel --convert-paged-attn-to-gpu | FileCheck %s --check-prefix=SOFT

// fp8 caches: tensor cores for a group of 4 at head_dim 128 (a multiple of
// 32), CUDA cores at head_dim 80; with the target's fp8 conversions the
// strategy says so.
// SELECT-LABEL: func.func @gqa4_token
// SELECT: kernel = tensor_cores, num_warps = 4, heads_per_cta = 4, kv_stages = 3, l2_prefetch = 128, tokens_per_lane_group = 0, prefetch_page_table = false, min_ctas_per_sm = 0, programmatic_launch = false>
// SELECT-LABEL: func.func @gqa4_d80
// SELECT: kernel = cuda_cores, {{.*}}programmatic_launch = false>
// CVT-LABEL: func.func @gqa4_token
// CVT: kernel = tensor_cores, {{.*}}, fp8_conversion = true>
// CVT-LABEL: func.func @gqa4_d80
// CVT: kernel = cuda_cores, {{.*}}, fp8_conversion = true>

// The launches pass the scales last, as the Spec's ABI says.
// TC-LABEL: func.func @gqa4_token
// TC: gpu.launch_func @paged_attn_kernels::@paged_attn_decode_h32_kv8_d128_p16_bf16_nhd_w4_f8e4m3fn_token
// TC-SAME: %{{.*}} : memref<?x16x8xf32, strided<[?, ?, ?], offset: ?>>, %{{.*}} : memref<?x16x8xf32, strided<[?, ?, ?], offset: ?>>)

// Tensor cores: the tiles are copied as bytes into dense (swizzled) rows
// of 64 16-bit elements; a bf16 q goes to f16 (times 2^-8) for the mma; per-token
// scales are loaded through the page table, a tile ahead. Each register
// of an ldmatrix is four codes, widened a pair at a time; V's are reordered
// by column first.
// TC-LABEL: gpu.func @paged_attn_decode_h32_kv8_d128_p16_bf16_nhd_w4_f8e4m3fn_token(
// TC: memref.view %{{.*}} to memref<24576xf16, #gpu.address_space<workgroup>>
// TC: %[[Q:.*]] = vector.load %arg0{{.*}} vector<2xbf16>
// TC: %[[QF:.*]] = arith.extf %[[Q]] : vector<2xbf16> to vector<2xf32>
// TC: arith.mulf %[[QF]], %{{.*}} : vector<2xf32>
// TC: llvm.call_intrinsic "llvm.nvvm.ff2f16x2.rn"
// TC: memref.load %arg11[%{{.*}}, %{{.*}}, %{{.*}}] : memref<?x16x8xf32
// TC: memref.load %arg12[%{{.*}}, %{{.*}}, %{{.*}}] : memref<?x16x8xf32
// TC: scf.for
// TC: %[[K:.*]] = nvgpu.ldmatrix %{{.*}} {numTiles = 4 : i32, transpose = false} : memref<24576xf16, #gpu.address_space<workgroup>> -> vector<4x2xf16>
// TC: %[[KR:.*]] = vector.extract %[[K]][0] : vector<2xf16> from vector<4x2xf16>
// TC: %[[KC:.*]] = vector.bitcast %[[KR]] : vector<2xf16> to vector<4xi8>
// TC: %[[KP:.*]] = vector.shuffle %[[KC]], %[[KC]] [0, 1] : vector<4xi8>, vector<4xi8>
// TC: nvvm.convert.f8x2.to.f16x2 %[[KP]] : vector<2xi8>(f8E4M3FN) -> vector<2xf16>
// TC: nvvm.mma.sync {{.*}} : (vector<2xf16>, vector<2xf16>, f32)
// V's scales enter P over 2^-15 times the row's largest weighted scale
// (entries within 2^15, the tokens that carry the row above f16's
// subnormals), its reciprocal one instruction.
// TC: %[[SHIFT:.*]] = arith.constant 3.05175781E-5 : f32
// TC: %[[LARGEST:.*]] = arith.mulf %{{.*}}, %[[SHIFT]] : f32
// TC: llvm.call_intrinsic "llvm.maxnum.f32"(%{{.*}}, %[[LARGEST]])
// TC: llvm.call_intrinsic "llvm.nvvm.rcp.approx.ftz.f"
// TC: %[[V:.*]] = nvgpu.ldmatrix %{{.*}} {numTiles = 4 : i32, transpose = true}
// TC: %[[VR:.*]] = vector.extract %[[V]][0]
// TC: %[[VC:.*]] = vector.bitcast %[[VR]] : vector<2xf16> to vector<4xi8>
// TC: vector.shuffle %[[VC]], %[[VC]] [0, 2, 1, 3] : vector<4xi8>, vector<4xi8>
// TC: nvvm.convert.f8x2.to.f16x2

// Without conversion instructions the codes are widened with integer
// arithmetic (KVDequant). E4M3FN in the tensor-core kernel: its NaN codes
// are selected apart.
// SOFT-LABEL: gpu.func @paged_attn_decode_h32_kv8_d128_p16_bf16_nhd_w4_f8e4m3fn_token(
// SOFT: nvgpu.ldmatrix
// SOFT: arith.extui %{{.*}} : vector<4xi8> to vector<4xi16>
// SOFT: arith.mulf %{{.*}}, %{{.*}} : vector<4xf16>
// SOFT: arith.cmpi eq, %{{.*}}, %{{.*}} : vector<4xi16>
// SOFT: arith.select %{{.*}}, %{{.*}}, %{{.*}} : vector<4xi1>, vector<4xf16>
// SOFT-NOT: nvvm.convert
// E5M2 is an f16's top byte; the CUDA-core kernel loads 8 codes (8 bytes)
// per q vector.
// SOFT-LABEL: gpu.func @paged_attn_decode_h32_kv8_d80_p16_f16_nhd_w4_f8e5m2_tensor(
// SOFT: memref.load %arg11[] : memref<f32, strided<[], offset: ?>>
// SOFT: memref.load %arg12[] : memref<f32, strided<[], offset: ?>>
// SOFT: %[[K:.*]] = vector.load %arg1[{{.*}}] {alignment = 8 : i64} : memref<?x16x8x80xf8E5M2, strided<[?, ?, ?, 1], offset: ?>>, vector<8xf8E5M2>
// SOFT: %[[KB:.*]] = arith.bitcast %[[K]] : vector<8xf8E5M2> to vector<8xi8>
// SOFT: %[[KW:.*]] = arith.extui %[[KB]] : vector<8xi8> to vector<8xi16>
// SOFT: %[[KS:.*]] = arith.shli %[[KW]], %{{.*}} : vector<8xi16>
// SOFT: %[[KH:.*]] = arith.bitcast %[[KS]] : vector<8xi16> to vector<8xf16>
// SOFT: arith.extf %[[KH]] : vector<8xf16> to vector<8xf32>
// SOFT-NOT: nvvm.convert

func.func @gqa4_token(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xf8E4M3FN>, %v: memref<?x16x8x128xf8E4M3FN>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %ks: memref<?x16x8xf32>, %vs: memref<?x16x8xf32>, %o: memref<?x32x128xbf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : memref<?x16x8xf32>) v_scale(%vs : memref<?x16x8xf32>) outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x16x8x128xf8E4M3FN>, memref<?x16x8x128xf8E4M3FN>, memref<?x?xi32>, memref<?xi32>
  return
}

func.func @gqa4_d80(%q: memref<?x32x80xf16>, %k: memref<?x16x8x80xf8E5M2>, %v: memref<?x16x8x80xf8E5M2>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %ks: memref<f32>, %vs: memref<f32>, %o: memref<?x32x80xf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : memref<f32>) v_scale(%vs : memref<f32>) outs(%o : memref<?x32x80xf16>) : memref<?x32x80xf16>, memref<?x16x8x80xf8E5M2>, memref<?x16x8x80xf8E5M2>, memref<?x?xi32>, memref<?xi32>
  return
}
