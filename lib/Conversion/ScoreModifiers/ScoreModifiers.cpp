//===- ScoreModifiers.cpp - what a variant does to the logits -------------===//

#include "PagedAttn/Conversion/ScoreModifiers.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

#include <cmath>

using namespace mlir;
using namespace mlir::paged_attn;

bool ScoreModifiers::empty() const {
  return !spec.variants.softCap && !spec.variants.alibi;
}

Value ScoreModifiers::headSlope(ImplicitLocOpBuilder &b, Value head) const {
  if (!spec.variants.alibi)
    return Value();
  return memref::LoadOp::create(b, args.alibiSlopes, ValueRange{head});
}

/// c * tanh(s / c), with tanh(x) = 1 - 2 / (e^2x + 1): exact at both
/// limits (e^2x overflowing to inf gives 1, underflowing to 0 gives -1) and
/// made of one exp2 and one reciprocal, which the GPU has as instructions
/// (a libdevice tanh would need linking; tanh.approx is good to 2^-11
/// only). 2 log2(e) / c does not depend on the key: the compiler hoists it
/// out of the loop.
Value ScoreModifiers::softCap(ImplicitLocOpBuilder &b, Value score) const {
  auto f32 = [&](double v) -> Value {
    return arith::ConstantOp::create(b, b.getF32FloatAttr(v));
  };
  Value twoLog2eOverCap = arith::MulFOp::create(
      b, f32(2.0 * M_LOG2E), math.reciprocal(b, args.softCap));
  Value e2x = math.exp2(b, arith::MulFOp::create(b, score, twoLog2eOverCap));
  Value twoOver = arith::MulFOp::create(
      b, f32(2.0),
      math.reciprocal(b, arith::AddFOp::create(b, e2x, f32(1.0))));
  Value tanh = arith::SubFOp::create(b, f32(1.0), twoOver);
  return arith::MulFOp::create(b, args.softCap, tanh);
}

Value ScoreModifiers::apply(ImplicitLocOpBuilder &b, Value score,
                            const ScorePosition &at) const {
  if (spec.variants.softCap)
    score = softCap(b, score);
  if (spec.variants.alibi) {
    // slope * (t - (n - 1)): 0 for the newest key, more negative further
    // back.
    Value one = arith::ConstantIndexOp::create(b, 1);
    Value distance = arith::SubIOp::create(
        b, at.token, arith::SubIOp::create(b, at.seqLen, one));
    Value distanceF32 = arith::SIToFPOp::create(
        b, b.getF32Type(),
        arith::IndexCastOp::create(b, b.getI64Type(), distance));
    score = arith::AddFOp::create(
        b, score, arith::MulFOp::create(b, at.slope, distanceF32));
  }
  return score;
}

Value ScoreModifiers::firstVisibleKey(ImplicitLocOpBuilder &b,
                                      Value seqLen) const {
  if (!spec.variants.window)
    return Value();
  // max(n - W, 0), in i64 where W may exceed any index of a sequence.
  Value window = args.window;
  if (!window.getType().isIndex())
    window = arith::IndexCastOp::create(b, b.getIndexType(), window);
  Value first = arith::SubIOp::create(b, seqLen, window);
  return arith::MaxSIOp::create(b, first,
                                arith::ConstantIndexOp::create(b, 0));
}

Value ScoreModifiers::queryKeyEnd(ImplicitLocOpBuilder &b, Value seqLen,
                                  Value query) const {
  if (spec.queryLen == 1)
    return seqLen;
  // seqLen - (L - 1 - query), clamped: a sequence shorter than L leaves its
  // first queries no key.
  Value behind = arith::SubIOp::create(
      b, arith::ConstantIndexOp::create(b, spec.queryLen - 1), query);
  return arith::MaxSIOp::create(b, arith::SubIOp::create(b, seqLen, behind),
                                arith::ConstantIndexOp::create(b, 0));
}

Value ScoreModifiers::treeMaskAllows(ImplicitLocOpBuilder &b, Value batch,
                                     Value query, Value token,
                                     Value seqLen) const {
  if (!spec.variants.treeMask)
    return Value();
  Value zero = arith::ConstantIndexOp::create(b, 0);
  // The key's index among the new tokens; negative before them. The mask
  // is read at an index clamped to [0, L - 1] so that no load leaves it:
  // the kernels ask about keys past a query's end too (a tile's padding),
  // whose answer they discard.
  Value newToken = arith::SubIOp::create(
      b, token,
      arith::SubIOp::create(
          b, seqLen, arith::ConstantIndexOp::create(b, spec.queryLen)));
  Value isOld = arith::CmpIOp::create(b, arith::CmpIPredicate::slt, newToken,
                                      zero);
  Value column = arith::MinSIOp::create(
      b, arith::MaxSIOp::create(b, newToken, zero),
      arith::ConstantIndexOp::create(b, spec.queryLen - 1));
  Value entry = memref::LoadOp::create(b, args.treeMask,
                                       ValueRange{batch, query, column});
  Value allowed = entry;
  if (!entry.getType().isInteger(1))
    allowed = arith::CmpIOp::create(
        b, arith::CmpIPredicate::ne, entry,
        arith::ConstantOp::create(b, b.getIntegerAttr(entry.getType(), 0)));
  return arith::OrIOp::create(b, isOld, allowed);
}
