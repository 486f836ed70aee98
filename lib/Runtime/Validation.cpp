//===- Validation.cpp - the caller's tensors against the Spec -------------===//

#include "Validation.h"

#include "Manifest.h"

#include <cmath>
#include <cstdint>
#include <sstream>

using namespace paged_attn;
using namespace paged_attn::detail;

std::string detail::shapeString(const Tensor &t) {
  std::ostringstream os;
  os << "[";
  for (int d = 0; d < t.rank && d < 4; ++d)
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
  case LaunchValue::AlibiSlopes:
    return &p.alibiSlopes;
  case LaunchValue::Sinks:
    return &p.sinks;
  case LaunchValue::Lse:
    return &p.lse;
  case LaunchValue::TreeMask:
    return &p.treeMask;
  case LaunchValue::KScale:
    return &p.kScale;
  case LaunchValue::VScale:
    return &p.vScale;
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
  uint64_t bytes = dtypeBytes(t.dtype);
  // In uint64_t, where a product that wraps is still right modulo 16 (a
  // divisor of 2^64), instead of overflowing int64_t. The extent check
  // refuses strides too large to be followed.
  for (int i = 0; i + 1 < t.rank; ++i)
    if ((uint64_t(t.strides[i]) * bytes) % 16 != 0)
      return invalid(std::string(name) + " stride of dim " + std::to_string(i) +
                     " (" + std::to_string(t.strides[i]) +
                     " elements) is not a multiple of 16 bytes");
  return Status::ok();
}

/// The byte offsets from `t.data` of the first and past the last byte the
/// view spans (sizes already checked non-negative); false when they do
/// not fit in int64_t. Empty views span nothing.
static bool byteExtent(const Tensor &t, int64_t *lo, int64_t *hi) {
  *lo = *hi = 0;
  for (int d = 0; d < t.rank; ++d)
    if (t.sizes[d] == 0)
      return true;
  int64_t first = 0, last = 0, elem = int64_t(dtypeBytes(t.dtype));
  for (int d = 0; d < t.rank; ++d) {
    int64_t reach;
    if (__builtin_mul_overflow(t.sizes[d] - 1, t.strides[d], &reach) ||
        __builtin_add_overflow(reach < 0 ? first : last, reach,
                               reach < 0 ? &first : &last))
      return false;
  }
  return !__builtin_mul_overflow(first, elem, lo) &&
         !__builtin_mul_overflow(last, elem, hi) &&
         !__builtin_add_overflow(*hi, elem, hi);
}

/// The kernels address elements as the pointer plus an i64 offset: every
/// element the view spans must have a byte offset int64_t holds and an
/// address that does not wrap. A stride of 2^62 elements is refused here,
/// not followed out of the address space.
static Status checkExtent(const char *name, const Tensor &t) {
  int64_t lo = 0, hi = 0;
  uintptr_t base = reinterpret_cast<uintptr_t>(t.data);
  if (byteExtent(t, &lo, &hi) && base >= uintptr_t(0) - uintptr_t(lo) &&
      UINTPTR_MAX - base >= uintptr_t(hi))
    return Status::ok();
  std::ostringstream strides;
  for (int d = 0; d < t.rank; ++d)
    strides << (d ? ", " : "") << t.strides[d];
  return invalid(std::string(name) + " of shape " + shapeString(t) +
                 " and strides [" + strides.str() +
                 "] spans more memory than an address can reach");
}

/// Whether `dtype` is one of the Spec's: a C or Python caller's enum value
/// may be anything, and dtypeName would misname it. The fp8 dtypes are
/// known everywhere; which operand may have one is the Spec's parameter
/// list's to say (k_cache and v_cache of a quantised config only).
static bool isKnownDType(DType dtype) {
  return unsigned(dtype) <= unsigned(DType::F8E5M2);
}

/// checkTensor's checks of the view's description (not its pointer):
/// rank, dtype and sizes.
static Status checkShape(const KernelParam &param, const Tensor &t,
                         int64_t dim0, const char *shapeDoc) {
  const char *name = param.name;
  int rank = int(param.shape.size());
  if (t.rank < 0 || t.rank > 4)
    return invalid(std::string(name) + " is not a valid tensor: its rank (" +
                   std::to_string(t.rank) + ") is outside [0, 4]");
  if (!isKnownDType(t.dtype))
    return invalid(std::string(name) + " has an invalid dtype (" +
                   std::to_string(int(t.dtype)) + ")");
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
  return Status::ok();
}

Status detail::checkTensor(const KernelParam &param, const Tensor &t,
                           int64_t dim0, const char *shapeDoc) {
  const char *name = param.name;
  if (!t.data)
    return invalid(std::string(name) + " is a null pointer");
  if (Status s = checkShape(param, t, dim0, shapeDoc); !s)
    return s;
  if (param.unitInnermostStride) {
    if (Status s = checkVectorRows(name, t); !s)
      return s;
  } else if (size_t bytes = dtypeBytes(t.dtype);
             reinterpret_cast<uintptr_t>(t.data) % bytes != 0) {
    // Elements are loaded whole (i32 page numbers and lengths).
    return invalid(std::string(name) + " data pointer is not " +
                   std::to_string(bytes) + "-byte aligned");
  }
  return checkExtent(name, t);
}

Status detail::checkTensorOrEmpty(const KernelParam &param, const Tensor &t,
                                  int64_t dim0, const char *shapeDoc) {
  if (t.data)
    return checkTensor(param, t, dim0, shapeDoc);
  if (Status s = checkShape(param, t, dim0, shapeDoc); !s)
    return s;
  if (t.numElements() != 0)
    return invalid(std::string(param.name) + " is a null pointer");
  return Status::ok();
}

Status detail::checkBatch(int64_t batch) {
  if (batch < 0)
    return invalid("batch must be at least 0, got " + std::to_string(batch));
  if (batch > kMaxBatch)
    return invalid("batch " + std::to_string(batch) +
                   " exceeds the grid limit of 65535 sequences per launch");
  return Status::ok();
}

Status detail::checkNumSplits(int64_t numSplits) {
  if (numSplits < 0 || numSplits > kMaxSplits)
    return invalid("num_splits must be in [0, 65535], got " +
                   std::to_string(numSplits));
  return Status::ok();
}

Status detail::checkSplitPlan(const DecodeParams &p, int64_t batch) {
  if (p.splitChunk < 0)
    return invalid("split_chunk must be at least 0, got " +
                   std::to_string(p.splitChunk));
  if (p.splitChunk && !p.numSplits)
    return invalid("split_chunk " + std::to_string(p.splitChunk) +
                   " needs num_splits; an automatic split chooses its own");
  if (!p.hostSeqLens)
    return Status::ok();
  if (p.numSplits)
    return invalid("host_seq_lens plan an automatic split; with num_splits " +
                   std::to_string(p.numSplits) +
                   " given, give split_chunk instead");
  for (int64_t b = 0; b < batch; ++b)
    if (p.hostSeqLens[b] < 0)
      return invalid("host_seq_lens[" + std::to_string(b) +
                     "] must be at least 0, got " +
                     std::to_string(p.hostSeqLens[b]));
  return Status::ok();
}

const char *detail::kvScaleShapeDoc(const std::optional<KVQuant> &kvQuant,
                                    Layout layout) {
  if (!kvQuant)
    return "";
  switch (kvQuant->scale) {
  case KVScaleKind::Tensor:
    return "[]";
  case KVScaleKind::Head:
    return "[num_kv_heads]";
  case KVScaleKind::Token:
    return layout == Layout::NHD
               ? "[num_pages of k_cache, page_size, num_kv_heads]"
               : "[num_pages of k_cache, num_kv_heads, page_size]";
  }
  return "";
}

/// How messages name the expected shape of an operand.
static const char *shapeDoc(LaunchValue value, const KernelConfig &config) {
  bool perQuery = config.hasQueryDim();
  switch (value) {
  case LaunchValue::Q:
    return perQuery ? "[batch, L, num_heads, head_dim]"
                    : "[batch, num_heads, head_dim]";
  case LaunchValue::KCache:
  case LaunchValue::VCache:
    return cacheShapeDoc(config.layout);
  case LaunchValue::BlockTable:
    return "[batch, max_pages]";
  case LaunchValue::SeqLens:
    return "[batch]";
  case LaunchValue::Out:
    return "the shape of q";
  case LaunchValue::AlibiSlopes:
  case LaunchValue::Sinks:
    return "[num_heads]";
  case LaunchValue::Lse:
    return perQuery ? "[batch, L, num_heads]" : "[batch, num_heads]";
  case LaunchValue::TreeMask:
    return "[batch, L, L]";
  case LaunchValue::KScale:
  case LaunchValue::VScale:
    return kvScaleShapeDoc(config.kvQuant, config.layout);
  default:
    return "";
  }
}

/// Whether `value`'s first dimension counts the pages of the pool: the
/// caches', and per-token scales', which are read through the page table.
static bool countsPages(LaunchValue value) {
  return value == LaunchValue::KCache || value == LaunchValue::VCache ||
         value == LaunchValue::KScale || value == LaunchValue::VScale;
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
    int64_t &dim0 = countsPages(bound.value) ? pages : *batch;
    if (Status s = checkTensor(bound.param, *t, dim0,
                               shapeDoc(bound.value, spec.config));
        !s)
      return s;
    // The batch and the pool come from the operands that have them first
    // (per-head vectors have a static first dimension, a per-tensor scale
    // none).
    if (!bound.param.shape.empty() && bound.param.shape[0] == kDynamicSize)
      dim0 = t->sizes[0];
  }
  return Status::ok();
}

/// The variants' values: each one the config has is given and valid, and
/// none it lacks is (a window passed to a kernel without one would
/// otherwise be ignored).
static Status checkVariantValues(const KernelConfig &config,
                                 const DecodeParams &p) {
  const DecodeVariants &v = config.variants;
  auto absent = [&](const char *what) {
    return invalid(std::string(what) + " is given, but config " +
                   config.name() + " has no such variant");
  };
  if (!v.window && p.window != 0)
    return absent("window");
  if (v.window && p.window < 1)
    return invalid("config " + config.name() +
                   " has a window: window must be at least 1, got " +
                   std::to_string(p.window));
  if (!v.softCap && p.softCap != 0)
    return absent("soft_cap");
  if (v.softCap && !(std::isfinite(p.softCap) && p.softCap > 0))
    return invalid("config " + config.name() +
                   " has a soft-cap: soft_cap must be finite and positive");
  const std::pair<bool, const Tensor *> tensors[] = {{v.alibi, &p.alibiSlopes},
                                                     {v.sinks, &p.sinks},
                                                     {v.lse, &p.lse},
                                                     {v.treeMask, &p.treeMask}};
  const char *names[] = {"alibi_slopes", "sinks", "lse", "tree_mask"};
  for (size_t i = 0; i < std::size(tensors); ++i)
    if (!tensors[i].first && tensors[i].second->data)
      return absent(names[i]);
  // A scale for caches of q's dtype would be ignored: refused as well.
  for (auto [name, scale] :
       {std::pair{"k_scale", &p.kScale}, std::pair{"v_scale", &p.vScale}})
    if (!config.kvQuant && scale->data)
      return invalid(std::string(name) + " is given, but config " +
                     config.name() +
                     " has no quantised KV cache (its caches are " +
                     dtypeName(config.dtype) + ")");
  return Status::ok();
}

Status Decoder::validate(const DecodeParams &p, int64_t *batchOut,
                         int64_t *maxSeqLenOut) const {
  int64_t batch = 0;
  if (Status s = checkOperands(*spec_, p, &batch); !s)
    return s;
  if (Status s = checkBatch(batch); !s)
    return s;
  if (p.scale < 0 || !std::isfinite(p.scale))
    return invalid("scale must be finite and positive (or 0 for "
                   "1/sqrt(head_dim))");
  if (Status s = checkVariantValues(config_, p); !s)
    return s;
  int64_t pageSize = config_.pageSize;
  int64_t capacity = 0;
  if (__builtin_mul_overflow(p.blockTable.sizes[1], pageSize, &capacity))
    return invalid("the page table's capacity (" +
                   std::to_string(p.blockTable.sizes[1]) + " pages of " +
                   std::to_string(pageSize) + " tokens) overflows int64");
  int64_t maxSeqLen = p.maxSeqLen < 0 ? capacity : p.maxSeqLen;
  if (maxSeqLen > capacity)
    return invalid("max_seq_len " + std::to_string(maxSeqLen) +
                   " exceeds the page table's capacity (" +
                   std::to_string(p.blockTable.sizes[1]) + " pages of " +
                   std::to_string(pageSize) + " = " + std::to_string(capacity) +
                   " tokens)");
  if (Status s = checkNumSplits(p.numSplits); !s)
    return s;
  if (Status s = checkSplitPlan(p, batch); !s)
    return s;
  *batchOut = batch;
  *maxSeqLenOut = maxSeqLen;
  return Status::ok();
}
