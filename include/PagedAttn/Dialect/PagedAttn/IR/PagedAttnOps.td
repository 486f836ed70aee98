//===- PagedAttnOps.td - paged_attn operations -------------*- tablegen -*-===//

#ifndef PAGEDATTN_DIALECT_PAGEDATTN_IR_PAGEDATTNOPS_TD
#define PAGEDATTN_DIALECT_PAGEDATTN_IR_PAGEDATTNOPS_TD

include "PagedAttn/Dialect/PagedAttn/IR/PagedAttnDialect.td"
include "PagedAttn/Dialect/PagedAttn/IR/PagedAttnAttrs.td"
include "mlir/IR/OpBase.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

class PagedAttn_Op<string mnemonic, list<Trait> traits = []>
    : Op<PagedAttn_Dialect, mnemonic, traits>;

def PagedAttn_TensorOrMemRef : AnyTypeOf<[AnyRankedTensor, AnyMemRef]>;

def PagedAttn_DecodeOp : PagedAttn_Op<"decode", [
    AttrSizedOperandSegments, AttrSizedResultSegments,
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "attention of one query token per sequence over a paged KV cache";
  let description = [{
    Computes, for every sequence `b` and query head `h`,

    ```
    out[b, h, :] = softmax(scale * q[b, h, :] . K_b^T) . V_b
    ```

    where `K_b` and `V_b` are the first `seq_lens[b]` tokens of sequence `b`:
    token `t` lives in physical page `block_table[b, t / page]` at slot
    `t % page`. Query head `h` reads KV head `h / (num_heads / num_kv_heads)`
    (grouped-query attention; multi-query when `num_kv_heads` is 1).
    Accumulation is in f32 whatever the element type. A sequence of length 0
    yields zeros. `scale` defaults to `1/sqrt(head_dim)`.

    | operand | shape |
    |---|---|
    | q | `[batch, num_heads, head_dim]`; multi-token `[batch, L, num_heads, head_dim]` |
    | k_cache, v_cache | `nhd`: `[pages, page, num_kv_heads, head_dim]`; `hnd`: `[pages, num_kv_heads, page, head_dim]` |
    | block_table | `[batch, max_pages]` i32 |
    | seq_lens | `[batch]` i32 |
    | tree_mask (optional) | `[batch, L, L]` i1 or i8 (multi-token) |
    | k_scale, v_scale (fp8 caches) | f32: `[]`, `[num_kv_heads]`, or the cache's shape without `head_dim` |
    | out / result | the shape of `q` |

    The layout is what the `layout` attribute says: the shapes alone do not
    tell it (a `[pages, 8, 8, 128]` cache is 8 tokens of 8 KV heads under
    `nhd` and 8 KV heads of 8 tokens under `hnd`). The verifier can only
    notice a layout that makes `num_kv_heads` larger than `num_heads`, or
    not divide it, and then suggests the other one.

    `num_heads`, `num_kv_heads`, `head_dim` and `page` are static; the batch,
    the page pool and `max_pages` may be dynamic. `head_dim` is at most 256
    and a row of it is a multiple of 16 bytes (8 f16/bf16 or 4 f32
    elements); `num_heads` is at most 4096 and `page` at most 65536. The
    memref form's operands are strided memrefs in the default memory space.
    Attributes other than `layout`, `scale`, `window` and `soft_cap` must
    belong to a dialect (`paged_attn.strategy`, set by
    `paged-attn-select-decode-kernel`, is one).

    ### Variants

    With `s = scale * q[b, h, :] . k_t` the logit of key `t` of sequence
    `b` for query head `h`, and `n = seq_lens[b]`:

    | variant | semantics |
    |---|---|
    | `window = W` (i64 attribute, W >= 1) | only keys `n - W <= t < n` are attended; the kernels read no page before the window, so time and bytes scale with W, not n. FlashInfer's `window_left` is W - 1. |
    | `soft_cap = c` (f32 attribute, finite, > 0) | `s <- c * tanh(s / c)`, after the scale |
    | `alibi_slopes(%a)` (f32 `[num_heads]`) | `s <- s + a[h] * (t - (n - 1))`, after the soft-cap |
    | `sinks(%s)` (f32 `[num_heads]`) | a sink logit in the softmax's denominator only: `out = sum_t e^(s_t - m) v_t / (e^(s[h] - m) + sum_t e^(s_t - m))` |
    | log-sum-exp (f32 `[batch, num_heads]`; multi-token `[batch, L, num_heads]`) | `lse[b, h] = log(sum_t e^(s_t))` over the attended keys, natural log, sinks excluded; -inf for a sequence with no attended key |

    Every combination is allowed (a window with sinks as in gpt-oss, a
    window with a soft-cap as in Gemma 2). A sequence with no attended key
    yields zeros, with or without sinks. The tensor form returns the
    log-sum-exp as a second result; the memref form writes it into its
    `lse` operand:

    ```mlir
    %o, %lse = paged_attn.decode %q, %k, %v, %bt, %sl sinks(%s : tensor<32xf32>)
           {window = 4096 : i64}
         : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>,
           tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32>
           -> tensor<?x32x128xbf16>, tensor<?x32xf32>
    ```

    ### Multi-token decode

    A `q` of rank 4, `[batch, L, num_heads, head_dim]` with a static `L`
    from 1 to 16, holds `L` new query tokens per sequence (speculative
    decoding verifies a draft's tokens in one step); `out` has the same
    shape. `seq_lens[b]` counts the new tokens, which are already in the
    cache as its last `L` keys. Query `i` (0 <= i < L) is causal among
    them: it sees the keys `t < n_i`, `n_i = seq_lens[b] - L + 1 + i`, and
    every variant treats `n_i` as its sequence length (query `i`'s window
    is `n_i - W <= t < n_i`, its ALiBi bias `slope[h] * (t - (n_i - 1))`).
    A sequence shorter than `L` is allowed: a query with `n_i <= 0` sees
    no key and yields zeros (log-sum-exp -inf), as an empty sequence does.
    The log-sum-exp is `[batch, L, num_heads]`.

    `tree_mask(%m)` (i1 or i8 `[batch, L, L]`, multi-token only) verifies
    a draft tree: query `i` sees new token `j` (the key `seq_lens[b] - L +
    j`) only where `j <= i` and `m[b, i, j]` is nonzero; the keys before
    the new tokens stay visible. A query whose own diagonal entry is zero
    does not see itself.

    ```mlir
    paged_attn.decode %q, %k, %v, %bt, %sl tree_mask(%m : memref<?x4x4xi8>)
        outs(%o : memref<?x4x32x128xbf16>)
        : memref<?x4x32x128xbf16>, memref<?x16x8x128xbf16>,
          memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
    ```

    The rank-3 form is the single-token decode (`L = 1`).

    ### Quantised KV caches

    `k_cache` and `v_cache` may be `f8E4M3FN` or `f8E5M2` (both the same)
    where `q` is f16 or bf16; `out` stays `q`'s type. Element `x` of the
    cache stands for `x * scale`, with K's scales in `k_scale(%ks)` and V's
    in `v_scale(%vs)`, both f32 of the same rank, which says the
    granularity:

    | rank | shape | granularity |
    |---|---|---|
    | 0 | `[]` | one scale for the cache |
    | 1 | `[num_kv_heads]` | one per KV head |
    | 3 | `nhd`: `[pages, page, num_kv_heads]`; `hnd`: `[pages, num_kv_heads, page]` | one per token and KV head, read through the page table as the cache is |

    A row of `head_dim` fp8 elements must be a multiple of 16 bytes
    (`head_dim` a multiple of 16). Every code reads as its value in the
    format: NaNs as NaN, `f8E5M2`'s infinities as infinities
    (`f8E4M3FN` has none).

    ```mlir
    %o = paged_attn.decode %q, %k, %v, %bt, %sl
           k_scale(%ks : tensor<8xf32>) v_scale(%vs : tensor<8xf32>)
         : tensor<?x32x128xbf16>, tensor<?x16x8x128xf8E4M3FN>,
           tensor<?x16x8x128xf8E4M3FN>, tensor<?x?xi32>, tensor<?xi32>
           -> tensor<?x32x128xbf16>
    ```

    The kernels are specialised on which variants a decode has, not on
    their values: the window's length and the cap are kernel arguments. A
    decode with none compiles to the same kernels as before the variants
    existed.

    The op has two forms. With tensors it has value semantics and a result:

    ```mlir
    %o = paged_attn.decode %q, %k, %v, %bt, %sl
           {layout = #paged_attn.kv_layout<nhd>, scale = 0.0883883 : f32}
         : tensor<?x32x128xbf16>, tensor<?x16x8x128xbf16>,
           tensor<?x16x8x128xbf16>, tensor<?x?xi32>, tensor<?xi32>
           -> tensor<?x32x128xbf16>
    ```

    With memrefs it is in destination style and writes `out`:

    ```mlir
    paged_attn.decode %q, %k, %v, %bt, %sl outs(%o : memref<?x32x128xbf16>)
         : memref<?x32x128xbf16>, memref<?x16x8x128xbf16>,
           memref<?x16x8x128xbf16>, memref<?x?xi32>, memref<?xi32>
    ```
  }];

  let arguments = (ins
    PagedAttn_TensorOrMemRef:$q,
    PagedAttn_TensorOrMemRef:$k_cache,
    PagedAttn_TensorOrMemRef:$v_cache,
    PagedAttn_TensorOrMemRef:$block_table,
    PagedAttn_TensorOrMemRef:$seq_lens,
    Optional<PagedAttn_TensorOrMemRef>:$alibi_slopes,
    Optional<PagedAttn_TensorOrMemRef>:$sinks,
    Optional<PagedAttn_TensorOrMemRef>:$tree_mask,
    Optional<PagedAttn_TensorOrMemRef>:$k_scale,
    Optional<PagedAttn_TensorOrMemRef>:$v_scale,
    Optional<AnyMemRef>:$out,
    Optional<AnyMemRef>:$lse_out,
    DefaultValuedAttr<PagedAttn_KVLayoutAttr, "::mlir::paged_attn::KVLayout::nhd">:$layout,
    OptionalAttr<F32Attr>:$scale,
    OptionalAttr<I64Attr>:$window,
    OptionalAttr<F32Attr>:$soft_cap
  );
  let results = (outs Optional<AnyRankedTensor>:$result,
                      Optional<AnyRankedTensor>:$lse);

  let assemblyFormat = [{
    $q `,` $k_cache `,` $v_cache `,` $block_table `,` $seq_lens
    (`alibi_slopes` `(` $alibi_slopes^ `:` type($alibi_slopes) `)`)?
    (`sinks` `(` $sinks^ `:` type($sinks) `)`)?
    (`tree_mask` `(` $tree_mask^ `:` type($tree_mask) `)`)?
    (`k_scale` `(` $k_scale^ `:` type($k_scale) `)`)?
    (`v_scale` `(` $v_scale^ `:` type($v_scale) `)`)?
    (`outs` `(` $out^ `:` type($out) `)`)?
    (`lse` `(` $lse_out^ `:` type($lse_out) `)`)?
    attr-dict `:` type($q) `,` type($k_cache) `,` type($v_cache) `,`
    type($block_table) `,` type($seq_lens) (`->` type($result)^)?
    (`,` type($lse)^)?
  }];

  let builders = [
    // Tensor form: the result has the type of `q`.
    OpBuilder<(ins "::mlir::Value":$q, "::mlir::Value":$kCache,
      "::mlir::Value":$vCache, "::mlir::Value":$blockTable,
      "::mlir::Value":$seqLens, "::mlir::paged_attn::KVLayout":$layout,
      "::std::optional<float>":$scale)>,
    // Memref form: writes `out`.
    OpBuilder<(ins "::mlir::Value":$q, "::mlir::Value":$kCache,
      "::mlir::Value":$vCache, "::mlir::Value":$blockTable,
      "::mlir::Value":$seqLens, "::mlir::Value":$out,
      "::mlir::paged_attn::KVLayout":$layout,
      "::std::optional<float>":$scale)>
  ];

  let extraClassDeclaration = [{
    /// True for the destination-style form on memrefs.
    bool hasPureBufferSemantics() { return getOut() != nullptr; }
    /// True for the value-semantics form on tensors.
    bool hasPureTensorSemantics() { return getResult() != nullptr; }

    ::mlir::ShapedType getQType() {
      return ::llvm::cast<::mlir::ShapedType>(getQ().getType());
    }
    ::mlir::ShapedType getCacheType() {
      return ::llvm::cast<::mlir::ShapedType>(getKCache().getType());
    }
    ::mlir::Type getElementType() { return getQType().getElementType(); }

    /// Static sizes; valid once the op verifies (the layout's dims:
    /// PagedAttn/Spec; getDecodeSpec in DecodeSpec.h gives all of them).
    /// q is [batch, num_heads, head_dim] or, multi-token,
    /// [batch, L, num_heads, head_dim].
    bool isMultiToken() { return getQType().getRank() == 4; }
    int64_t getQueryLen() {
      return isMultiToken() ? getQType().getDimSize(1) : 1;
    }
    int64_t getNumHeads() {
      return getQType().getDimSize(getQType().getRank() - 2);
    }
    int64_t getHeadDim() {
      return getQType().getDimSize(getQType().getRank() - 1);
    }
    int64_t getNumKVHeads();
    int64_t getPageSize();
    /// `scale` if set, else 1/sqrt(head_dim).
    float getEffectiveScale();
  }];

  let hasVerifier = 1;
}

def PagedAttn_MergeOp : PagedAttn_Op<"merge", [
    AttrSizedOperandSegments, AttrSizedResultSegments,
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "combine partial attention results by their log-sum-exps";
  let description = [{
    Combines `N` partial results of one attention, each over its own set of
    keys (a split of the KV cache, a cascade level, a GPU's shard), into
    the attention over all of them. Partial `n` is `partial_out[n]`
    (normalised) and `partial_lse[n]` (the natural log-sum-exp of its
    logits, as `paged_attn.decode` returns it). With `m` the largest
    `partial_lse[n, b, h]` and `w_n = e^(partial_lse[n, b, h] - m)`:

    ```
    out[b, h, :] = sum_n w_n partial_out[n, b, h, :] / (sum_n w_n [+ e^(sinks[h] - m)])
    lse[b, h]    = m + log(sum_n w_n)
    ```

    Empty partials (`partial_lse` -inf) are neutral; where every partial is
    empty the output is zeros and the log-sum-exp -inf. The sinks, if
    given, are applied once here (so the partials must be computed without
    them); the log-sum-exp excludes them, as decode's does.

    | operand | shape |
    |---|---|
    | partial_out | `[N, batch, num_heads, head_dim]`, f16, bf16 or f32 |
    | partial_lse | `[N, batch, num_heads]` f32 |
    | sinks | `[num_heads]` f32 (optional) |
    | out / result | `[batch, num_heads, head_dim]`, the dtype of `partial_out` |
    | lse (optional) | `[batch, num_heads]` f32 |

    `num_heads` and `head_dim` are static (at most 4096 and 256, a row of
    `head_dim` a multiple of 16 bytes); `N` and the batch may be dynamic.
    The GPU lowering is the kernel that merges a split decode's partials.

    ```mlir
    %o, %lse = paged_attn.merge %parts, %lses
         : tensor<2x?x32x128xbf16>, tensor<2x?x32xf32>
         -> tensor<?x32x128xbf16>, tensor<?x32xf32>
    paged_attn.merge %parts, %lses sinks(%s : memref<32xf32>)
        outs(%o : memref<?x32x128xbf16>)
        : memref<2x?x32x128xbf16>, memref<2x?x32xf32>
    ```
  }];

  let arguments = (ins
    PagedAttn_TensorOrMemRef:$partial_out,
    PagedAttn_TensorOrMemRef:$partial_lse,
    Optional<PagedAttn_TensorOrMemRef>:$sinks,
    Optional<AnyMemRef>:$out,
    Optional<AnyMemRef>:$lse_out
  );
  let results = (outs Optional<AnyRankedTensor>:$result,
                      Optional<AnyRankedTensor>:$lse);

  let assemblyFormat = [{
    $partial_out `,` $partial_lse
    (`sinks` `(` $sinks^ `:` type($sinks) `)`)?
    (`outs` `(` $out^ `:` type($out) `)`)?
    (`lse` `(` $lse_out^ `:` type($lse_out) `)`)?
    attr-dict `:` type($partial_out) `,` type($partial_lse)
    (`->` type($result)^)? (`,` type($lse)^)?
  }];

  let extraClassDeclaration = [{
    /// True for the destination-style form on memrefs.
    bool hasPureBufferSemantics() { return getOut() != nullptr; }
    /// True for the value-semantics form on tensors.
    bool hasPureTensorSemantics() { return getResult() != nullptr; }
    ::mlir::ShapedType getPartialOutType() {
      return ::llvm::cast<::mlir::ShapedType>(getPartialOut().getType());
    }
    int64_t getNumHeads() { return getPartialOutType().getDimSize(2); }
    int64_t getHeadDim() { return getPartialOutType().getDimSize(3); }
  }];

  let hasVerifier = 1;
}

def PagedAttn_AppendOp : PagedAttn_Op<"append", [
    AttrSizedOperandSegments,
    DeclareOpInterfaceMethods<MemoryEffectsOpInterface>]> {
  let summary = "write new tokens' K and V rows into a paged KV cache";
  let description = [{
    Writes the K and V rows of `T` new tokens into the caches a
    `paged_attn.decode` reads, at the slots `slot_mapping` gives (serving
    engines do this before every decode step: vLLM's `reshape_and_cache`,
    FlashInfer's `append_paged_kv_cache`). For every token `t` with
    `0 <= slot = slot_mapping[t] < num_pages * page`, and every KV head `h`,
    the cache row of (page `slot / page`, slot `slot % page`, KV head `h`)
    receives `k[t, h, :]` (and `v_cache`'s receives `v[t, h, :]`). A
    negative slot (padding, as in vLLM) or one past the cache is skipped:
    nothing is written for that token. The non-negative slots of one op
    must be distinct; where two tokens share one, which row is kept is
    unspecified.

    | operand | shape |
    |---|---|
    | k, v | `[T, num_kv_heads, head_dim]`, f16, bf16 or f32 (q's type) |
    | slot_mapping | `[T]` i64: `page * page_size + slot in the page` |
    | k_cache, v_cache | `nhd`: `[pages, page, num_kv_heads, head_dim]`; `hnd`: `[pages, num_kv_heads, page, head_dim]`; `k`'s type or fp8 |
    | k_scale, v_scale (fp8 caches) | f32: `[]`, `[num_kv_heads]`, or the cache's shape without `head_dim` |

    Caches of `k`'s type receive the rows bit for bit. Caches of
    `f8E4M3FN` or `f8E5M2` (with 16-bit `k` and `v`) receive them quantised
    with the scales a decode dequantises them with (its `k_scale` and
    `v_scale`, of the same ranks):

    | scales | what the append does |
    |---|---|
    | `[]` or `[num_kv_heads]` (read) | `code = fp8(x * (1 / s))` with the tensor's or the KV head's scale `s` |
    | the cache's shape without `head_dim` (written) | `s = max(amax / fmax, 2^-126)` per token and KV head, with `amax` the row's largest magnitude and `fmax` the format's largest finite value (448, 57344); `s` goes to the scale cache's row and `code = fp8(x * (1 / s))` |

    In f32: `1 / s` and `amax / fmax` are IEEE divisions and `x * (1 / s)`
    is rounded to nearest; `fp8` rounds to the nearest value of the format
    (ties to even), saturates past the largest finite value to it
    (infinities too) and keeps NaN a NaN. The floor of `2^-126` keeps an
    all-zero row's reciprocal finite. A row holding a NaN or an infinity
    does not survive per-token quantisation: it reads back as NaNs.

    `num_kv_heads`, `head_dim` and `page` are static, `head_dim` at most
    256 with rows of a multiple of 16 bytes in both `k`'s type and the
    cache's. With tensors the op returns the updated caches (and, per
    token, the updated scale caches); it bufferizes in place:

    ```mlir
    %kc2, %vc2, %ks2, %vs2 = paged_attn.append %k, %v, %slots, %kc, %vc
           k_scale(%ks : tensor<?x16x8xf32>) v_scale(%vs : tensor<?x16x8xf32>)
         : tensor<?x8x128xbf16>, tensor<?x8x128xbf16>, tensor<?xi64>,
           tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN>
           -> tensor<?x16x8x128xf8E4M3FN>, tensor<?x16x8x128xf8E4M3FN>,
              tensor<?x16x8xf32>, tensor<?x16x8xf32>
    ```

    With memrefs it writes the caches in place and has no results:

    ```mlir
    paged_attn.append %k, %v, %slots, %kc, %vc
         : memref<?x8x128xbf16>, memref<?x8x128xbf16>, memref<?xi64>,
           memref<?x16x8x128xbf16>, memref<?x16x8x128xbf16>
    ```
  }];

  let arguments = (ins
    PagedAttn_TensorOrMemRef:$k,
    PagedAttn_TensorOrMemRef:$v,
    PagedAttn_TensorOrMemRef:$slot_mapping,
    PagedAttn_TensorOrMemRef:$k_cache,
    PagedAttn_TensorOrMemRef:$v_cache,
    Optional<PagedAttn_TensorOrMemRef>:$k_scale,
    Optional<PagedAttn_TensorOrMemRef>:$v_scale,
    DefaultValuedAttr<PagedAttn_KVLayoutAttr, "::mlir::paged_attn::KVLayout::nhd">:$layout
  );
  let results = (outs Variadic<AnyRankedTensor>:$results);

  let assemblyFormat = [{
    $k `,` $v `,` $slot_mapping `,` $k_cache `,` $v_cache
    (`k_scale` `(` $k_scale^ `:` type($k_scale) `)`)?
    (`v_scale` `(` $v_scale^ `:` type($v_scale) `)`)?
    attr-dict `:` type($k) `,` type($v) `,` type($slot_mapping) `,`
    type($k_cache) `,` type($v_cache) (`->` type($results)^)?
  }];

  let extraClassDeclaration = [{
    /// True for the in-place form on memrefs.
    bool hasPureBufferSemantics() {
      return ::llvm::isa<::mlir::MemRefType>(getK().getType());
    }
    /// True for the value-semantics form on tensors.
    bool hasPureTensorSemantics() { return !hasPureBufferSemantics(); }

    ::mlir::ShapedType getKType() {
      return ::llvm::cast<::mlir::ShapedType>(getK().getType());
    }
    ::mlir::ShapedType getCacheType() {
      return ::llvm::cast<::mlir::ShapedType>(getKCache().getType());
    }
    /// Whether the op writes per-token scales (rank-3 k_scale and v_scale).
    bool writesScales() {
      return getKScale() &&
             ::llvm::cast<::mlir::ShapedType>(getKScale().getType())
                     .getRank() == 3;
    }
    /// The operands the tensor form returns updated, in result order:
    /// k_cache, v_cache, and per token k_scale and v_scale.
    ::llvm::SmallVector<::mlir::Value> getUpdatedOperands() {
      ::llvm::SmallVector<::mlir::Value> updated = {getKCache(), getVCache()};
      if (writesScales())
        updated.append({getKScale(), getVScale()});
      return updated;
    }
  }];

  let hasVerifier = 1;
}

#endif // PAGEDATTN_DIALECT_PAGEDATTN_IR_PAGEDATTNOPS_TD
