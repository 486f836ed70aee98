// RUN: paged-attn-opt %s -split-input-file -verify-diagnostics

// One case per verifier rule of paged_attn.decode, each with its exact
// message.

// mixed-tensors-and-memrefs
func.func @mixed(%q: tensor<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'q', 'k_cache', 'v_cache', 'block_table' and 'seq_lens' must be all tensors or all memrefs}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : tensor<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// tensor-form-with-outs
func.func @tensor_outs(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{the tensor form takes no 'outs' operand; it returns its result}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32>
  return
}

// -----

// tensor-form-without-result
func.func @tensor_no_result(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) {
  // expected-error @+1 {{the tensor form must return a result}}
  paged_attn.decode %q, %k, %v, %bt, %sl : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32>
  return
}

// -----

// memref-form-with-result
func.func @memref_result(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{the memref form has no result; it writes 'outs'}}
  %r = paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32> -> tensor<?x32x128xbf16>
  return %r : tensor<?x32x128xbf16>
}

// -----

// memref-form-without-outs
func.func @memref_no_outs(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>) {
  // expected-error @+1 {{the memref form needs an 'outs' operand}}
  paged_attn.decode %q, %k, %v, %bt, %sl : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// q-rank
func.func @q_rank(%q: memref<?x4096xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'q' must have rank 3 ([batch, num_heads, head_dim]) or 4 ([batch, L, num_heads, head_dim]), got 2}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : memref<?x4096xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// cache-rank
func.func @cache_rank(%q: memref<?x32x128xbf16>, %k: memref<?x8x128xbf16>, %v: memref<?x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'k_cache' must have rank 4 ([pages, page, num_kv_heads, head_dim] or [pages, num_kv_heads, page, head_dim]), got 3}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x8x128xbf16>, memref<?x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// v-cache-rank
func.func @v_cache_rank(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'v_cache' must have rank 4 (the rank of 'k_cache'), got 3}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// block-table-rank
func.func @block_table_rank(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'block_table' must have rank 2 ([batch, max_pages]), got 1}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?xi32>, memref<?xi32>
  return
}

// -----

// seq-lens-rank
func.func @seq_lens_rank(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?x1xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'seq_lens' must have rank 1 ([batch]), got 2}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?x1xi32>
  return
}

// -----

// out-rank
func.func @out_rank(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x4096xbf16>) {
  // expected-error @+1 {{'out' must have the rank of 'q' (3), got 2}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x4096xbf16>) : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// q-element-type
func.func @q_element_type(%q: memref<?x32x128xi8>, %k: memref<?x16x8x128xi8>, %v: memref<?x16x8x128xi8>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xi8>) {
  // expected-error @+1 {{'q' element type must be f16, bf16 or f32, got 'i8'}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xi8>) : memref<?x32x128xi8>, memref<?x16x8x128xi8>, memref<?x16x8x128xi8>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// cache-element-type
func.func @cache_element_type(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xf16>, %v: memref<?x16x8x128xf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'k_cache' element type ('f16') must equal the element type of 'q' ('bf16') or be f8E4M3FN or f8E5M2}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x16x8x128xf16>, memref<?x16x8x128xf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// result-element-type
func.func @result_element_type(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x32x128xf32> {
  // expected-error @+1 {{'result' element type ('f32') must equal the element type of 'q' ('bf16')}}
  %r = paged_attn.decode %q, %k, %v, %bt, %sl : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xf32>
  return %r : tensor<?x32x128xf32>
}

// -----

// block-table-element-type
func.func @block_table_element_type(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi64>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'block_table' element type must be i32, got 'i64'}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi64>, memref<?xi32>
  return
}

// -----

// seq-lens-element-type
func.func @seq_lens_element_type(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xindex>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'seq_lens' element type must be i32, got 'index'}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xindex>
  return
}

// -----

// dynamic-heads
func.func @dynamic_heads(%q: memref<?x?x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x?x128xbf16>) {
  // expected-error @+1 {{num_heads and head_dim ('q' dims 1 and 2) must be static, got [?, ?, 128]}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x?x128xbf16>) : memref<?x?x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// dynamic-page
func.func @dynamic_page(%q: memref<?x32x128xbf16>, %k: memref<?x?x8x128xbf16>, %v: memref<?x?x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'k_cache' dims 1, 2 and 3 (page, num_kv_heads and head_dim in some order) must be static, got [?, ?, 8, 128]}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x?x8x128xbf16>, memref<?x?x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// k-v-shapes
func.func @k_v_shapes(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x32x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'k_cache' and 'v_cache' must have the same shape, got [?, 16, 8, 128] and [?, 32, 8, 128]}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x32x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// zero-page
func.func @zero_page(%q: memref<?x32x128xbf16>, %k: memref<?x0x8x128xbf16>, %v: memref<?x0x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{page_size must be at least 1, got 0}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x0x8x128xbf16>, memref<?x0x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// zero-kv-heads
func.func @zero_kv_heads(%q: memref<?x32x128xbf16>, %k: memref<?x16x0x128xbf16>, %v: memref<?x16x0x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{num_kv_heads must be at least 1, got 0}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x16x0x128xbf16>, memref<?x16x0x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// head-dim-mismatch
func.func @head_dim_mismatch(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x64xbf16>, %v: memref<?x16x8x64xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'k_cache' head_dim (64) must equal the head_dim of 'q' (128)}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x16x8x64xbf16>, memref<?x16x8x64xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// layout-mismatch
func.func @layout_mismatch(%q: memref<?x32x128xbf16>, %k: memref<?x64x8x128xbf16>, %v: memref<?x64x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{with layout hnd, num_kv_heads is 'k_cache' dim 1: got 64, more than num_heads (32); does the cache use layout nhd?}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) {layout = #paged_attn.kv_layout<hnd>} : memref<?x32x128xbf16>, memref<?x64x8x128xbf16>, memref<?x64x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// gqa-ratio
func.func @gqa_ratio(%q: memref<?x30x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x30x128xbf16>) {
  // expected-error @+1 {{num_heads (30) must be a multiple of num_kv_heads (8)}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x30x128xbf16>) : memref<?x30x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// head-dim-bound
func.func @head_dim_bound(%q: memref<?x32x264xbf16>, %k: memref<?x16x8x264xbf16>, %v: memref<?x16x8x264xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x264xbf16>) {
  // expected-error @+1 {{head_dim (264) must be at most 256}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x264xbf16>) : memref<?x32x264xbf16>, memref<?x16x8x264xbf16>, memref<?x16x8x264xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// row-bytes
func.func @row_bytes(%q: memref<?x32x36xbf16>, %k: memref<?x16x8x36xbf16>, %v: memref<?x16x8x36xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x36xbf16>) {
  // expected-error @+1 {{a row of head_dim (36) 'bf16' elements is 72 bytes; it must be a multiple of 16 bytes}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x36xbf16>) : memref<?x32x36xbf16>, memref<?x16x8x36xbf16>, memref<?x16x8x36xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// batch-mismatch
func.func @batch_mismatch(%q: memref<4x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<3x?xi32>, %sl: memref<?xi32>, %o: memref<4x32x128xbf16>) {
  // expected-error @+1 {{batch sizes disagree: 'q' has 4, 'block_table' has 3}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<4x32x128xbf16>) : memref<4x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<3x?xi32>, memref<?xi32>
  return
}

// -----

// out-shape
func.func @out_shape(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x64xbf16>) {
  // expected-error @+1 {{'out' shape [?, 32, 64] must equal the shape of 'q' [?, 32, 128]}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x64xbf16>) : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// result-shape
func.func @result_shape(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x16x128xbf16> {
  // expected-error @+1 {{'result' shape [?, 16, 128] must equal the shape of 'q' [?, 32, 128]}}
  %r = paged_attn.decode %q, %k, %v, %bt, %sl : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x16x128xbf16>
  return %r : tensor<?x16x128xbf16>
}

// -----

// negative-scale
func.func @negative_scale(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{scale must be finite and positive, got -1}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) {scale = -1.0 : f32} : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// zero-scale
func.func @zero_scale(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{scale must be finite and positive, got 0}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) {scale = 0.0 : f32} : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// innermost-stride
func.func @innermost_stride(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16, strided<[?, ?, ?, 2]>>, %v: memref<?x16x8x128xbf16, strided<[?, ?, ?, 2]>>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'k_cache' must have unit stride in its innermost dimension, got 2}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x16x8x128xbf16, strided<[?, ?, ?, 2]>>, memref<?x16x8x128xbf16, strided<[?, ?, ?, 2]>>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// dynamic-innermost-stride
func.func @dynamic_innermost_stride(%q: memref<?x32x128xbf16, strided<[?, ?, ?], offset: ?>>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'q' must have unit stride in its innermost dimension, got ?}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16, strided<[?, ?, ?], offset: ?>>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// row-stride-alignment
func.func @row_stride_alignment(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16, strided<[16388, 1024, 128, 1]>>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'v_cache' stride of dim 0 is 16388 elements (32776 bytes); it must be a multiple of 16 bytes}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16, strided<[16388, 1024, 128, 1]>>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// offset-alignment
func.func @offset_alignment(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16, strided<[4096, 128, 1], offset: 3>>) {
  // expected-error @+1 {{'out' offset is 3 elements (6 bytes); it must be a multiple of 16 bytes}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16, strided<[4096, 128, 1], offset: 3>>) : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// non-strided-layout
func.func @non_strided_layout(%q: memref<4x32x128xbf16, affine_map<(d0, d1, d2) -> (d0 floordiv 2, d1, d2)>>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<4x32x128xbf16>) {
  // expected-error @+1 {{'q' must have a strided layout, got 'memref<4x32x128xbf16, affine_map<(d0, d1, d2) -> (d0 floordiv 2, d1, d2)>>'}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<4x32x128xbf16>) : memref<4x32x128xbf16, affine_map<(d0, d1, d2) -> (d0 floordiv 2, d1, d2)>>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// num-heads-bound
func.func @num_heads_bound(%q: memref<?x8192x64xbf16>, %k: memref<?x16x8x64xbf16>, %v: memref<?x16x8x64xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x8192x64xbf16>) {
  // expected-error @+1 {{num_heads (8192) must be at most 4096}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x8192x64xbf16>) : memref<?x8192x64xbf16>, memref<?x16x8x64xbf16>, memref<?x16x8x64xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// page-size-bound
func.func @page_size_bound(%q: memref<?x32x64xbf16>, %k: memref<?x131072x8x64xbf16>, %v: memref<?x131072x8x64xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x64xbf16>) {
  // expected-error @+1 {{page_size (131072) must be at most 65536}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x64xbf16>) : memref<?x32x64xbf16>, memref<?x131072x8x64xbf16>, memref<?x131072x8x64xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// huge-head-dim: checked before a row's bytes, which would overflow
func.func @huge_head_dim(%q: memref<?x1x4611686018427387904xf32>, %k: memref<?x16x1x4611686018427387904xf32>, %v: memref<?x16x1x4611686018427387904xf32>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x1x4611686018427387904xf32>) {
  // expected-error @+1 {{head_dim (4611686018427387904) must be at most 256}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x1x4611686018427387904xf32>) : memref<?x1x4611686018427387904xf32>, memref<?x16x1x4611686018427387904xf32>, memref<?x16x1x4611686018427387904xf32>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// memory-space
func.func @memory_space(%q: memref<?x32x128xbf16, 3>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'q' must be in the default memory space, got 3}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16, 3>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// block-table-layout
func.func @block_table_layout(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32, affine_map<(d0, d1) -> (d0 floordiv 2, d1)>>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'block_table' must have a strided layout}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32, affine_map<(d0, d1) -> (d0 floordiv 2, d1)>>, memref<?xi32>
  return
}

// -----

// stride-bytes-overflow: the message says so instead of printing a wrapped number
func.func @stride_overflow(%q: memref<?x1x16xf32>, %k: memref<?x16x1x16xf32, strided<[4611686018427387905, 16, 16, 1]>>, %v: memref<?x16x1x16xf32>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x1x16xf32>) {
  // expected-error @+1 {{'k_cache' stride of dim 0 is 4611686018427387905 elements (more than 2^63 bytes); it must be a multiple of 16 bytes}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x1x16xf32>) : memref<?x1x16xf32>, memref<?x16x1x16xf32, strided<[4611686018427387905, 16, 16, 1]>>, memref<?x16x1x16xf32>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// unknown-attribute: a misspelt attribute is an error, not ignored
func.func @unknown_attribute(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{has no attribute 'scal' (its attributes are 'layout', 'scale', 'window' and 'soft_cap')}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl {scal = 0.5 : f32} : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// window-zero: a window sees at least one key
func.func @window_zero(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{window must be at least 1, got 0}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl {window = 0 : i64} : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// window-negative: 
func.func @window_negative(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{window must be at least 1, got -4096}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl {window = -4096 : i64} : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// soft-cap-zero: 
func.func @soft_cap_zero(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{soft_cap must be finite and positive, got 0}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl {soft_cap = 0.0 : f32} : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// soft-cap-negative: 
func.func @soft_cap_negative(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{soft_cap must be finite and positive, got -3.000000e+01}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl {soft_cap = -30.0 : f32} : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// soft-cap-nan: 
func.func @soft_cap_nan(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{soft_cap must be finite and positive, got nan}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl {soft_cap = 0x7FC00000 : f32} : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// soft-cap-inf: 
func.func @soft_cap_inf(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{soft_cap must be finite and positive, got INF}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl {soft_cap = 0x7F800000 : f32} : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// window-type: the window is an i64
func.func @window_type(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{attribute 'window' failed to satisfy constraint: 64-bit signless integer attribute}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl {window = 4.0 : f32} : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// alibi-shape: one slope per query head
func.func @alibi_shape(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>, %a: tensor<8xf32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{'alibi_slopes' must have shape [num_heads] [32], got [8]}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl alibi_slopes(%a : tensor<8xf32>) : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// alibi-rank: 
func.func @alibi_rank(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>, %a: tensor<1x32xf32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{'alibi_slopes' must have shape [num_heads] [32], got [1, 32]}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl alibi_slopes(%a : tensor<1x32xf32>) : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// alibi-type: slopes are f32
func.func @alibi_type(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>, %a: tensor<32xbf16>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{'alibi_slopes' element type must be f32, got 'bf16'}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl alibi_slopes(%a : tensor<32xbf16>) : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// sinks-shape: one sink per query head
func.func @sinks_shape(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>, %s: tensor<16xf32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{'sinks' must have shape [num_heads] [32], got [16]}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl sinks(%s : tensor<16xf32>) : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// sinks-type: sinks are f32
func.func @sinks_type(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>, %s: tensor<32xf16>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{'sinks' element type must be f32, got 'f16'}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl sinks(%s : tensor<32xf16>) : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// sinks-form: a memref among tensors
func.func @sinks_form(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>, %s: memref<32xf32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{'sinks' must be a tensor as 'q' is}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl sinks(%s : memref<32xf32>) : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// lse-type: the log-sum-exp is f32
func.func @lse_type(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{'lse' element type must be f32, got 'bf16'}}
  %o, %l = paged_attn.decode %q, %k, %v, %bt, %sl : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>, tensor<?x32xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// lse-shape: [batch, num_heads]
func.func @lse_shape(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{'lse' must have shape [batch, num_heads] [?, 32], got [?, 16]}}
  %o, %l = paged_attn.decode %q, %k, %v, %bt, %sl : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>, tensor<?x16xf32>
  return %o : tensor<?x32x128xbf16>
}

// -----

// lse-rank: 
func.func @lse_rank(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{'lse' must have shape [batch, num_heads] [?, 32], got [?, 32, 1]}}
  %o, %l = paged_attn.decode %q, %k, %v, %bt, %sl : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>, tensor<?x32x1xf32>
  return %o : tensor<?x32x128xbf16>
}

// -----

// lse-out-type: 
func.func @lse_out_type(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>, %l: memref<?x32xf16>) {
  // expected-error @+1 {{'lse' element type must be f32, got 'f16'}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) lse(%l : memref<?x32xf16>) : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// lse-out-space: 
func.func @lse_out_space(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>, %l: memref<?x32xf32, 3>) {
  // expected-error @+1 {{'lse' must be in the default memory space, got 3}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) lse(%l : memref<?x32xf32, 3>) : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// alibi-memref-layout: 
func.func @alibi_memref_layout(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>, %a: memref<32xf32, affine_map<(d0) -> (d0 floordiv 2)>>) {
  // expected-error @+1 {{'alibi_slopes' must have a strided layout}}
  paged_attn.decode %q, %k, %v, %bt, %sl alibi_slopes(%a : memref<32xf32, affine_map<(d0) -> (d0 floordiv 2)>>) outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// merge-rank: [N, batch, num_heads, head_dim]
func.func @merge_rank(%p: memref<?x32x128xbf16>, %l: memref<2x?x32xf32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'partial_out' must have rank 4 ([N, batch, num_heads, head_dim]), got 3}}
  paged_attn.merge %p, %l outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<2x?x32xf32>
  return
}

// -----

// merge-dtype: 
func.func @merge_dtype(%p: memref<2x?x32x128xi32>, %l: memref<2x?x32xf32>, %o: memref<?x32x128xi32>) {
  // expected-error @+1 {{'partial_out' element type must be f16, bf16 or f32, got 'i32'}}
  paged_attn.merge %p, %l outs(%o : memref<?x32x128xi32>) : memref<2x?x32x128xi32>, memref<2x?x32xf32>
  return
}

// -----

// merge-static-heads: 
func.func @merge_static_heads(%p: memref<2x?x?x128xbf16>, %l: memref<2x?x32xf32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{num_heads and head_dim ('partial_out' dims 2 and 3) must be static, got [2, ?, ?, 128]}}
  paged_attn.merge %p, %l outs(%o : memref<?x32x128xbf16>) : memref<2x?x?x128xbf16>, memref<2x?x32xf32>
  return
}

// -----

// merge-row-bytes: 16-byte rows
func.func @merge_row_bytes(%p: memref<2x?x32x36xbf16>, %l: memref<2x?x32xf32>, %o: memref<?x32x36xbf16>) {
  // expected-error @+1 {{a row of head_dim (36) 'bf16' elements is 72 bytes; it must be a multiple of 16 bytes}}
  paged_attn.merge %p, %l outs(%o : memref<?x32x36xbf16>) : memref<2x?x32x36xbf16>, memref<2x?x32xf32>
  return
}

// -----

// merge-head-dim-bound: 
func.func @merge_head_dim_bound(%p: memref<2x?x32x264xbf16>, %l: memref<2x?x32xf32>, %o: memref<?x32x264xbf16>) {
  // expected-error @+1 {{head_dim (264) must be at most 256}}
  paged_attn.merge %p, %l outs(%o : memref<?x32x264xbf16>) : memref<2x?x32x264xbf16>, memref<2x?x32xf32>
  return
}

// -----

// merge-lse-shape: partial_lse agrees with partial_out
func.func @merge_lse_shape(%p: memref<2x?x32x128xbf16>, %l: memref<3x?x32xf32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'partial_lse' must have shape [N, batch, num_heads] [2, ?, 32], got [3, ?, 32]}}
  paged_attn.merge %p, %l outs(%o : memref<?x32x128xbf16>) : memref<2x?x32x128xbf16>, memref<3x?x32xf32>
  return
}

// -----

// merge-lse-type: 
func.func @merge_lse_type(%p: memref<2x?x32x128xbf16>, %l: memref<2x?x32xbf16>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'partial_lse' element type must be f32, got 'bf16'}}
  paged_attn.merge %p, %l outs(%o : memref<?x32x128xbf16>) : memref<2x?x32x128xbf16>, memref<2x?x32xbf16>
  return
}

// -----

// merge-out-shape: 
func.func @merge_out_shape(%p: memref<2x?x32x128xbf16>, %l: memref<2x?x32xf32>, %o: memref<?x32x64xbf16>) {
  // expected-error @+1 {{'out' must be [batch, num_heads, head_dim] [?, 32, 128] of 'bf16', got 'memref<?x32x64xbf16>'}}
  paged_attn.merge %p, %l outs(%o : memref<?x32x64xbf16>) : memref<2x?x32x128xbf16>, memref<2x?x32xf32>
  return
}

// -----

// merge-out-dtype: 
func.func @merge_out_dtype(%p: memref<2x?x32x128xbf16>, %l: memref<2x?x32xf32>, %o: memref<?x32x128xf16>) {
  // expected-error @+1 {{'out' must be [batch, num_heads, head_dim] [?, 32, 128] of 'bf16', got 'memref<?x32x128xf16>'}}
  paged_attn.merge %p, %l outs(%o : memref<?x32x128xf16>) : memref<2x?x32x128xbf16>, memref<2x?x32xf32>
  return
}

// -----

// merge-sinks-shape: 
func.func @merge_sinks_shape(%p: memref<2x?x32x128xbf16>, %l: memref<2x?x32xf32>, %o: memref<?x32x128xbf16>, %s: memref<16xf32>) {
  // expected-error @+1 {{'sinks' must have shape [num_heads] [32], got [16]}}
  paged_attn.merge %p, %l sinks(%s : memref<16xf32>) outs(%o : memref<?x32x128xbf16>) : memref<2x?x32x128xbf16>, memref<2x?x32xf32>
  return
}

// -----

// merge-lse-out-shape: 
func.func @merge_lse_out_shape(%p: memref<2x?x32x128xbf16>, %l: memref<2x?x32xf32>, %o: memref<?x32x128xbf16>, %lo: memref<?x16xf32>) {
  // expected-error @+1 {{'lse' must have shape [batch, num_heads] [?, 32], got [?, 16]}}
  paged_attn.merge %p, %l outs(%o : memref<?x32x128xbf16>) lse(%lo : memref<?x16xf32>) : memref<2x?x32x128xbf16>, memref<2x?x32xf32>
  return
}

// -----

// merge-form: 
func.func @merge_form(%p: memref<2x?x32x128xbf16>, %l: tensor<2x?x32xf32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'partial_lse' must be a memref as 'partial_out' is}}
  paged_attn.merge %p, %l outs(%o : memref<?x32x128xbf16>) : memref<2x?x32x128xbf16>, tensor<2x?x32xf32>
  return
}

// -----

// merge-no-outs: the memref form writes outs
func.func @merge_no_outs(%p: memref<2x?x32x128xbf16>, %l: memref<2x?x32xf32>) {
  // expected-error @+1 {{the memref form needs an 'outs' operand}}
  paged_attn.merge %p, %l : memref<2x?x32x128xbf16>, memref<2x?x32xf32>
  return
}

// -----

// merge-stride: rows are loaded as vectors
func.func @merge_stride(%p: memref<2x?x32x128xbf16, strided<[?, ?, ?, 2]>>, %l: memref<2x?x32xf32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'partial_out' must have unit stride in its innermost dimension, got 2}}
  paged_attn.merge %p, %l outs(%o : memref<?x32x128xbf16>) : memref<2x?x32x128xbf16, strided<[?, ?, ?, 2]>>, memref<2x?x32xf32>
  return
}

// -----

// query-len: at most 16 new tokens
func.func @query_len(%q: memref<?x17x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x17x32x128xbf16>) {
  // expected-error @+1 {{query_len (17) must be at most 16}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x17x32x128xbf16>) : memref<?x17x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// query-len-dynamic: L is static
func.func @query_len_dynamic(%q: memref<?x?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x?x32x128xbf16>) {
  // expected-error @+1 {{L, num_heads and head_dim ('q' dims 1, 2 and 3) must be static, got [?, ?, 32, 128]}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x?x32x128xbf16>) : memref<?x?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// multi-token-out: out has q's shape
func.func @multi_token_out(%q: memref<?x4x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x2x32x128xbf16>) {
  // expected-error @+1 {{'out' shape [?, 2, 32, 128] must equal the shape of 'q' [?, 4, 32, 128]}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x2x32x128xbf16>) : memref<?x4x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// multi-token-lse: [batch, L, num_heads]
func.func @multi_token_lse(%q: memref<?x4x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x4x32x128xbf16>, %l: memref<?x32xf32>) {
  // expected-error @+1 {{'lse' must have shape [batch, L, num_heads] [?, 4, 32], got [?, 32]}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x4x32x128xbf16>) lse(%l : memref<?x32xf32>) : memref<?x4x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// tree-mask-single-token: a tree mask needs new tokens
func.func @tree_mask_single(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %m: memref<?x1x1xi8>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'tree_mask' needs a multi-token 'q' of rank 4 ([batch, L, num_heads, head_dim])}}
  paged_attn.decode %q, %k, %v, %bt, %sl tree_mask(%m : memref<?x1x1xi8>) outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// tree-mask-type: i1 or i8
func.func @tree_mask_type(%q: memref<?x4x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %m: memref<?x4x4xi32>, %o: memref<?x4x32x128xbf16>) {
  // expected-error @+1 {{'tree_mask' element type must be i1 or i8, got 'i32'}}
  paged_attn.decode %q, %k, %v, %bt, %sl tree_mask(%m : memref<?x4x4xi32>) outs(%o : memref<?x4x32x128xbf16>) : memref<?x4x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// tree-mask-shape: [batch, L, L]
func.func @tree_mask_shape(%q: memref<?x4x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %m: memref<?x4x8xi1>, %o: memref<?x4x32x128xbf16>) {
  // expected-error @+1 {{'tree_mask' must have shape [batch, L, L] [?, 4, 4], got [?, 4, 8]}}
  paged_attn.decode %q, %k, %v, %bt, %sl tree_mask(%m : memref<?x4x8xi1>) outs(%o : memref<?x4x32x128xbf16>) : memref<?x4x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// tree-mask-batch: the mask's batch is q's
func.func @tree_mask_batch(%q: memref<3x4x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %m: memref<2x4x4xi8>, %o: memref<3x4x32x128xbf16>) {
  // expected-error @+1 {{batch sizes disagree: 'q' has 3, 'tree_mask' has 2}}
  paged_attn.decode %q, %k, %v, %bt, %sl tree_mask(%m : memref<2x4x4xi8>) outs(%o : memref<3x4x32x128xbf16>) : memref<3x4x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// tree-mask-form: a memref with memrefs
func.func @tree_mask_form(%q: memref<?x4x32x128xbf16>, %k: memref<?x16x8x128xbf16>, %v: memref<?x16x8x128xbf16>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %m: tensor<?x4x4xi8>, %o: memref<?x4x32x128xbf16>) {
  // expected-error @+1 {{'tree_mask' must be a memref as 'q' is}}
  paged_attn.decode %q, %k, %v, %bt, %sl tree_mask(%m : tensor<?x4x4xi8>) outs(%o : memref<?x4x32x128xbf16>) : memref<?x4x32x128xbf16>, memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// cache-element-type-fp8: an fp8 format other than f8E4M3FN and f8E5M2
func.func @cache_element_type_fp8(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xf8E5M2FNUZ>, %v: memref<?x16x8x128xf8E5M2FNUZ>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'k_cache' element type ('f8E5M2FNUZ') must equal the element type of 'q' ('bf16') or be f8E4M3FN or f8E5M2}}
  paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x16x8x128xf8E5M2FNUZ>, memref<?x16x8x128xf8E5M2FNUZ>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// v-cache-element-type: V in K's format
func.func @v_cache_element_type(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xf8E4M3FN>, %v: tensor<?x16x8x128xf8E5M2>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>, %ks: tensor<f32>, %vs: tensor<f32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{'v_cache' element type ('f8E5M2') must equal that of 'k_cache' ('f8E4M3FN')}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : tensor<f32>) v_scale(%vs : tensor<f32>) : tensor<?x32x128xbf16>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E5M2>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// v-cache-element-type-unquantised: an fp8 K with a V of q's type
func.func @v_cache_element_type_q(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xf8E4M3FN>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>, %ks: tensor<f32>, %vs: tensor<f32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{'v_cache' element type ('bf16') must equal that of 'k_cache' ('f8E4M3FN')}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : tensor<f32>) v_scale(%vs : tensor<f32>) : tensor<?x32x128xbf16>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// fp8-q-f32: fp8 caches are widened to a 16-bit q's type
func.func @fp8_q_f32(%q: tensor<?x32x128xf32>, %k: tensor<?x16x8x128xf8E4M3FN>, %v: tensor<?x16x8x128xf8E4M3FN>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>, %ks: tensor<f32>, %vs: tensor<f32>) -> tensor<?x32x128xf32> {
  // expected-error @+1 {{fp8 KV caches need an f16 or bf16 'q', got f32}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : tensor<f32>) v_scale(%vs : tensor<f32>) : tensor<?x32x128xf32>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xf32>
  return %o : tensor<?x32x128xf32>
}

// -----

// fp8-row-bytes: q's rows are 48 bytes, the caches' 24
func.func @fp8_row_bytes(%q: tensor<?x32x24xbf16>, %k: tensor<?x16x8x24xf8E5M2>, %v: tensor<?x16x8x24xf8E5M2>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>, %ks: tensor<f32>, %vs: tensor<f32>) -> tensor<?x32x24xbf16> {
  // expected-error @+1 {{a row of head_dim (24) 'f8e5m2' elements is 24 bytes; it must be a multiple of 16 bytes}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : tensor<f32>) v_scale(%vs : tensor<f32>) : tensor<?x32x24xbf16>, tensor<?x16x8x24xf8E5M2>, tensor<?x16x8x24xf8E5M2>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x24xbf16>
  return %o : tensor<?x32x24xbf16>
}

// -----

// kv-scales-missing: fp8 caches need their scales
func.func @kv_scales_missing(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xf8E4M3FN>, %v: tensor<?x16x8x128xf8E4M3FN>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{fp8 caches need both 'k_scale' and 'v_scale' (f32: [] per tensor, [num_kv_heads] per KV head, or the cache's shape without head_dim per token), got none}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl : tensor<?x32x128xbf16>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// kv-scales-only-k: 
func.func @kv_scales_only_k(%q: memref<?x32x128xf16>, %k: memref<?x16x8x128xf8E4M3FN>, %v: memref<?x16x8x128xf8E4M3FN>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %ks: memref<8xf32>, %o: memref<?x32x128xf16>) {
  // expected-error @+1 {{fp8 caches need both 'k_scale' and 'v_scale' (f32: [] per tensor, [num_kv_heads] per KV head, or the cache's shape without head_dim per token), got only 'k_scale'}}
  paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : memref<8xf32>) outs(%o : memref<?x32x128xf16>) : memref<?x32x128xf16>, memref<?x16x8x128xf8E4M3FN>, memref<?x16x8x128xf8E4M3FN>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// kv-scales-only-v: 
func.func @kv_scales_only_v(%q: memref<?x32x128xf16>, %k: memref<?x16x8x128xf8E4M3FN>, %v: memref<?x16x8x128xf8E4M3FN>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %vs: memref<8xf32>, %o: memref<?x32x128xf16>) {
  // expected-error @+1 {{fp8 caches need both 'k_scale' and 'v_scale' (f32: [] per tensor, [num_kv_heads] per KV head, or the cache's shape without head_dim per token), got only 'v_scale'}}
  paged_attn.decode %q, %k, %v, %bt, %sl v_scale(%vs : memref<8xf32>) outs(%o : memref<?x32x128xf16>) : memref<?x32x128xf16>, memref<?x16x8x128xf8E4M3FN>, memref<?x16x8x128xf8E4M3FN>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// kv-scales-unquantised: scales belong to fp8 caches only
func.func @kv_scales_unquantised(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xbf16>, %v: tensor<?x16x8x128xbf16>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>, %ks: tensor<f32>, %vs: tensor<f32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{'k_scale' and 'v_scale' are the scales of fp8 caches; 'k_cache' is 'bf16'}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : tensor<f32>) v_scale(%vs : tensor<f32>) : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// kv-scales-types: K's and V's scales of one granularity
func.func @kv_scales_types(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xf8E4M3FN>, %v: tensor<?x16x8x128xf8E4M3FN>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>, %ks: tensor<f32>, %vs: tensor<8xf32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{'k_scale' and 'v_scale' must have the same rank (one granularity), got 0 and 1}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : tensor<f32>) v_scale(%vs : tensor<8xf32>) : tensor<?x32x128xbf16>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// kv-scale-rank: 0, 1 or 3
func.func @kv_scale_rank(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xf8E4M3FN>, %v: tensor<?x16x8x128xf8E4M3FN>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>, %ks: tensor<?x8xf32>, %vs: tensor<?x8xf32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{'k_scale' must have rank 0 (per tensor), 1 ([num_kv_heads], per KV head) or 3 ([num_pages, page_size, num_kv_heads], per token), got 2}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : tensor<?x8xf32>) v_scale(%vs : tensor<?x8xf32>) : tensor<?x32x128xbf16>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// kv-scale-head-shape: one scale per KV head
func.func @kv_scale_head_shape(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xf8E4M3FN>, %v: tensor<?x16x8x128xf8E4M3FN>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>, %ks: tensor<32xf32>, %vs: tensor<32xf32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{'k_scale' must have shape [num_kv_heads] (per KV head) [8], got [32]}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : tensor<32xf32>) v_scale(%vs : tensor<32xf32>) : tensor<?x32x128xbf16>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// kv-scale-token-shape-nhd: [pages, page, num_kv_heads]
func.func @kv_scale_token_nhd(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xf8E5M2>, %v: tensor<?x16x8x128xf8E5M2>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>, %ks: tensor<?x8x16xf32>, %vs: tensor<?x8x16xf32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{'k_scale' must have shape of the cache's first three dims (per token) [?, 16, 8], got [?, 8, 16]}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : tensor<?x8x16xf32>) v_scale(%vs : tensor<?x8x16xf32>) : tensor<?x32x128xbf16>, tensor<?x16x8x128xf8E5M2>, tensor<?x16x8x128xf8E5M2>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// kv-scale-token-shape-hnd: [pages, num_kv_heads, page]
func.func @kv_scale_token_hnd(%q: memref<?x32x128xbf16>, %k: memref<?x8x16x128xf8E5M2>, %v: memref<?x8x16x128xf8E5M2>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %ks: memref<?x16x8xf32>, %vs: memref<?x16x8xf32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'k_scale' must have shape of the cache's first three dims (per token) [?, 8, 16], got [?, 16, 8]}}
  paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : memref<?x16x8xf32>) v_scale(%vs : memref<?x16x8xf32>) outs(%o : memref<?x32x128xbf16>) {layout = #paged_attn.kv_layout<hnd>} : memref<?x32x128xbf16>, memref<?x8x16x128xf8E5M2>, memref<?x8x16x128xf8E5M2>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// kv-scale-token-pages: a scale cache of the KV cache's pages
func.func @kv_scale_token_pages(%q: tensor<?x32x128xbf16>, %k: tensor<100x16x8x128xf8E4M3FN>, %v: tensor<100x16x8x128xf8E4M3FN>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>, %ks: tensor<50x16x8xf32>, %vs: tensor<50x16x8xf32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{'k_scale' must have shape of the cache's first three dims (per token) [100, 16, 8], got [50, 16, 8]}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : tensor<50x16x8xf32>) v_scale(%vs : tensor<50x16x8xf32>) : tensor<?x32x128xbf16>, tensor<100x16x8x128xf8E4M3FN>, tensor<100x16x8x128xf8E4M3FN>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// kv-scale-type: scales are f32
func.func @kv_scale_type(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xf8E4M3FN>, %v: tensor<?x16x8x128xf8E4M3FN>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>, %ks: tensor<8xbf16>, %vs: tensor<8xbf16>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{'k_scale' element type must be f32, got 'bf16'}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : tensor<8xbf16>) v_scale(%vs : tensor<8xbf16>) : tensor<?x32x128xbf16>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// kv-scale-form: a tensor among memrefs
func.func @kv_scale_form(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xf8E4M3FN>, %v: memref<?x16x8x128xf8E4M3FN>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %ks: tensor<8xf32>, %vs: memref<8xf32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'k_scale' must be a memref as 'q' is}}
  paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : tensor<8xf32>) v_scale(%vs : memref<8xf32>) outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x16x8x128xf8E4M3FN>, memref<?x16x8x128xf8E4M3FN>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// v-scale-form: a memref among tensors
func.func @v_scale_form(%q: tensor<?x32x128xbf16>, %k: tensor<?x16x8x128xf8E4M3FN>, %v: tensor<?x16x8x128xf8E4M3FN>, %bt: tensor<?x?xi32>, %sl: tensor<?xi32>, %ks: tensor<f32>, %vs: memref<f32>) -> tensor<?x32x128xbf16> {
  // expected-error @+1 {{'v_scale' must be a tensor as 'q' is}}
  %o = paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : tensor<f32>) v_scale(%vs : memref<f32>) : tensor<?x32x128xbf16>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN>, tensor<?x?xi32>, tensor<?xi32> -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// -----

// kv-scale-space: scales are read from global memory
func.func @kv_scale_space(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xf8E4M3FN>, %v: memref<?x16x8x128xf8E4M3FN>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %ks: memref<8xf32, 3>, %vs: memref<8xf32, 3>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'k_scale' must be in the default memory space, got 3}}
  paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : memref<8xf32, 3>) v_scale(%vs : memref<8xf32, 3>) outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x16x8x128xf8E4M3FN>, memref<?x16x8x128xf8E4M3FN>, memref<?x?xi32>, memref<?xi32>
  return
}

// -----

// fp8-cache-stride: the caches' rows are 16-byte vectors of fp8 too
func.func @fp8_cache_stride(%q: memref<?x32x128xbf16>, %k: memref<?x16x8x128xf8E4M3FN, strided<[?, ?, 136, 1]>>, %v: memref<?x16x8x128xf8E4M3FN>, %bt: memref<?x?xi32>, %sl: memref<?xi32>, %ks: memref<f32>, %vs: memref<f32>, %o: memref<?x32x128xbf16>) {
  // expected-error @+1 {{'k_cache' stride of dim 2 is 136 elements (136 bytes); it must be a multiple of 16 bytes}}
  paged_attn.decode %q, %k, %v, %bt, %sl k_scale(%ks : memref<f32>) v_scale(%vs : memref<f32>) outs(%o : memref<?x32x128xbf16>) : memref<?x32x128xbf16>, memref<?x16x8x128xf8E4M3FN, strided<[?, ?, 136, 1]>>, memref<?x16x8x128xf8E4M3FN>, memref<?x?xi32>, memref<?xi32>
  return
}
