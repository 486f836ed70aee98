//===- KernelABI.h - the decode kernels' parameters and workspace -*- C++ -*-===//
//
// How the kernels of a decode are called: their parameters in launch order
// (the conversion builds the kernels' signatures from them, the compiler
// describes them in the manifest and the runtime passes them), and the
// split-KV workspace the decode kernel writes and the merge kernel reads.
// Free of LLVM and MLIR.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_SPEC_KERNELABI_H
#define PAGEDATTN_SPEC_KERNELABI_H

#include "PagedAttn/Spec/DecodeSpec.h"

#include <cstdint>
#include <string>
#include <vector>

namespace paged_attn {

/// A dimension of a kernel parameter that is not fixed by the spec.
constexpr int64_t kDynamicSize = -1;

/// One parameter of a kernel. A memref is passed as its descriptor
/// (allocated pointer, aligned pointer, offset, sizes, strides: i64, in
/// elements); a scalar as itself.
struct KernelParam {
  const char *name;
  bool isMemRef;
  /// The element (or scalar) type: the decode's own dtype for q, the
  /// caches and out.
  DType dtype;
  /// Static sizes from the spec, kDynamicSize elsewhere (memrefs only).
  std::vector<int64_t> shape;
  /// Whether the kernel loads 16-byte vectors along the last dimension
  /// (which then has unit stride); other strides are free.
  bool unitInnermostStride;
};

/// q, k_cache, v_cache, block_table, seq_lens, out, partial_out,
/// partial_lse, scale (f32), num_splits (i32), split_chunk (i32: the fewest
/// keys a split's chunk takes, 0 for an even split; see
/// splitChunkLength); then those of the spec's
/// variants, in this order: window (i64), soft_cap (f32), alibi_slopes (f32
/// [num_heads]), sinks (f32 [num_heads]), lse (f32 [batch, num_heads]),
/// tree_mask (i8 [batch, L, L]); then, for quantised caches (whose element
/// type is kvQuant's), k_scale and v_scale (f32, DecodeSpec::kvScaleShape).
/// A multi-token decode's q and out are
/// [batch, L, num_heads, head_dim] and its lse [batch, L, num_heads]; its
/// partials have DecodeSpec::partialRows() rows.
std::vector<KernelParam> decodeKernelParams(const DecodeSpec &spec);
/// What a merge kernel combines: partial results of `numHeads` heads of
/// `headDim` values (one partial per split, normalised, in `partialDType`)
/// with their log-sum-exps, into one result of `dtype`; with a sink per head
/// in the denominator and a log-sum-exp output where asked. The split-KV
/// merge of a decode and the paged_attn.merge op are both this kernel.
struct MergeSpec {
  int64_t numHeads = 0, headDim = 0;
  DType dtype = DType::BF16, partialDType = DType::F32;
  /// The partial log-sum-exps are natural logs (the op's) rather than base
  /// 2 (a split decode's, as its kernels keep logits).
  bool naturalLse = false;
  bool sinks = false, lse = false;
  /// A multi-token decode's split merge (DecodeSpec::hasQueryDim):
  /// partial rows are (query, head) pairs, query-major, and out and lse
  /// have the L queries as dim 1. The merge op's is 1 and false.
  int64_t queryLen = 1;
  bool queryDim = false;

  /// "h32_d128_bf16", then "_from_f32" where the partials' dtype differs,
  /// "_ln" for natural log-sum-exps, "_sinks", "_lse" and "_l<L>" (queryDim).
  std::string name() const;
  /// The merge op's rules on these sizes and dtypes: empty when they hold,
  /// else the first broken rule's message.
  std::string validate() const;
  /// The spec of paged_attn.merge on partials [N, batch, `numHeads`,
  /// `headDim`] of `dtype` (the result's too), with natural log-sum-exps.
  static MergeSpec forOp(int64_t numHeads, int64_t headDim, DType dtype,
                         bool sinks, bool lse);

  bool operator==(const MergeSpec &o) const {
    return numHeads == o.numHeads && headDim == o.headDim && dtype == o.dtype &&
           partialDType == o.partialDType && naturalLse == o.naturalLse &&
           sinks == o.sinks && lse == o.lse && queryLen == o.queryLen &&
           queryDim == o.queryDim;
  }
  bool operator!=(const MergeSpec &o) const { return !(*this == o); }
};

/// The kernel paged_attn.merge lowers to: "paged_attn_merge_op_" + name.
std::string mergeOpKernelName(const MergeSpec &spec);

/// The merge's config section of a manifest entry, and reading it back
/// (empty, or what is missing, malformed or against the op's rules).
std::vector<ConfigField> mergeConfigFields(const MergeSpec &spec);
std::string mergeSpecFromConfig(const json::Value &config, MergeSpec *spec);

/// The merge of `spec`'s split-KV partials (f32, base-2 log-sum-exps), with
/// its sinks and log-sum-exp output.
MergeSpec splitMergeSpec(const DecodeSpec &spec);

/// partial_out [batch, rows, num_splits, head_dim], partial_lse [batch,
/// rows, num_splits] (rows: queryLen * num_heads), out, num_splits (i32);
/// then sinks and lse where the spec has them.
std::vector<KernelParam> mergeKernelParams(const MergeSpec &spec);
/// mergeKernelParams(splitMergeSpec(spec)).
std::vector<KernelParam> mergeKernelParams(const DecodeSpec &spec);
/// block_table, seq_lens, num_pages (i32), first_bad (i64 [1]).
std::vector<KernelParam> checkKernelParams(const DecodeSpec &spec);

/// The split-KV workspace of `batch` sequences split `numSplits` ways:
/// partial_out f32 [batch, rows, num_splits, head_dim], then partial_lse
/// f32 [batch, rows, num_splits] (rows: DecodeSpec::partialRows()), each
/// 256-byte aligned.
struct SplitWorkspace {
  /// 0 when numSplits is 1 (the decode kernel writes out directly).
  size_t bytes = 0;
  size_t lseOffset = 0;
  int64_t outSizes[4] = {0, 0, 0, 0}, outStrides[4] = {0, 0, 0, 0};
  int64_t lseSizes[3] = {0, 0, 0}, lseStrides[3] = {0, 0, 0};
};

/// Lays out the workspace; returns empty, or why it cannot be (sizes below
/// 1, or more bytes than size_t holds).
std::string layOutSplitWorkspace(const DecodeSpec &spec, int64_t batch,
                                 int64_t numSplits, SplitWorkspace *result);

/// The layout in words, for manifests.
const char *splitWorkspaceDoc();

/// The keys each split chunk of a sequence with `keys` visible keys takes
/// (split z takes [z * chunk, (z + 1) * chunk) of them): an even share of
/// `numSplits` ways, or `splitChunk` keys where that is more, rounded up to
/// whole loop iterations of `step` keys. `numSplits` chunks cover the keys
/// for any `splitChunk`, so a split plan made for other lengths (a CUDA
/// graph replayed after seq_lens changed) stays correct. The decode
/// kernels compute the same (emitDecodeCTA). 0 for no keys; arguments
/// below 1 (0 for `splitChunk`) are the caller's error.
int64_t splitChunkLength(int64_t keys, int64_t numSplits, int64_t splitChunk,
                         int64_t step);

} // namespace paged_attn

#endif // PAGEDATTN_SPEC_KERNELABI_H
