//===- ScoreModifiers.h - what a variant does to the logits -----*- C++ -*-===//
//
// Attention variants change the logit s = scale * q.k of a key before the
// softmax (a soft-cap, a position bias) or hide keys from it (a window, the
// causal order and tree mask of a multi-token decode's new queries).
// Each is a rule here, written once with arith ops on f32 and index values,
// and emitted by both GPU decode kernels and by the loops lowering that gives
// the op its meaning on the CPU, so the reference cannot drift from the
// kernels. Plain decode has no rule: empty() is true, nothing is emitted,
// and the kernels keep the scale folded into q.
//
// The rules' values (the window's length, the cap, the slopes) are
// arguments of the kernel or operands of the op: the emitting code passes
// them in ScoreArgs. Sinks and the log-sum-exp act after the softmax, in
// the kernels' epilogues and the merge.
//
// A new variant: its flag in DecodeVariants (PagedAttn/Spec), its rule
// here; the kernels and the loops call it already.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_CONVERSION_SCOREMODIFIERS_H
#define PAGEDATTN_CONVERSION_SCOREMODIFIERS_H

#include "PagedAttn/Dialect/PagedAttn/IR/DecodeSpec.h"

#include "mlir/IR/ImplicitLocOpBuilder.h"

#include <functional>

namespace mlir {
namespace paged_attn {

/// The variants' values as the emitting code has them: the window (an
/// integer or index), the soft-cap (f32), the ALiBi slopes (a memref of
/// f32 [num_heads]) and the tree mask (a memref of i1 or i8 [batch, L, L]);
/// null where the spec has no such variant.
struct ScoreArgs {
  Value window, softCap, alibiSlopes, treeMask;
};

/// Where a logit is: the key's position in its sequence and the end of the
/// query's keys (index values: the sequence's length for a single-token
/// decode, queryKeyEnd for a multi-token one), and its query head's slope
/// (headSlope; null without ALiBi).
struct ScorePosition {
  Value token, seqLen, slope;
};

/// The f32 functions the rules are made of, as the target computes them:
/// on the GPU one instruction each (ex2.approx, rcp.approx: a full-precision
/// division is a subroutine, and the soft-cap's two of them cost 8% of a
/// decode on H200), on the CPU math.exp2 and 1 / x.
struct ScoreMath {
  std::function<Value(ImplicitLocOpBuilder &, Value)> exp2, reciprocal;
};

class ScoreModifiers {
public:
  ScoreModifiers(const DecodeSpec &spec, ScoreArgs args, ScoreMath math)
      : spec(spec), args(args), math(std::move(math)) {}

  /// Whether no rule changes a logit (a window only hides keys).
  bool empty() const;
  /// The ALiBi slope of query head `head` (an index), loaded once per head
  /// outside the loop over keys; null without ALiBi.
  Value headSlope(ImplicitLocOpBuilder &b, Value head) const;
  /// The logit `score` (f32, natural-log units: scale * q.k) after the
  /// rules: the soft-cap, then the ALiBi bias.
  Value apply(ImplicitLocOpBuilder &b, Value score,
              const ScorePosition &at) const;
  /// The first key of a sequence of `seqLen` tokens the query sees (an
  /// index): null when it sees them all (no window). For a multi-token
  /// decode, `seqLen` is the query's key end (queryKeyEnd).
  Value firstVisibleKey(ImplicitLocOpBuilder &b, Value seqLen) const;
  /// The end (exclusive) of the keys new query `query` sees in a sequence
  /// of `seqLen` tokens whose last L are the new ones: seqLen - L + 1 +
  /// query, at least 0 (causal among the new tokens). `seqLen` itself for
  /// a single-token decode (L = 1, `query` null).
  Value queryKeyEnd(ImplicitLocOpBuilder &b, Value seqLen, Value query) const;
  /// Whether the tree mask lets new query `query` of sequence `batch` (of
  /// `seqLen` tokens) see key `token` (index values; token < its key end):
  /// a key before the L new tokens always, new token j = token - (seqLen -
  /// L) where mask[batch, query, j] is nonzero (read at j clamped to [0,
  /// L - 1], so any token may be asked about). Null without a tree mask.
  Value treeMaskAllows(ImplicitLocOpBuilder &b, Value batch, Value query,
                       Value token, Value seqLen) const;

private:
  Value softCap(ImplicitLocOpBuilder &b, Value score) const;

  DecodeSpec spec;
  ScoreArgs args;
  ScoreMath math;
};

} // namespace paged_attn
} // namespace mlir

#endif // PAGEDATTN_CONVERSION_SCOREMODIFIERS_H
