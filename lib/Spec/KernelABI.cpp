//===- KernelABI.cpp - the decode kernels' parameters and workspace -------===//

#include "PagedAttn/Spec/KernelABI.h"

#include <algorithm>
#include <climits>
#include <cstdint>

using namespace paged_attn;

namespace {
constexpr int64_t dyn = kDynamicSize;

KernelParam memref(const char *name, DType dtype, std::vector<int64_t> shape,
                   bool unitInnermostStride) {
  return {name, true, dtype, std::move(shape), unitInnermostStride};
}

KernelParam scalar(const char *name, DType dtype) {
  return {name, false, dtype, {}, false};
}

std::vector<int64_t> cacheShape(const DecodeSpec &s) {
  std::array<int64_t, 4> shape = s.cacheShape(dyn);
  return {shape.begin(), shape.end()};
}

// A multi-token decode's q, out and log-sum-exp have the L new queries as
// dim 1; its split partials have a row per (query, head), query-major.
std::vector<int64_t> perQuery(const DecodeSpec &s,
                              std::vector<int64_t> trailing) {
  std::vector<int64_t> shape = {dyn};
  if (s.hasQueryDim())
    shape.push_back(s.queryLen);
  shape.insert(shape.end(), trailing.begin(), trailing.end());
  return shape;
}

// The split-KV partials are f32 whatever the decode's dtype.
KernelParam partialOut(int64_t rows, int64_t headDim) {
  return memref("partial_out", DType::F32, {dyn, rows, dyn, headDim}, true);
}
KernelParam partialLse(int64_t rows) {
  return memref("partial_lse", DType::F32, {dyn, rows, dyn}, false);
}
KernelParam blockTable() {
  return memref("block_table", DType::I32, {dyn, dyn}, false);
}
KernelParam seqLens() { return memref("seq_lens", DType::I32, {dyn}, false); }
KernelParam out(const DecodeSpec &s) {
  return memref("out", s.dtype, perQuery(s, {s.numHeads, s.headDim}), true);
}
KernelParam lse(const DecodeSpec &s) {
  return memref("lse", DType::F32, perQuery(s, {s.numHeads}), false);
}
} // namespace

std::vector<KernelParam> paged_attn::decodeKernelParams(const DecodeSpec &s) {
  std::vector<KernelParam> params = {
      memref("q", s.dtype, perQuery(s, {s.numHeads, s.headDim}), true),
      memref("k_cache", s.cacheDType(), cacheShape(s), true),
      memref("v_cache", s.cacheDType(), cacheShape(s), true),
      blockTable(),
      seqLens(),
      out(s),
      partialOut(s.partialRows(), s.headDim),
      partialLse(s.partialRows()),
      scalar("scale", DType::F32),
      scalar("num_splits", DType::I32),
      scalar("split_chunk", DType::I32)};
  const DecodeVariants &v = s.variants;
  if (v.window)
    params.push_back(scalar("window", DType::I64));
  if (v.softCap)
    params.push_back(scalar("soft_cap", DType::F32));
  if (v.alibi)
    params.push_back(memref("alibi_slopes", DType::F32, {s.numHeads}, false));
  if (v.sinks)
    params.push_back(memref("sinks", DType::F32, {s.numHeads}, false));
  if (v.lse)
    params.push_back(lse(s));
  if (v.treeMask)
    params.push_back(
        memref("tree_mask", DType::I8, {dyn, s.queryLen, s.queryLen}, false));
  if (s.kvQuant) {
    params.push_back(memref("k_scale", DType::F32, s.kvScaleShape(dyn), false));
    params.push_back(memref("v_scale", DType::F32, s.kvScaleShape(dyn), false));
  }
  return params;
}

std::string MergeSpec::name() const {
  std::string name = "h" + std::to_string(numHeads) + "_d" +
                     std::to_string(headDim) + "_" + dtypeName(dtype);
  if (partialDType != dtype)
    name += std::string("_from_") + dtypeName(partialDType);
  if (naturalLse)
    name += "_ln";
  if (sinks)
    name += "_sinks";
  if (lse)
    name += "_lse";
  if (queryDim)
    name += "_l" + std::to_string(queryLen);
  return name;
}

std::string MergeSpec::validate() const {
  if (numHeads < 1 || headDim < 1)
    return "num_heads and head_dim must be at least 1, got " +
           std::to_string(numHeads) + " and " + std::to_string(headDim);
  if (numHeads > DecodeSpec::kMaxNumHeads)
    return "num_heads (" + std::to_string(numHeads) + ") must be at most " +
           std::to_string(DecodeSpec::kMaxNumHeads);
  if (headDim > DecodeSpec::kMaxHeadDim)
    return "head_dim (" + std::to_string(headDim) + ") must be at most " +
           std::to_string(DecodeSpec::kMaxHeadDim);
  if (!isDataDType(dtype) || !isDataDType(partialDType))
    return "the element types must be f16, bf16 or f32";
  // Rows are loaded and stored as 16-byte vectors, partials 4 elements at
  // a time.
  int64_t rowBytes = headDim * int64_t(dtypeBytes(dtype));
  if (rowBytes % 16 != 0)
    return "a row of head_dim (" + std::to_string(headDim) + ") '" +
           dtypeName(dtype) + "' elements is " + std::to_string(rowBytes) +
           " bytes; it must be a multiple of 16 bytes";
  return "";
}

MergeSpec MergeSpec::forOp(int64_t numHeads, int64_t headDim, DType dtype,
                           bool sinks, bool lse) {
  MergeSpec m;
  m.numHeads = numHeads;
  m.headDim = headDim;
  m.dtype = m.partialDType = dtype;
  m.naturalLse = true;
  m.sinks = sinks;
  m.lse = lse;
  return m;
}

std::string paged_attn::mergeOpKernelName(const MergeSpec &spec) {
  return "paged_attn_merge_op_" + spec.name();
}

MergeSpec paged_attn::splitMergeSpec(const DecodeSpec &s) {
  MergeSpec m;
  m.numHeads = s.numHeads;
  m.headDim = s.headDim;
  m.dtype = s.dtype;
  m.partialDType = DType::F32;
  m.sinks = s.variants.sinks;
  m.lse = s.variants.lse;
  m.queryLen = s.queryLen;
  m.queryDim = s.hasQueryDim();
  return m;
}

std::vector<KernelParam> paged_attn::mergeKernelParams(const MergeSpec &m) {
  // Multi-token split partials have a row per (query, head); the results
  // are [batch, L, num_heads, ...] as the decode's.
  int64_t rows = m.queryLen * m.numHeads;
  auto perQuery = [&](std::vector<int64_t> trailing) {
    std::vector<int64_t> shape = {dyn};
    if (m.queryDim)
      shape.push_back(m.queryLen);
    shape.insert(shape.end(), trailing.begin(), trailing.end());
    return shape;
  };
  std::vector<KernelParam> params = {
      memref("partial_out", m.partialDType, {dyn, rows, dyn, m.headDim}, true),
      memref("partial_lse", DType::F32, {dyn, rows, dyn}, false),
      memref("out", m.dtype, perQuery({m.numHeads, m.headDim}), true),
      scalar("num_splits", DType::I32)};
  if (m.sinks)
    params.push_back(memref("sinks", DType::F32, {m.numHeads}, false));
  if (m.lse)
    params.push_back(memref("lse", DType::F32, perQuery({m.numHeads}), false));
  return params;
}

std::vector<KernelParam> paged_attn::mergeKernelParams(const DecodeSpec &s) {
  return mergeKernelParams(splitMergeSpec(s));
}

std::vector<KernelParam> paged_attn::checkKernelParams(const DecodeSpec &) {
  return {blockTable(), seqLens(), scalar("num_pages", DType::I32),
          memref("first_bad", DType::I64, {1}, false)};
}

static size_t alignUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

std::string paged_attn::layOutSplitWorkspace(const DecodeSpec &spec,
                                             int64_t batch, int64_t numSplits,
                                             SplitWorkspace *result) {
  if (batch < 0 || numSplits < 1)
    return "a split workspace needs batch >= 0 and num_splits >= 1, got " +
           std::to_string(batch) + " and " + std::to_string(numSplits);
  SplitWorkspace w;
  if (numSplits == 1 || batch == 0) {
    *result = w;
    return "";
  }
  // rows = batch * num_heads * num_splits; bytes = rows * (head_dim + 1) *
  // 4 plus alignment, all checked: a size that overflows is an error, not
  // a small workspace.
  uint64_t rows = 0, outElems = 0, outBytes = 0, lseBytes = 0, total = 0;
  if (__builtin_mul_overflow(uint64_t(batch), uint64_t(spec.partialRows()),
                             &rows) ||
      __builtin_mul_overflow(rows, uint64_t(numSplits), &rows) ||
      __builtin_mul_overflow(rows, uint64_t(spec.headDim), &outElems) ||
      __builtin_mul_overflow(outElems, uint64_t(4), &outBytes) ||
      __builtin_mul_overflow(rows, uint64_t(4), &lseBytes) ||
      outBytes > SIZE_MAX - 512 || lseBytes > SIZE_MAX - 512 ||
      __builtin_add_overflow(alignUp(outBytes, 256), alignUp(lseBytes, 256),
                             &total) ||
      total > uint64_t(INT64_MAX))
    return "the split-KV workspace of " + std::to_string(batch) +
           " sequences split " + std::to_string(numSplits) +
           " ways is larger than memory can be";
  w.bytes = size_t(total);
  w.lseOffset = alignUp(size_t(outBytes), 256);
  int64_t h = spec.partialRows(), d = spec.headDim;
  const int64_t outSizes[4] = {batch, h, numSplits, d};
  const int64_t outStrides[4] = {h * numSplits * d, numSplits * d, d, 1};
  const int64_t lseSizes[3] = {batch, h, numSplits};
  const int64_t lseStrides[3] = {h * numSplits, numSplits, 1};
  std::copy(outSizes, outSizes + 4, w.outSizes);
  std::copy(outStrides, outStrides + 4, w.outStrides);
  std::copy(lseSizes, lseSizes + 3, w.lseSizes);
  std::copy(lseStrides, lseStrides + 3, w.lseStrides);
  *result = w;
  return "";
}

int64_t paged_attn::splitChunkLength(int64_t keys, int64_t numSplits,
                                     int64_t splitChunk, int64_t step) {
  int64_t evenShare = (keys + numSplits - 1) / numSplits;
  int64_t chunk = std::max(evenShare, splitChunk);
  return (chunk + step - 1) / step * step;
}

const char *paged_attn::splitWorkspaceDoc() {
  return "partial_out f32 [batch, rows, num_splits, head_dim], then "
         "partial_lse f32 [batch, rows, num_splits], each 256-byte aligned; "
         "rows is num_heads, or query_len * num_heads (query-major) for a "
         "multi-token decode";
}
