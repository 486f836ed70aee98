// RUN: paged-attn-opt %s -split-input-file -verify-diagnostics

// One case per verifier rule of paged_attn.append, each with its exact
// message.

// mixed-forms: tensors and memrefs together
func.func @mixed_forms(%k: memref<?x8x128xbf16>, %v: tensor<?x8x128xbf16>, %s: tensor<?xi64>, %kc: tensor<?x16x8x128xbf16>, %vc: tensor<?x16x8x128xbf16>) {
  // expected-error @+1 {{'paged_attn.append' op 'k', 'v', 'slot_mapping', 'k_cache' and 'v_cache' must be all tensors or all memrefs}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc : memref<?x8x128xbf16>, tensor<?x8x128xbf16>, tensor<?xi64>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16> -> tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>
  return
}

// -----

// memref-results: the memref form returns nothing
func.func @memref_results(%k: memref<?x8x128xbf16>, %v: memref<?x8x128xbf16>, %s: memref<?xi64>, %kc: memref<?x16x8x128xbf16>, %vc: memref<?x16x8x128xbf16>) {
  // expected-error @+1 {{'paged_attn.append' op the memref form has no results; it writes the caches in place}}
  %r = paged_attn.append %k, %v, %s, %kc, %vc : memref<?x8x128xbf16>, memref<?x8x128xbf16>, memref<?xi64>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16> -> tensor<?x16x8x128xbf16>
  return
}

// -----

// tensor-no-results: the tensor form returns the caches
func.func @tensor_no_results(%k: tensor<?x8x128xbf16>, %v: tensor<?x8x128xbf16>, %s: tensor<?xi64>, %kc: tensor<?x16x8x128xbf16>, %vc: tensor<?x16x8x128xbf16>) {
  // expected-error @+1 {{'paged_attn.append' op the tensor form must return the updated 'k_cache' and 'v_cache': (tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>), got 0 results}}
  paged_attn.append %k, %v, %s, %kc, %vc : tensor<?x8x128xbf16>, tensor<?x8x128xbf16>, tensor<?xi64>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>
  return
}

// -----

// rank-k: k is [T, num_kv_heads, head_dim]
func.func @rank_k(%k: tensor<?x128xbf16>, %v: tensor<?x8x128xbf16>, %s: tensor<?xi64>, %kc: tensor<?x16x8x128xbf16>, %vc: tensor<?x16x8x128xbf16>) {
  // expected-error @+1 {{'paged_attn.append' op 'k' must have rank 3 ([T, num_kv_heads, head_dim]), got 2}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc : tensor<?x128xbf16>, tensor<?x8x128xbf16>, tensor<?xi64>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16> -> tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>
  return
}

// -----

// rank-slots: slot_mapping is [T]
func.func @rank_slots(%k: tensor<?x8x128xbf16>, %v: tensor<?x8x128xbf16>, %s: tensor<?x1xi64>, %kc: tensor<?x16x8x128xbf16>, %vc: tensor<?x16x8x128xbf16>) {
  // expected-error @+1 {{'paged_attn.append' op 'slot_mapping' must have rank 1 ([T]), got 2}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc : tensor<?x8x128xbf16>, tensor<?x8x128xbf16>, tensor<?x1xi64>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16> -> tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>
  return
}

// -----

// rank-cache: caches are 4-D
func.func @rank_cache(%k: tensor<?x8x128xbf16>, %v: tensor<?x8x128xbf16>, %s: tensor<?xi64>, %kc: tensor<?x128xbf16>, %vc: tensor<?x16x8x128xbf16>) {
  // expected-error @+1 {{'paged_attn.append' op 'k_cache' must have rank 4 ([pages, page, num_kv_heads, head_dim] or [pages, num_kv_heads, page, head_dim]), got 2}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc : tensor<?x8x128xbf16>, tensor<?x8x128xbf16>, tensor<?xi64>, tensor<?x128xbf16>, tensor<?x16x8x128xbf16> -> tensor<?x128xbf16>, tensor<?x16x8x128xbf16>
  return
}

// -----

// k-type: k is floating point
func.func @k_type(%k: tensor<?x8x128xi32>, %v: tensor<?x8x128xi32>, %s: tensor<?xi64>, %kc: tensor<?x16x8x128xbf16>, %vc: tensor<?x16x8x128xbf16>) {
  // expected-error @+1 {{'paged_attn.append' op 'k' element type must be f16, bf16 or f32, got 'i32'}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc : tensor<?x8x128xi32>, tensor<?x8x128xi32>, tensor<?xi64>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16> -> tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>
  return
}

// -----

// v-type: v has the type of k
func.func @v_type(%k: tensor<?x8x128xbf16>, %v: tensor<?x8x128xf16>, %s: tensor<?xi64>, %kc: tensor<?x16x8x128xbf16>, %vc: tensor<?x16x8x128xbf16>) {
  // expected-error @+1 {{'paged_attn.append' op 'v' element type ('f16') must equal that of 'k' ('bf16')}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc : tensor<?x8x128xbf16>, tensor<?x8x128xf16>, tensor<?xi64>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16> -> tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>
  return
}

// -----

// slots-type: slot_mapping is i64
func.func @slots_type(%k: tensor<?x8x128xbf16>, %v: tensor<?x8x128xbf16>, %s: tensor<?xi32>, %kc: tensor<?x16x8x128xbf16>, %vc: tensor<?x16x8x128xbf16>) {
  // expected-error @+1 {{'paged_attn.append' op 'slot_mapping' element type must be i64, got 'i32'}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc : tensor<?x8x128xbf16>, tensor<?x8x128xbf16>, tensor<?xi32>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16> -> tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>
  return
}

// -----

// cache-type: the cache has k's type or fp8
func.func @cache_type(%k: tensor<?x8x128xbf16>, %v: tensor<?x8x128xbf16>, %s: tensor<?xi64>, %kc: tensor<?x16x8x128xf16>, %vc: tensor<?x16x8x128xf16>) {
  // expected-error @+1 {{'paged_attn.append' op 'k_cache' element type ('f16') must equal the element type of 'k' ('bf16') or be f8E4M3FN or f8E5M2}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc : tensor<?x8x128xbf16>, tensor<?x8x128xbf16>, tensor<?xi64>, tensor<?x16x8x128xf16>, tensor<?x16x8x128xf16> -> tensor<?x16x8x128xf16>, tensor<?x16x8x128xf16>
  return
}

// -----

// v-cache-type: v_cache has k_cache's type
func.func @v_cache_type(%k: tensor<?x8x128xbf16>, %v: tensor<?x8x128xbf16>, %s: tensor<?xi64>, %kc: tensor<?x16x8x128xbf16>, %vc: tensor<?x16x8x128xf16>) {
  // expected-error @+1 {{'paged_attn.append' op 'v_cache' element type ('f16') must equal that of 'k_cache' ('bf16')}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc : tensor<?x8x128xbf16>, tensor<?x8x128xbf16>, tensor<?xi64>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xf16> -> tensor<?x16x8x128xbf16>, tensor<?x16x8x128xf16>
  return
}

// -----

// dynamic-heads: num_kv_heads and head_dim are static
func.func @dynamic_heads(%k: tensor<?x?x128xbf16>, %v: tensor<?x?x128xbf16>, %s: tensor<?xi64>, %kc: tensor<?x16x8x128xbf16>, %vc: tensor<?x16x8x128xbf16>) {
  // expected-error @+1 {{'paged_attn.append' op num_kv_heads and head_dim ('k' dims 1 and 2) must be static, got [?, ?, 128]}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc : tensor<?x?x128xbf16>, tensor<?x?x128xbf16>, tensor<?xi64>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16> -> tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>
  return
}

// -----

// kv-shapes: k and v have one shape
func.func @kv_shapes(%k: tensor<?x8x128xbf16>, %v: tensor<?x4x128xbf16>, %s: tensor<?xi64>, %kc: tensor<?x16x8x128xbf16>, %vc: tensor<?x16x8x128xbf16>) {
  // expected-error @+1 {{'paged_attn.append' op 'k' and 'v' must have the same shape, got [?, 8, 128] and [?, 4, 128]}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc : tensor<?x8x128xbf16>, tensor<?x4x128xbf16>, tensor<?xi64>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16> -> tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>
  return
}

// -----

// tokens: T agrees across k, v and slot_mapping
func.func @tokens(%k: tensor<4x8x128xbf16>, %v: tensor<4x8x128xbf16>, %s: tensor<3xi64>, %kc: tensor<?x16x8x128xbf16>, %vc: tensor<?x16x8x128xbf16>) {
  // expected-error @+1 {{'paged_attn.append' op the number of new tokens (T) disagrees: 'k' is [4, 8, 128], 'v' [4, 8, 128] and 'slot_mapping' [3]}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc : tensor<4x8x128xbf16>, tensor<4x8x128xbf16>, tensor<3xi64>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16> -> tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>
  return
}

// -----

// dynamic-cache: cache dims 1 to 3 are static
func.func @dynamic_cache(%k: tensor<?x8x128xbf16>, %v: tensor<?x8x128xbf16>, %s: tensor<?xi64>, %kc: tensor<?x?x8x128xbf16>, %vc: tensor<?x?x8x128xbf16>) {
  // expected-error @+1 {{'paged_attn.append' op 'k_cache' dims 1, 2 and 3 (page, num_kv_heads and head_dim in some order) must be static, got [?, ?, 8, 128]}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc : tensor<?x8x128xbf16>, tensor<?x8x128xbf16>, tensor<?xi64>, tensor<?x?x8x128xbf16>, tensor<?x?x8x128xbf16> -> tensor<?x?x8x128xbf16>, tensor<?x?x8x128xbf16>
  return
}

// -----

// cache-shapes: k_cache and v_cache have one shape
func.func @cache_shapes(%k: tensor<?x8x128xbf16>, %v: tensor<?x8x128xbf16>, %s: tensor<?xi64>, %kc: tensor<?x16x8x128xbf16>, %vc: tensor<?x32x8x128xbf16>) {
  // expected-error @+1 {{'paged_attn.append' op 'k_cache' and 'v_cache' must have the same shape, got [?, 16, 8, 128] and [?, 32, 8, 128]}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc : tensor<?x8x128xbf16>, tensor<?x8x128xbf16>, tensor<?xi64>, tensor<?x16x8x128xbf16>, tensor<?x32x8x128xbf16> -> tensor<?x16x8x128xbf16>, tensor<?x32x8x128xbf16>
  return
}

// -----

// cache-rows: the cache holds rows of k under the layout
func.func @cache_rows(%k: tensor<?x8x128xbf16>, %v: tensor<?x8x128xbf16>, %s: tensor<?xi64>, %kc: tensor<?x16x8x128xbf16>, %vc: tensor<?x16x8x128xbf16>) {
  // expected-error @+1 {{'paged_attn.append' op 'k_cache' [?, 16, 8, 128] must hold rows of 'k' (num_kv_heads 8 as dim 1 under layout hnd, head_dim 128 as dim 3)}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc {layout = #paged_attn.kv_layout<hnd>} : tensor<?x8x128xbf16>, tensor<?x8x128xbf16>, tensor<?xi64>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16> -> tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>
  return
}

// -----

// row-bytes: rows of 16 bytes
func.func @row_bytes(%k: tensor<?x8x4xbf16>, %v: tensor<?x8x4xbf16>, %s: tensor<?xi64>, %kc: tensor<?x16x8x4xbf16>, %vc: tensor<?x16x8x4xbf16>) {
  // expected-error @+1 {{'paged_attn.append' op a row of head_dim (4) 'bf16' elements is 8 bytes; it must be a multiple of 16 bytes}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc : tensor<?x8x4xbf16>, tensor<?x8x4xbf16>, tensor<?xi64>, tensor<?x16x8x4xbf16>, tensor<?x16x8x4xbf16> -> tensor<?x16x8x4xbf16>, tensor<?x16x8x4xbf16>
  return
}

// -----

// head-dim: head_dim at most 256
func.func @head_dim(%k: tensor<?x8x512xbf16>, %v: tensor<?x8x512xbf16>, %s: tensor<?xi64>, %kc: tensor<?x16x8x512xbf16>, %vc: tensor<?x16x8x512xbf16>) {
  // expected-error @+1 {{'paged_attn.append' op head_dim (512) must be at most 256}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc : tensor<?x8x512xbf16>, tensor<?x8x512xbf16>, tensor<?xi64>, tensor<?x16x8x512xbf16>, tensor<?x16x8x512xbf16> -> tensor<?x16x8x512xbf16>, tensor<?x16x8x512xbf16>
  return
}

// -----

// fp8-f32: fp8 caches need 16-bit k and v
func.func @fp8_f32(%k: tensor<?x8x128xf32>, %v: tensor<?x8x128xf32>, %s: tensor<?xi64>, %kc: tensor<?x16x8x128xf8E4M3FN>, %vc: tensor<?x16x8x128xf8E4M3FN>, %ks: tensor<f32>, %vs: tensor<f32>) {
  // expected-error @+1 {{'paged_attn.append' op fp8 KV caches need f16 or bf16 'k' and 'v', got f32}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc k_scale(%ks : tensor<f32>) v_scale(%vs : tensor<f32>) : tensor<?x8x128xf32>, tensor<?x8x128xf32>, tensor<?xi64>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN> -> tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN>
  return
}

// -----

// fp8-no-scales: fp8 caches need both scales
func.func @fp8_no_scales(%k: tensor<?x8x128xbf16>, %v: tensor<?x8x128xbf16>, %s: tensor<?xi64>, %kc: tensor<?x16x8x128xf8E4M3FN>, %vc: tensor<?x16x8x128xf8E4M3FN>, %ks: tensor<f32>) {
  // expected-error @+1 {{'paged_attn.append' op fp8 caches need both 'k_scale' and 'v_scale' (f32: [] per tensor, [num_kv_heads] per KV head, or the cache's shape without head_dim per token), got only 'k_scale'}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc k_scale(%ks : tensor<f32>) : tensor<?x8x128xbf16>, tensor<?x8x128xbf16>, tensor<?xi64>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN> -> tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN>
  return
}

// -----

// scales-unquantised: scales belong to fp8 caches
func.func @scales_unquantised(%k: tensor<?x8x128xbf16>, %v: tensor<?x8x128xbf16>, %s: tensor<?xi64>, %kc: tensor<?x16x8x128xbf16>, %vc: tensor<?x16x8x128xbf16>, %ks: tensor<f32>, %vs: tensor<f32>) {
  // expected-error @+1 {{'paged_attn.append' op 'k_scale' and 'v_scale' are the scales of fp8 caches; 'k_cache' is 'bf16'}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc k_scale(%ks : tensor<f32>) v_scale(%vs : tensor<f32>) : tensor<?x8x128xbf16>, tensor<?x8x128xbf16>, tensor<?xi64>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16> -> tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>
  return
}

// -----

// scale-rank: scales of rank 0, 1 or 3
func.func @scale_rank(%k: tensor<?x8x128xbf16>, %v: tensor<?x8x128xbf16>, %s: tensor<?xi64>, %kc: tensor<?x16x8x128xf8E4M3FN>, %vc: tensor<?x16x8x128xf8E4M3FN>, %ks: tensor<8x1xf32>, %vs: tensor<8x1xf32>) {
  // expected-error @+1 {{'paged_attn.append' op 'k_scale' must have rank 0 (per tensor), 1 ([num_kv_heads], per KV head) or 3 ([num_pages, page_size, num_kv_heads], per token), got 2}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc k_scale(%ks : tensor<8x1xf32>) v_scale(%vs : tensor<8x1xf32>) : tensor<?x8x128xbf16>, tensor<?x8x128xbf16>, tensor<?xi64>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN> -> tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN>
  return
}

// -----

// token-scale-shape: per-token scales have the cache shape without head_dim
func.func @token_scale_shape(%k: tensor<?x8x128xbf16>, %v: tensor<?x8x128xbf16>, %s: tensor<?xi64>, %kc: tensor<?x16x8x128xf8E4M3FN>, %vc: tensor<?x16x8x128xf8E4M3FN>, %ks: tensor<?x8x16xf32>, %vs: tensor<?x8x16xf32>) {
  // expected-error @+1 {{'paged_attn.append' op 'k_scale' must have shape of the cache's first three dims (per token) [?, 16, 8], got [?, 8, 16]}}
  %r:4 = paged_attn.append %k, %v, %s, %kc, %vc k_scale(%ks : tensor<?x8x16xf32>) v_scale(%vs : tensor<?x8x16xf32>) : tensor<?x8x128xbf16>, tensor<?x8x128xbf16>, tensor<?xi64>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN> -> tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x8x16xf32>, tensor<?x8x16xf32>
  return
}

// -----

// token-results: per-token scales are returned
func.func @token_results(%k: tensor<?x8x128xbf16>, %v: tensor<?x8x128xbf16>, %s: tensor<?xi64>, %kc: tensor<?x16x8x128xf8E4M3FN>, %vc: tensor<?x16x8x128xf8E4M3FN>, %ks: tensor<?x16x8xf32>, %vs: tensor<?x16x8xf32>) {
  // expected-error @+1 {{'paged_attn.append' op the tensor form must return the updated 'k_cache', 'v_cache', 'k_scale' and 'v_scale' (per-token scales are written): (tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8xf32>, tensor<?x16x8xf32>), got 2 results}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc k_scale(%ks : tensor<?x16x8xf32>) v_scale(%vs : tensor<?x16x8xf32>) : tensor<?x8x128xbf16>, tensor<?x8x128xbf16>, tensor<?xi64>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN> -> tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN>
  return
}

// -----

// attribute: only layout
func.func @attribute(%k: tensor<?x8x128xbf16>, %v: tensor<?x8x128xbf16>, %s: tensor<?xi64>, %kc: tensor<?x16x8x128xbf16>, %vc: tensor<?x16x8x128xbf16>) {
  // expected-error @+1 {{'paged_attn.append' op has no attribute 'scale' (its one attribute is 'layout')}}
  %r:2 = paged_attn.append %k, %v, %s, %kc, %vc {scale = 1.0 : f32} : tensor<?x8x128xbf16>, tensor<?x8x128xbf16>, tensor<?xi64>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16> -> tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>
  return
}

// -----

// memref-stride: rows of k have unit stride
func.func @memref_stride(%k: memref<?x8x128xbf16, strided<[?, ?, 2]>>, %v: memref<?x8x128xbf16>, %s: memref<?xi64>, %kc: memref<?x16x8x128xbf16>, %vc: memref<?x16x8x128xbf16>) {
  // expected-error @+1 {{'paged_attn.append' op 'k' must have unit stride in its innermost dimension, got 2}}
  paged_attn.append %k, %v, %s, %kc, %vc : memref<?x8x128xbf16, strided<[?, ?, 2]>>, memref<?x8x128xbf16>, memref<?xi64>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>
  return
}
