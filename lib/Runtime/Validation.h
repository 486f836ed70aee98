//===- Validation.h - the caller's tensors against the Spec -----*- C++ -*-===//
//
// decode() checks every argument before it touches the GPU, so that a bad
// call fails with a message instead of a fault inside a kernel. The
// tensors are checked against the Spec's description of the decode
// kernel's parameters: their rank, dtype, static sizes and where the
// kernel loads 16-byte vectors.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_LIB_RUNTIME_VALIDATION_H
#define PAGEDATTN_LIB_RUNTIME_VALIDATION_H

#include "LaunchParams.h"

#include "PagedAttn/Runtime/Runtime.h"

#include <optional>
#include <string>
#include <vector>

// Internal to the runtime: hidden, so that exports.map (paged_attn::*)
// keeps it in the library.
#pragma GCC visibility push(hidden)
namespace paged_attn {
namespace detail {

inline Status invalid(const std::string &message) {
  return Status(StatusCode::InvalidArgument, message);
}

/// "no KIND for config X (library holds: ...)": a few of the library's
/// configs of that kind, enough to spot a near miss without a message as
/// long as a test matrix.
template <typename Config>
Status noKernelFor(const char *kind, const Config &config,
                   const std::vector<Config> &held) {
  constexpr size_t kNamed = 8;
  std::string known = held.empty() ? "none" : "";
  for (size_t i = 0; i < held.size() && i < kNamed; ++i)
    known += (i ? ", " : "") + held[i].name();
  if (held.size() > kNamed)
    known += " and " + std::to_string(held.size() - kNamed) + " more";
  return Status(StatusCode::NotFound, std::string("no ") + kind +
                                          " for config " + config.name() +
                                          " (library holds: " + known + ")");
}

/// "[2, 32, 128]": a tensor's sizes, for messages.
std::string shapeString(const Tensor &t);

/// The caller's tensor that `value` stands for; null for the values the
/// runtime makes itself (workspace views, scalars).
const Tensor *operandTensor(const DecodeParams &params, LaunchValue value);

/// Checks `t` against `param`: rank, dtype, the Spec's static sizes and
/// `dim0` for its first dimension (any when negative), and for parameters
/// the kernel loads as 16-byte vectors, the alignment of its pointer and
/// strides. `shapeDoc` names the expected shape in messages.
Status checkTensor(const KernelParam &param, const Tensor &t, int64_t dim0,
                   const char *shapeDoc);

/// checkTensor for an operand whose view may be empty: a view with a zero
/// size may have a null pointer (nothing of it is read or written), and is
/// checked for its rank, dtype and sizes only.
Status checkTensorOrEmpty(const KernelParam &param, const Tensor &t,
                          int64_t dim0, const char *shapeDoc);

/// How messages name the expected shape of k_scale and v_scale of caches
/// quantised as `kvQuant` and laid out as `layout` ("" without one).
const char *kvScaleShapeDoc(const std::optional<KVQuant> &kvQuant,
                            Layout layout);

/// The most sequences one launch takes: the grid's y dimension.
constexpr int64_t kMaxBatch = 65535;
/// The most chunks a sequence is split into: the grid's z dimension.
constexpr int64_t kMaxSplits = 65535;

/// InvalidArgument unless 0 <= batch <= kMaxBatch.
Status checkBatch(int64_t batch);
/// InvalidArgument unless 0 <= numSplits <= kMaxSplits (0: automatic).
Status checkNumSplits(int64_t numSplits);
/// DecodeParams::splitChunk and hostSeqLens: a chunk of at least 0 keys
/// with a given split count only, lengths of at least 0 for an automatic
/// one.
Status checkSplitPlan(const DecodeParams &p, int64_t batch);

} // namespace detail
} // namespace paged_attn
#pragma GCC visibility pop

#endif // PAGEDATTN_LIB_RUNTIME_VALIDATION_H
