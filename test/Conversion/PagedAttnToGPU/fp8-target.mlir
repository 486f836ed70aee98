// RUN: not paged-attn-opt %s --paged-attn-select-decode-kernel 2>&1 | FileCheck %s
// RUN: paged-attn-opt %s --paged-attn-select-decode-kernel="fp8-conversions=true" | FileCheck %s --check-prefix=OK
// RUN: not paged-attn-opt %s --paged-attn-to-ptx="chip=sm_86" 2>&1 | FileCheck %s
// RUN: not paged-attn-opt %s --paged-attn-to-ptx="chip=sm_89" 2>&1 | FileCheck %s
// RUN: paged-attn-opt %s --paged-attn-to-ptx="chip=sm_89 features=+ptx81" | FileCheck %s --check-prefix=PTX
// RUN: paged-attn-opt %s --paged-attn-to-ptx="chip=sm_90" | FileCheck %s --check-prefix=PTX

// A hand-written strategy that widens fp8 with conversion instructions
// needs a target that has them (sm_89 with PTX 8.1, sm_90 with PTX 7.8):
// sm_89's default PTX 7.8 does not.
// CHECK: error: 'paged_attn.decode' op has a strategy with fp8_conversion, but the target has no fp8 conversion instructions (sm_89 with PTX 8.1, sm_90 with PTX 7.8; fp8-conversions=true)
// OK: fp8_conversion = true
// PTX: cvt.rn.f16x2.e4m3x2

func.func @given(%q: memref<?x32x128xf16>, %k: memref<?x16x8x128xf8E4M3FN>, %v: memref<?x16x8x128xf8E4M3FN>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %ks: memref<8xf32>, %vs: memref<8xf32>, %o: memref<?x32x128xf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : memref<8xf32>) v_scale(%vs : memref<8xf32>) outs(%o : memref<?x32x128xf16>)
    {paged_attn.strategy = #paged_attn.decode_strategy<kernel = tensor_cores, num_warps = 4, heads_per_cta = 4, kv_stages = 3, l2_prefetch = 128, tokens_per_lane_group = 0, prefetch_page_table = false, min_ctas_per_sm = 0, programmatic_launch = false, fp8_conversion = true>}
    : memref<?x32x128xf16>, memref<?x16x8x128xf8E4M3FN>, memref<?x16x8x128xf8E4M3FN>, memref<?x?xi32>, memref<?xi32>
  return
}
