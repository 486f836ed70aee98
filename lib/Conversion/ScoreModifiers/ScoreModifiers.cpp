//===- ScoreModifiers.cpp - what a variant does to the logits -------------===//

#include "PagedAttn/Conversion/ScoreModifiers.h"

using namespace mlir;
using namespace mlir::paged_attn;

// Plain decode is the only variant the op has today: no rule yet.

bool ScoreModifiers::empty() const { return true; }

Value ScoreModifiers::apply(ImplicitLocOpBuilder &, Value score,
                            const ScorePosition &) const {
  return score;
}

Value ScoreModifiers::firstVisibleKey(ImplicitLocOpBuilder &, Value) const {
  return Value();
}
