// A decode split over a sequence's pages, as context parallelism or a
// shared prefix splits it: the first `split` pages of each sequence's block
// table and the rest are decoded separately, each with its log-sum-exp,
// and paged_attn.merge combines the two partials into the attention over
// all the tokens, with per-head sinks applied once, in the merge.
//
// 16 query heads over 4 KV heads of 64, pages of 16 tokens, bf16, and a
// logit soft-cap (as Gemma 2 has) of 5. The caller owns every buffer: the
// partials are its workspace (2 x batch rows and log-sum-exps). The
// lengths are those of each part: prefix_lens[b] tokens in the first
// `split` pages, suffix_lens[b] in the pages after them.
//
// `llvm.emit_c_interface` gives a `_mlir_ciface_split_decode` taking each
// memref as a pointer to its descriptor (examples/host/split_decode_main.c
// calls it). paged-attn-to-host lowers it to host code that launches the
// two decodes and the merge on one stream and waits for them to finish.
func.func @split_decode(
    %q: memref<?x16x64xbf16>,
    %k_cache: memref<?x16x4x64xbf16>, %v_cache: memref<?x16x4x64xbf16>,
    %block_table: memref<?x?xi32>, %split: index,
    %prefix_lens: memref<?xi32>, %suffix_lens: memref<?xi32>,
    %sinks: memref<16xf32>,
    %partials: memref<2x?x16x64xbf16>, %partial_lse: memref<2x?x16xf32>,
    %out: memref<?x16x64xbf16>, %lse: memref<?x16xf32>)
    attributes {llvm.emit_c_interface} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %batch = memref.dim %q, %c0 : memref<?x16x64xbf16>
  %pages = memref.dim %block_table, %c1 : memref<?x?xi32>
  %rest = arith.subi %pages, %split : index

  // Column views of the block table: pages [0, split) and [split, pages).
  %prefix_table = memref.subview %block_table[0, 0] [%batch, %split] [1, 1]
      : memref<?x?xi32> to memref<?x?xi32, strided<[?, 1]>>
  %suffix_table = memref.subview %block_table[0, %split] [%batch, %rest] [1, 1]
      : memref<?x?xi32> to memref<?x?xi32, strided<[?, 1], offset: ?>>

  // Partial n of the workspace.
  %out0 = memref.subview %partials[0, 0, 0, 0] [1, %batch, 16, 64] [1, 1, 1, 1]
      : memref<2x?x16x64xbf16> to memref<?x16x64xbf16, strided<[1024, 64, 1]>>
  %out1 = memref.subview %partials[1, 0, 0, 0] [1, %batch, 16, 64] [1, 1, 1, 1]
      : memref<2x?x16x64xbf16> to memref<?x16x64xbf16, strided<[1024, 64, 1], offset: ?>>
  %lse0 = memref.subview %partial_lse[0, 0, 0] [1, %batch, 16] [1, 1, 1]
      : memref<2x?x16xf32> to memref<?x16xf32, strided<[16, 1]>>
  %lse1 = memref.subview %partial_lse[1, 0, 0] [1, %batch, 16] [1, 1, 1]
      : memref<2x?x16xf32> to memref<?x16xf32, strided<[16, 1], offset: ?>>

  paged_attn.decode %q, %k_cache, %v_cache, %prefix_table, %prefix_lens
      outs(%out0 : memref<?x16x64xbf16, strided<[1024, 64, 1]>>)
      lse(%lse0 : memref<?x16xf32, strided<[16, 1]>>)
      {soft_cap = 5.0 : f32}
      : memref<?x16x64xbf16>, memref<?x16x4x64xbf16>, memref<?x16x4x64xbf16>,
        memref<?x?xi32, strided<[?, 1]>>, memref<?xi32>
  paged_attn.decode %q, %k_cache, %v_cache, %suffix_table, %suffix_lens
      outs(%out1 : memref<?x16x64xbf16, strided<[1024, 64, 1], offset: ?>>)
      lse(%lse1 : memref<?x16xf32, strided<[16, 1], offset: ?>>)
      {soft_cap = 5.0 : f32}
      : memref<?x16x64xbf16>, memref<?x16x4x64xbf16>, memref<?x16x4x64xbf16>,
        memref<?x?xi32, strided<[?, 1], offset: ?>>, memref<?xi32>
  paged_attn.merge %partials, %partial_lse sinks(%sinks : memref<16xf32>)
      outs(%out : memref<?x16x64xbf16>) lse(%lse : memref<?x16xf32>)
      : memref<2x?x16x64xbf16>, memref<2x?x16xf32>
  return
}
