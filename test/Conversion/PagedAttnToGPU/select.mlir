// RUN: paged-attn-opt %s --paged-attn-select-decode-kernel | FileCheck %s
// RUN: paged-attn-opt %s --paged-attn-select-decode-kernel="tensor-cores=off tokens-per-lane-group=2" | FileCheck %s --check-prefix=OFF
// RUN: paged-attn-opt %s --paged-attn-select-decode-kernel="shared-memory-limit=101376 programmatic-launch=true" | FileCheck %s --check-prefix=LIMIT
// RUN: paged-attn-opt %s --paged-attn-select-decode-kernel --convert-paged-attn-to-gpu="tensor-cores=off" | FileCheck %s --check-prefix=BUILT
// RUN: not paged-attn-opt %s --paged-attn-select-decode-kernel="kv-stages=7" 2>&1 | FileCheck %s --check-prefix=BADSTAGES

// The selection records each decode op's strategy on it: tensor cores for
// a 16-bit group of four, with three stages and the L2 hint; the CUDA-core
// kernel for f32, with its tokens per lane group and page-table prefetch.
// CHECK-LABEL: func.func @gqa4
// CHECK: paged_attn.decode {{.*}}paged_attn.strategy = #paged_attn.decode_strategy<kernel = tensor_cores, num_warps = 4, heads_per_cta = 4, kv_stages = 3, l2_prefetch = 128, tokens_per_lane_group = 0, prefetch_page_table = false, min_ctas_per_sm = 0, programmatic_launch = false>
// CHECK-LABEL: func.func @f32
// CHECK: paged_attn.strategy = #paged_attn.decode_strategy<kernel = cuda_cores, num_warps = 4, heads_per_cta = 4, kv_stages = 0, l2_prefetch = 0, tokens_per_lane_group = 4, prefetch_page_table = true, min_ctas_per_sm = 0, programmatic_launch = false>
// A strategy already on an op (here written by hand) is kept.
// CHECK-LABEL: func.func @given
// CHECK: paged_attn.strategy = #paged_attn.decode_strategy<kernel = cuda_cores, num_warps = 2, heads_per_cta = 2, kv_stages = 0, l2_prefetch = 0, tokens_per_lane_group = 1, prefetch_page_table = false, min_ctas_per_sm = 0, programmatic_launch = false>

// Above head_dim 128 a warp's mma takes 8 rows: MQA with 16 query heads is
// one CTA of two row groups of 8 per KV head, whose shared rings hold 3
// stages per sharing warp.
// CHECK-LABEL: func.func @mqa16_d256
// CHECK: #paged_attn.decode_strategy<kernel = tensor_cores, num_warps = 4, heads_per_cta = 16, kv_stages = 6,

// OFF-LABEL: func.func @gqa4
// OFF: #paged_attn.decode_strategy<kernel = cuda_cores, num_warps = 4, heads_per_cta = 4, kv_stages = 0, l2_prefetch = 0, tokens_per_lane_group = 2,

// Three stages of dense rows fit 99 KiB (98304 bytes); the limit's target
// also launches the merge early.
// LIMIT-LABEL: func.func @gqa4
// LIMIT: #paged_attn.decode_strategy<kernel = tensor_cores, num_warps = 4, heads_per_cta = 4, kv_stages = 3, {{.*}}programmatic_launch = true>
// The two rings of 256-wide rows the row groups share fit 3 stages
// (98304 bytes).
// LIMIT-LABEL: func.func @mqa16_d256
// LIMIT: #paged_attn.decode_strategy<kernel = tensor_cores, num_warps = 4, heads_per_cta = 16, kv_stages = 3,

// The conversion builds what the strategies say, whatever its own options:
// the recorded tensor-core strategy despite tensor-cores=off, and the given
// two-warp CUDA-core one.
// BUILT: gpu.launch_func @paged_attn_kernels::@paged_attn_decode_h32_kv8_d128_p16_bf16_nhd_w4
// BUILT-SAME: dynamic_shared_memory_size
// BUILT: gpu.launch_func @paged_attn_kernels::@paged_attn_decode_h8_kv2_d64_p16_f16_hnd_w2
// BUILT-SAME: threads in (%{{.*}}, %{{.*}}, %{{.*}})
// BUILT: gpu.func @paged_attn_decode_h32_kv8_d128_p16_bf16_nhd_w4({{.*}}known_block_size = array<i32: 128, 1, 1>
// BUILT: nvgpu.ldmatrix
// BUILT: gpu.func @paged_attn_decode_h8_kv2_d64_p16_f16_hnd_w2({{.*}}known_block_size = array<i32: 64, 1, 1>
// BUILT-NOT: nvgpu.ldmatrix
// BUILT: gpu.func @paged_attn_merge_h8_kv2_d64_p16_f16_hnd_w2

// BADSTAGES: kv-stages must be in [2, 4], got 7

func.func @gqa4(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>,
                %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>,
                %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>)
    : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>,
      memref<?x?xi32>, memref<?xi32>
  return
}

func.func @f32(%q: memref<?x8x64xf32>, %k: memref<?x16x2x64xf32>,
               %v: memref<?x16x2x64xf32>, %bt: memref<?x?xi32>,
               %sl: memref<?xi32>, %o: memref<?x8x64xf32>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x8x64xf32>)
    : memref<?x8x64xf32>, memref<?x16x2x64xf32>, memref<?x16x2x64xf32>,
      memref<?x?xi32>, memref<?xi32>
  return
}

func.func @given(%q: memref<?x8x64xf16>, %k: memref<?x2x16x64xf16>,
                 %v: memref<?x2x16x64xf16>, %bt: memref<?x?xi32>,
                 %sl: memref<?xi32>, %o: memref<?x8x64xf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x8x64xf16>)
    {layout = #paged_attn.kv_layout<hnd>,
     paged_attn.strategy = #paged_attn.decode_strategy<kernel = cuda_cores, num_warps = 2, heads_per_cta = 2, kv_stages = 0, l2_prefetch = 0, tokens_per_lane_group = 1, prefetch_page_table = false, min_ctas_per_sm = 0, programmatic_launch = false>}
    : memref<?x8x64xf16>, memref<?x2x16x64xf16>, memref<?x2x16x64xf16>,
      memref<?x?xi32>, memref<?xi32>
  return
}

func.func @mqa16_d256(%q: memref<?x16x256xbf16>, %k: memref<?x16x1x256xbf16>,
                      %v: memref<?x16x1x256xbf16>, %bt: memref<?x?xi32>,
                      %sl: memref<?xi32>, %o: memref<?x16x256xbf16>) {
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x16x256xbf16>)
    : memref<?x16x256xbf16>, memref<?x16x1x256xbf16>, memref<?x16x1x256xbf16>,
      memref<?x?xi32>, memref<?xi32>
  return
}
