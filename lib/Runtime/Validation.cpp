//===- Validation.cpp - the caller's tensors against the Spec -------------===//

#include "Validation.h"

#include "Manifest.h"

#include <cmath>
#include <sstream>

using namespace paged_attn;
using namespace paged_attn::detail;

static std::string shapeString(const Tensor &t) {
  std::ostringstream os;
  os << "[";
  for (int d = 0; d < t.rank; ++d)
    os << (d ? ", " : "") << t.sizes[d];
  os << "]";
  return os.str();
}

const Tensor *detail::operandTensor(const DecodeParams &p, LaunchValue value) {
  switch (value) {
  case LaunchValue::Q:
    return &p.q;
  case LaunchValue::KCache:
    return &p.kCache;
  case LaunchValue::VCache:
    return &p.vCache;
  case LaunchValue::BlockTable:
    return &p.blockTable;
  case LaunchValue::SeqLens:
    return &p.seqLens;
  case LaunchValue::Out:
    return &p.out;
  default:
    return nullptr;
  }
}

/// The kernel loads rows as 16-byte vectors: the pointer and every outer
/// stride must keep rows 16-byte aligned, and the rows must be contiguous.
static Status checkVectorRows(const char *name, const Tensor &t) {
  if (reinterpret_cast<uintptr_t>(t.data) % 16 != 0)
    return invalid(std::string(name) + " data pointer is not 16-byte "
                                       "aligned");
  if (t.strides[t.rank - 1] != 1 && t.sizes[t.rank - 1] > 1)
    return invalid(std::string(name) +
                   " must have unit stride in its last dimension, got " +
                   std::to_string(t.strides[t.rank - 1]));
  int64_t bytes = int64_t(dtypeBytes(t.dtype));
  for (int i = 0; i + 1 < t.rank; ++i)
    if ((t.strides[i] * bytes) % 16 != 0)
      return invalid(std::string(name) + " stride of dim " + std::to_string(i) +
                     " (" + std::to_string(t.strides[i]) +
                     " elements) is not a multiple of 16 bytes");
  return Status::ok();
}

Status detail::checkTensor(const KernelParam &param, const Tensor &t,
                           int64_t dim0, const char *shapeDoc) {
  const char *name = param.name;
  int rank = int(param.shape.size());
  if (!t.data)
    return invalid(std::string(name) + " is a null pointer");
  if (t.rank != rank)
    return invalid(std::string(name) + " must have rank " +
                   std::to_string(rank) + " (" + shapeDoc + "), got " +
                   std::to_string(t.rank));
  if (t.dtype != param.dtype)
    return invalid(std::string(name) + " has dtype " + dtypeName(t.dtype) +
                   ", expected " + dtypeName(param.dtype));
  for (int d = 0; d < rank; ++d) {
    int64_t expected = param.shape[d];
    if (d == 0 && expected == kDynamicSize)
      expected = dim0;
    if (t.sizes[d] < 0 || (expected >= 0 && t.sizes[d] != expected))
      return invalid(std::string(name) + " has shape " + shapeString(t) +
                     ", expected " + shapeDoc);
  }
  if (param.unitInnermostStride)
    return checkVectorRows(name, t);
  return Status::ok();
}

/// How messages name the expected shape of an operand.
static const char *shapeDoc(LaunchValue value, Layout layout) {
  switch (value) {
  case LaunchValue::Q:
    return "[batch, num_heads, head_dim]";
  case LaunchValue::KCache:
  case LaunchValue::VCache:
    return cacheShapeDoc(layout);
  case LaunchValue::BlockTable:
    return "[batch, max_pages]";
  case LaunchValue::SeqLens:
    return "[batch]";
  case LaunchValue::Out:
    return "the shape of q";
  default:
    return "";
  }
}

/// Checks the caller's tensors in the decode kernel's parameter order. q's
/// first dimension is the batch and k_cache's the page pool: the other
/// operands must agree with them.
static Status checkOperands(const KernelSpec &spec, const DecodeParams &p,
                            int64_t *batch) {
  int64_t pages = -1;
  *batch = -1;
  for (const BoundParam &bound : spec.decode.params) {
    const Tensor *t = operandTensor(p, bound.value);
    if (!t)
      continue;
    bool isCache = bound.value == LaunchValue::KCache ||
                   bound.value == LaunchValue::VCache;
    int64_t &dim0 = isCache ? pages : *batch;
    if (Status s = checkTensor(bound.param, *t, dim0,
                               shapeDoc(bound.value, spec.config.layout));
        !s)
      return s;
    dim0 = t->sizes[0];
  }
  return Status::ok();
}

Status Decoder::validate(const DecodeParams &p, int64_t *batchOut,
                         int64_t *maxSeqLenOut) const {
  int64_t batch = 0;
  if (Status s = checkOperands(*spec_, p, &batch); !s)
    return s;
  if (batch > 65535)
    return invalid("batch " + std::to_string(batch) +
                   " exceeds the grid limit of 65535 sequences per launch");
  if (p.scale < 0 || !std::isfinite(p.scale))
    return invalid("scale must be finite and positive (or 0 for "
                   "1/sqrt(head_dim))");
  int64_t pageSize = config_.pageSize;
  int64_t capacity = p.blockTable.sizes[1] * pageSize;
  int64_t maxSeqLen = p.maxSeqLen < 0 ? capacity : p.maxSeqLen;
  if (maxSeqLen > capacity)
    return invalid("max_seq_len " + std::to_string(maxSeqLen) +
                   " exceeds the page table's capacity (" +
                   std::to_string(p.blockTable.sizes[1]) + " pages of " +
                   std::to_string(pageSize) + " = " + std::to_string(capacity) +
                   " tokens)");
  if (p.numSplits < 0 || p.numSplits > 65535)
    return invalid("num_splits must be in [0, 65535], got " +
                   std::to_string(p.numSplits));
  *batchOut = batch;
  *maxSeqLenOut = maxSeqLen;
  return Status::ok();
}
