//===- ScoreModifiers.h - what a variant does to the logits -----*- C++ -*-===//
//
// Attention variants change the logit s = scale * q.k of a key before the
// softmax (a soft-cap, a position bias) or hide keys from it (a window).
// Each is a rule here, written once with arith ops on f32 and index values,
// and emitted by both GPU decode kernels and by the loops lowering that gives
// the op its meaning on the CPU, so the reference cannot drift from the
// kernels. Plain decode has no rule: empty() is true, nothing is emitted,
// and the kernels keep the scale folded into q.
//
// A new variant: its parameter in DecodeSpec (PagedAttn/Spec), its rule in
// ScoreModifiers.cpp; the kernels and the loops call it already.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_CONVERSION_SCOREMODIFIERS_H
#define PAGEDATTN_CONVERSION_SCOREMODIFIERS_H

#include "PagedAttn/Dialect/PagedAttn/IR/DecodeSpec.h"

#include "mlir/IR/ImplicitLocOpBuilder.h"

namespace mlir {
namespace paged_attn {

/// Where a logit is: the key's position in its sequence, the sequence's
/// length (index values) and the query head (an index).
struct ScorePosition {
  Value token, seqLen, head;
};

class ScoreModifiers {
public:
  explicit ScoreModifiers(const DecodeSpec &spec) : spec(spec) {}

  /// Whether no rule changes a logit or hides a key.
  bool empty() const;
  /// The logit `score` (f32, natural-log units: scale * q.k) after the
  /// rules.
  Value apply(ImplicitLocOpBuilder &b, Value score,
              const ScorePosition &at) const;
  /// The first key of a sequence of `seqLen` tokens the query sees: null
  /// when it sees them all (no window).
  Value firstVisibleKey(ImplicitLocOpBuilder &b, Value seqLen) const;

private:
  DecodeSpec spec;
};

} // namespace paged_attn
} // namespace mlir

#endif // PAGEDATTN_CONVERSION_SCOREMODIFIERS_H
