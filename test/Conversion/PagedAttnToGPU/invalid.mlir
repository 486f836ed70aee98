// RUN: paged-attn-opt %s --convert-paged-attn-to-gpu -split-input-file -verify-diagnostics
// RUN: not paged-attn-opt %s --convert-paged-attn-to-gpu=num-splits=0 -split-input-file 2>&1 | FileCheck %s --check-prefix=SPLITS

// RUN: not paged-attn-opt %s --convert-paged-attn-to-gpu=prefetch-page-table=sometimes -split-input-file 2>&1 | FileCheck %s --check-prefix=PREFETCH
// RUN: not paged-attn-opt %s --convert-paged-attn-to-gpu=tokens-per-lane-group=17 -split-input-file 2>&1 | FileCheck %s --check-prefix=UNROLL

// SPLITS: num-splits must be in [1, 65535], got 0
// PREFETCH: prefetch-page-table must be auto, on or off, got 'sometimes'
// UNROLL: tokens-per-lane-group must be in [0, 16], got 17

func.func @tensor_form(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>,
                       %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{must be bufferized (memref form) before convert-paged-attn-to-gpu}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl
       : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// A hand-written strategy is checked against the op.
func.func @tensor_cores_for_f32(%q: memref<?x8x64xf32>, %k: memref<?x16x2x64xf32>, %v: memref<?x16x2x64xf32>,
                                %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x8x64xf32>) {
  // expected-error @+1 {{cannot be built with its strategy: the tensor-core kernel serves f16/bf16 with head_dim a multiple of 16 up to 256}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x8x64xf32>)
    {paged_attn.strategy = #paged_attn.decode_strategy<kernel = tensor_cores, num_warps = 4, heads_per_cta = 4, kv_stages = 3, l2_prefetch = 128, tokens_per_lane_group = 0, prefetch_page_table = false, min_ctas_per_sm = 0, programmatic_launch = false>}
    : memref<?x8x64xf32>, memref<?x16x2x64xf32>, memref<?x16x2x64xf32>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// Above head_dim 128 a warp's mma takes 8 rows, and 3 warps cannot split
// into two row groups.
func.func @tensor_cores_rows_d256(%q: memref<?x16x256xbf16>, %k: memref<?x16x1x256xbf16>, %v: memref<?x16x1x256xbf16>,
                                  %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x16x256xbf16>) {
  // expected-error @+1 {{cannot be built with its strategy: heads_per_cta must be in [1, 8], got 16}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x16x256xbf16>)
    {paged_attn.strategy = #paged_attn.decode_strategy<kernel = tensor_cores, num_warps = 3, heads_per_cta = 16, kv_stages = 3, l2_prefetch = 128, tokens_per_lane_group = 0, prefetch_page_table = false, min_ctas_per_sm = 0, programmatic_launch = false>}
    : memref<?x16x256xbf16>, memref<?x16x1x256xbf16>, memref<?x16x1x256xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// A multi-token CTA's rows fill at most two row groups, of an even number
// of warps: 32 rows need 4 warps at head_dim 128, and 3 cannot split.
func.func @tensor_cores_rows_odd_warps(%q: memref<?x8x4x128xbf16>, %k: memref<?x16x1x128xbf16>, %v: memref<?x16x1x128xbf16>,
                                       %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x8x4x128xbf16>) {
  // expected-error @+1 {{cannot be built with its strategy: queries_per_cta times heads_per_cta (32) must be at most 16, the rows a CTA of this kernel serves with 3 warps}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x8x4x128xbf16>)
    {paged_attn.strategy = #paged_attn.decode_strategy<kernel = tensor_cores, num_warps = 3, heads_per_cta = 4, kv_stages = 3, l2_prefetch = 128, tokens_per_lane_group = 0, prefetch_page_table = false, min_ctas_per_sm = 0, programmatic_launch = false, queries_per_cta = 8>}
    : memref<?x8x4x128xbf16>, memref<?x16x1x128xbf16>, memref<?x16x1x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// Above head_dim 128 a row group is 8 rows: two of them take 16.
func.func @tensor_cores_rows_d256_l4(%q: memref<?x4x8x256xbf16>, %k: memref<?x16x1x256xbf16>, %v: memref<?x16x1x256xbf16>,
                                     %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x4x8x256xbf16>) {
  // expected-error @+1 {{cannot be built with its strategy: queries_per_cta times heads_per_cta (24) must be at most 16, the rows a CTA of this kernel serves with 4 warps}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x4x8x256xbf16>)
    {paged_attn.strategy = #paged_attn.decode_strategy<kernel = tensor_cores, num_warps = 4, heads_per_cta = 8, kv_stages = 3, l2_prefetch = 128, tokens_per_lane_group = 0, prefetch_page_table = false, min_ctas_per_sm = 0, programmatic_launch = false, queries_per_cta = 3>}
    : memref<?x4x8x256xbf16>, memref<?x16x1x256xbf16>, memref<?x16x1x256xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// A ring shared by two row groups holds up to 4 stages per sharing warp.
func.func @row_group_stages(%q: memref<?x8x4x128xbf16>, %k: memref<?x16x1x128xbf16>, %v: memref<?x16x1x128xbf16>,
                            %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x8x4x128xbf16>) {
  // expected-error @+1 {{cannot be built with its strategy: kv_stages must be in [2, 8], got 9}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x8x4x128xbf16>)
    {paged_attn.strategy = #paged_attn.decode_strategy<kernel = tensor_cores, num_warps = 4, heads_per_cta = 4, kv_stages = 9, l2_prefetch = 128, tokens_per_lane_group = 0, prefetch_page_table = false, min_ctas_per_sm = 0, programmatic_launch = false, queries_per_cta = 8>}
    : memref<?x8x4x128xbf16>, memref<?x16x1x128xbf16>, memref<?x16x1x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// One row group: at most 4 stages.
func.func @one_group_stages(%q: memref<?x4x4x128xbf16>, %k: memref<?x16x1x128xbf16>, %v: memref<?x16x1x128xbf16>,
                            %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x4x4x128xbf16>) {
  // expected-error @+1 {{cannot be built with its strategy: kv_stages must be in [2, 4], got 6}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x4x4x128xbf16>)
    {paged_attn.strategy = #paged_attn.decode_strategy<kernel = tensor_cores, num_warps = 4, heads_per_cta = 4, kv_stages = 6, l2_prefetch = 128, tokens_per_lane_group = 0, prefetch_page_table = false, min_ctas_per_sm = 0, programmatic_launch = false, queries_per_cta = 4>}
    : memref<?x4x4x128xbf16>, memref<?x16x1x128xbf16>, memref<?x16x1x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

func.func @heads_not_dividing(%q: memref<?x8x64xf16>, %k: memref<?x16x2x64xf16>, %v: memref<?x16x2x64xf16>,
                              %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x8x64xf16>) {
  // expected-error @+1 {{cannot be built with its strategy: heads_per_cta (3) must divide the query heads per KV head (4)}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x8x64xf16>)
    {paged_attn.strategy = #paged_attn.decode_strategy<kernel = cuda_cores, num_warps = 4, heads_per_cta = 3, kv_stages = 0, l2_prefetch = 0, tokens_per_lane_group = 4, prefetch_page_table = false, min_ctas_per_sm = 0, programmatic_launch = false>}
    : memref<?x8x64xf16>, memref<?x16x2x64xf16>, memref<?x16x2x64xf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

func.func @not_a_strategy(%q: memref<?x8x64xf16>, %k: memref<?x16x2x64xf16>, %v: memref<?x16x2x64xf16>,
                          %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x8x64xf16>) {
  // expected-error @+1 {{'paged_attn.strategy' must be a #paged_attn.decode_strategy, got "fast"}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x8x64xf16>)
    {paged_attn.strategy = "fast"}
    : memref<?x8x64xf16>, memref<?x16x2x64xf16>, memref<?x16x2x64xf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// The kernels read a tree mask as bytes; an i1 memref has no i8 view.
func.func @i1_tree_mask(%q: memref<?x4x8x64xf16>, %k: memref<?x16x2x64xf16>, %v: memref<?x16x2x64xf16>,
                        %bt: memref<?x?xi32>, %sl: memref<?xi32>, %m: memref<?x4x4xi1>, %o: memref<?x4x8x64xf16>) {
  // expected-error @+1 {{has an i1 'tree_mask'; the GPU kernels read the mask as bytes: give it as i8 (a bool tensor's bytes)}}
  paged_attn.decode %q, %k, %v, %bt, %sl tree_mask(%m : memref<?x4x4xi1>) outs(%o : memref<?x4x8x64xf16>)
    : memref<?x4x8x64xf16>, memref<?x16x2x64xf16>, memref<?x16x2x64xf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// fp8_conversion is a choice about widening fp8 caches.
func.func @fp8_conversion_bf16(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{cannot be built with its strategy: fp8_conversion applies to fp8 caches only}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>)
    {paged_attn.strategy = #paged_attn.decode_strategy<kernel = tensor_cores, num_warps = 4, heads_per_cta = 4, kv_stages = 3, l2_prefetch = 128, tokens_per_lane_group = 0, prefetch_page_table = false, min_ctas_per_sm = 0, programmatic_launch = false, fp8_conversion = true>}
    : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// fp8 caches on tensor cores need rows of 32 codes.
func.func @fp8_tensor_cores_d80(%q: memref<?x32x80xf16>, %k: memref<?x16x8x80xf8E5M2>, %v: memref<?x16x8x80xf8E5M2>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %ks: memref<f32>, %vs: memref<f32>, %o: memref<?x32x80xf16>) {
  // expected-error @+1 {{cannot be built with its strategy: the tensor-core kernel serves f16/bf16 with head_dim a multiple of 16 up to 256 (of 32 with fp8 caches)}}
  paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : memref<f32>) v_scale(%vs : memref<f32>) outs(%o : memref<?x32x80xf16>)
    {paged_attn.strategy = #paged_attn.decode_strategy<kernel = tensor_cores, num_warps = 4, heads_per_cta = 4, kv_stages = 3, l2_prefetch = 128, tokens_per_lane_group = 0, prefetch_page_table = false, min_ctas_per_sm = 0, programmatic_launch = false>}
    : memref<?x32x80xf16>, memref<?x16x8x80xf8E5M2>, memref<?x16x8x80xf8E5M2>, memref<?x?xi32>, memref<?xi32>
  return
}
