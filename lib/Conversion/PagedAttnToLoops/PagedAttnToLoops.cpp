//===- PagedAttnToLoops.cpp - paged_attn.decode to scalar loops -----------===//
//
// The reference semantics of decode: for every sequence, new query token
// (one, or L of a multi-token decode) and query head, a first pass over the
// query's visible keys finds the largest logit, a second accumulates
// exp(logit - max) and exp(logit - max) * V in f32, and the result is the
// accumulator over the sum (zeros when no key is visible). The score rules
// (ScoreModifiers, shared with the GPU kernels) decide a query's last and
// first visible keys (its causal end, the window), apply to each logit, and
// hide the keys a tree mask hides (their logit -inf, their weight 0); a
// sink adds exp(sink - max) to the denominator; the log-sum-exp is
// max + log(sum) (-inf when no key is visible). An fp8 cache's elements
// are their values times their scales (KVDequant, shared with the kernels).
//
//===----------------------------------------------------------------------===//

#include "AppendToLoops.h"

#include "PagedAttn/Conversion/KVDequant.h"
#include "PagedAttn/Conversion/Passes.h"
#include "PagedAttn/Conversion/ScoreModifiers.h"
#include "PagedAttn/Dialect/PagedAttn/IR/DecodeSpec.h"
#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttn.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

#include <limits>

namespace mlir {
namespace paged_attn {
#define GEN_PASS_DEF_CONVERTPAGEDATTNTOLOOPS
#include "PagedAttn/Conversion/Passes.h.inc"
} // namespace paged_attn
} // namespace mlir

using namespace mlir;
using namespace mlir::paged_attn;

namespace {

struct DecodeOpToLoops : public OpRewritePattern<DecodeOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(DecodeOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.hasPureBufferSemantics())
      return rewriter.notifyMatchFailure(op, "expected the memref form");

    ImplicitLocOpBuilder b(op.getLoc(), rewriter);
    Type f32 = b.getF32Type();
    Type elemType = op.getElementType();
    auto index = [&](int64_t v) -> Value {
      return arith::ConstantIndexOp::create(b, v);
    };
    auto toF32 = [&](Value v) -> Value {
      return elemType.isF32() ? v : arith::ExtFOp::create(b, f32, v);
    };
    Value zero = index(0), one = index(1);
    Value headDim = index(op.getHeadDim());
    Value pageSize = index(op.getPageSize());
    Value groupSize = index(op.getNumHeads() / op.getNumKVHeads());
    Value scale =
        arith::ConstantOp::create(b, b.getF32FloatAttr(op.getEffectiveScale()));
    Value f32Zero = arith::ConstantOp::create(b, b.getF32FloatAttr(0.0));
    Value negInf = arith::ConstantOp::create(
        b, b.getF32FloatAttr(-std::numeric_limits<float>::infinity()));
    DecodeSpec spec = getDecodeSpec(op);
    ScoreArgs args;
    if (std::optional<int64_t> window = op.getWindow())
      args.window = index(*window);
    if (FloatAttr cap = op.getSoftCapAttr())
      args.softCap = arith::ConstantOp::create(b, cap);
    args.alibiSlopes = op.getAlibiSlopes();
    args.treeMask = op.getTreeMask();
    ScoreMath cpuMath;
    cpuMath.exp2 = [](ImplicitLocOpBuilder &b, Value x) -> Value {
      return math::Exp2Op::create(b, x);
    };
    cpuMath.reciprocal = [](ImplicitLocOpBuilder &b, Value x) -> Value {
      return arith::DivFOp::create(
          b, arith::ConstantOp::create(b, b.getF32FloatAttr(1.0)), x);
    };
    ScoreModifiers rules(spec, args, cpuMath);
    Value acc =
        memref::AllocaOp::create(b, MemRefType::get({op.getHeadDim()}, f32));

    // Element d of row `token` of sequence `batch`, KV head `kvHead` of a
    // cache, as f32: an fp8 cache's times its scale (KVDequant).
    auto loadCacheValue = [&](Value cache, Value scales, Value batch,
                              Value token, Value kvHead, Value d) -> Value {
      Value logicalPage = arith::DivUIOp::create(b, token, pageSize);
      Value slot = arith::RemUIOp::create(b, token, pageSize);
      Value page = arith::IndexCastOp::create(
          b, b.getIndexType(),
          memref::LoadOp::create(b, op.getBlockTable(),
                                 ValueRange{batch, logicalPage}));
      std::array<Value, 4> index =
          ::paged_attn::cacheIndex(spec.layout, page, slot, kvHead, d);
      Value x = memref::LoadOp::create(b, cache, index);
      if (!spec.kvQuant)
        return toF32(x);
      return arith::MulFOp::create(
          b, fp8ToF32(b, x, spec.kvQuant->dtype),
          loadKVScale(b, spec, scales, page, slot, kvHead));
    };
    Value batchSize = memref::DimOp::create(b, op.getQ(), 0);
    auto batchLoop = scf::ForOp::create(b, zero, batchSize, one);
    b.setInsertionPointToStart(batchLoop.getBody());
    Value batch = batchLoop.getInductionVar();
    Value seqLen = arith::IndexCastOp::create(
        b, b.getIndexType(),
        memref::LoadOp::create(b, op.getSeqLens(), ValueRange{batch}));
    // A multi-token decode's new queries, each with its own keys.
    Value query;
    if (op.isMultiToken()) {
      auto queryLoop = scf::ForOp::create(b, zero, index(op.getQueryLen()), one);
      b.setInsertionPointToStart(queryLoop.getBody());
      query = queryLoop.getInductionVar();
    }
    Value keyEnd = rules.queryKeyEnd(b, seqLen, query);
    auto headLoop = scf::ForOp::create(b, zero, index(op.getNumHeads()), one);
    b.setInsertionPointToStart(headLoop.getBody());
    Value head = headLoop.getInductionVar();
    Value kvHead = arith::DivUIOp::create(b, head, groupSize);
    Value slope = rules.headSlope(b, head);
    Value firstKey = rules.firstVisibleKey(b, keyEnd);
    if (!firstKey)
      firstKey = zero;
    // The query's row of q, out and the log-sum-exp: (batch, head) or, multi-
    // token, (batch, query, head); then `rest`.
    auto row = [&](ValueRange rest) {
      SmallVector<Value> indices = {batch};
      if (query)
        indices.push_back(query);
      indices.push_back(head);
      indices.append(rest.begin(), rest.end());
      return indices;
    };

    // The rules on scale * q[row, :] . K[token, :]; -inf for a key the tree
    // mask hides.
    auto logit = [&](Value token) -> Value {
      auto dot = scf::ForOp::create(b, zero, headDim, one, ValueRange{f32Zero});
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(dot.getBody());
      Value d = dot.getInductionVar();
      Value qv = toF32(memref::LoadOp::create(b, op.getQ(), row({d})));
      Value kv = loadCacheValue(op.getKCache(), op.getKScale(), batch, token,
                                kvHead, d);
      scf::YieldOp::create(b, ValueRange{math::FmaOp::create(
                                  b, qv, kv, dot.getRegionIterArgs()[0])});
      b.setInsertionPointAfter(dot);
      Value score = arith::MulFOp::create(b, dot.getResult(0), scale);
      if (!rules.empty())
        score = rules.apply(b, score, ScorePosition{token, keyEnd, slope});
      if (Value allowed =
              rules.treeMaskAllows(b, batch, query, token, seqLen))
        score = arith::SelectOp::create(b, allowed, score, negInf);
      return score;
    };

    // Pass 1: the largest logit.
    auto maxLoop =
        scf::ForOp::create(b, firstKey, keyEnd, one, ValueRange{negInf});
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(maxLoop.getBody());
      Value s = logit(maxLoop.getInductionVar());
      scf::YieldOp::create(b, ValueRange{arith::MaximumFOp::create(
                                  b, maxLoop.getRegionIterArgs()[0], s)});
    }
    Value max = maxLoop.getResult(0);

    // Pass 2: sum of exponentials and the weighted sum of V rows.
    auto clear = scf::ForOp::create(b, zero, headDim, one);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(clear.getBody());
      memref::StoreOp::create(b, f32Zero, acc,
                              ValueRange{clear.getInductionVar()});
    }
    auto sumLoop =
        scf::ForOp::create(b, firstKey, keyEnd, one, ValueRange{f32Zero});
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(sumLoop.getBody());
      Value token = sumLoop.getInductionVar();
      Value s = logit(token);
      Value p = math::ExpOp::create(b, arith::SubFOp::create(b, s, max));
      // A hidden key weighs 0, also where every key is hidden (max -inf,
      // s - max NaN).
      if (op.getTreeMask())
        p = arith::SelectOp::create(
            b,
            arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, s, negInf),
            f32Zero, p);
      auto dLoop = scf::ForOp::create(b, zero, headDim, one);
      {
        OpBuilder::InsertionGuard g2(b);
        b.setInsertionPointToStart(dLoop.getBody());
        Value d = dLoop.getInductionVar();
        Value v = loadCacheValue(op.getVCache(), op.getVScale(), batch, token,
                                 kvHead, d);
        Value a = memref::LoadOp::create(b, acc, ValueRange{d});
        memref::StoreOp::create(b, math::FmaOp::create(b, p, v, a), acc,
                                ValueRange{d});
      }
      scf::YieldOp::create(b, ValueRange{arith::AddFOp::create(
                                  b, sumLoop.getRegionIterArgs()[0], p)});
    }
    Value sum = sumLoop.getResult(0);
    Value nonEmpty =
        arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, sum, f32Zero);
    Value denominator = sum;
    if (Value sinks = op.getSinks()) {
      Value sink = memref::LoadOp::create(b, sinks, ValueRange{head});
      denominator = arith::AddFOp::create(
          b, sum, math::ExpOp::create(b, arith::SubFOp::create(b, sink, max)));
    }
    Value inv = arith::SelectOp::create(
        b, nonEmpty,
        arith::DivFOp::create(
            b, arith::ConstantOp::create(b, b.getF32FloatAttr(1.0)),
            denominator),
        f32Zero);
    if (Value lseOut = op.getLseOut()) {
      Value lse = arith::SelectOp::create(
          b, nonEmpty, arith::AddFOp::create(b, max, math::LogOp::create(b, sum)),
          negInf);
      memref::StoreOp::create(b, lse, lseOut, row({}));
    }
    auto writeLoop = scf::ForOp::create(b, zero, headDim, one);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(writeLoop.getBody());
      Value d = writeLoop.getInductionVar();
      Value r = arith::MulFOp::create(
          b, memref::LoadOp::create(b, acc, ValueRange{d}), inv);
      if (!elemType.isF32())
        r = arith::TruncFOp::create(b, elemType, r);
      memref::StoreOp::create(b, r, op.getOut(), row({d}));
    }
    rewriter.eraseOp(op);
    return success();
  }
};

/// paged_attn.merge: per sequence and head, the largest partial
/// log-sum-exp m (a reference of 0 where every partial is empty), then per
/// column the partials weighted by e^(lse_n - m) over their sum (plus the
/// sink's e^(sink - m)); the log-sum-exp m + log(sum), -inf when empty.
struct MergeOpToLoops : public OpRewritePattern<MergeOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(MergeOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.hasPureBufferSemantics())
      return rewriter.notifyMatchFailure(op, "expected the memref form");
    ImplicitLocOpBuilder b(op.getLoc(), rewriter);
    Type f32 = b.getF32Type();
    Type elemType = op.getPartialOutType().getElementType();
    auto index = [&](int64_t v) -> Value {
      return arith::ConstantIndexOp::create(b, v);
    };
    auto f32Const = [&](double v) -> Value {
      return arith::ConstantOp::create(b, b.getF32FloatAttr(v));
    };
    Value zero = index(0), one = index(1);
    Value f32Zero = f32Const(0.0);
    Value negInf = f32Const(-std::numeric_limits<double>::infinity());
    Value parts = op.getPartialOut(), lses = op.getPartialLse();
    Value numParts = memref::DimOp::create(b, parts, 0);
    Value batchSize = memref::DimOp::create(b, parts, 1);

    auto batchLoop = scf::ForOp::create(b, zero, batchSize, one);
    b.setInsertionPointToStart(batchLoop.getBody());
    Value batch = batchLoop.getInductionVar();
    auto headLoop = scf::ForOp::create(b, zero, index(op.getNumHeads()), one);
    b.setInsertionPointToStart(headLoop.getBody());
    Value head = headLoop.getInductionVar();
    auto lseOf = [&](Value n) -> Value {
      return memref::LoadOp::create(b, lses, ValueRange{n, batch, head});
    };

    auto maxLoop = scf::ForOp::create(b, zero, numParts, one, ValueRange{negInf});
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(maxLoop.getBody());
      scf::YieldOp::create(
          b, ValueRange{arith::MaximumFOp::create(
                 b, maxLoop.getRegionIterArgs()[0],
                 lseOf(maxLoop.getInductionVar()))});
    }
    Value max = maxLoop.getResult(0);
    Value ref = arith::SelectOp::create(
        b, arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, max, negInf),
        f32Zero, max);
    auto weightOf = [&](Value n) -> Value {
      return math::ExpOp::create(b, arith::SubFOp::create(b, lseOf(n), ref));
    };
    auto sumLoop = scf::ForOp::create(b, zero, numParts, one, ValueRange{f32Zero});
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(sumLoop.getBody());
      scf::YieldOp::create(
          b, ValueRange{arith::AddFOp::create(b, sumLoop.getRegionIterArgs()[0],
                                              weightOf(sumLoop.getInductionVar()))});
    }
    Value sum = sumLoop.getResult(0);
    Value denominator = sum;
    if (Value sinks = op.getSinks())
      denominator = arith::AddFOp::create(
          b, sum,
          math::ExpOp::create(
              b, arith::SubFOp::create(
                     b, memref::LoadOp::create(b, sinks, ValueRange{head}),
                     ref)));
    Value nonEmpty =
        arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, sum, f32Zero);
    Value inv = arith::SelectOp::create(
        b, nonEmpty, arith::DivFOp::create(b, f32Const(1.0), denominator),
        f32Zero);
    if (Value lseOut = op.getLseOut()) {
      Value lse = arith::SelectOp::create(
          b, nonEmpty, arith::AddFOp::create(b, ref, math::LogOp::create(b, sum)),
          negInf);
      memref::StoreOp::create(b, lse, lseOut, ValueRange{batch, head});
    }

    auto columnLoop = scf::ForOp::create(b, zero, index(op.getHeadDim()), one);
    b.setInsertionPointToStart(columnLoop.getBody());
    Value d = columnLoop.getInductionVar();
    auto accLoop = scf::ForOp::create(b, zero, numParts, one, ValueRange{f32Zero});
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(accLoop.getBody());
      Value n = accLoop.getInductionVar();
      Value x = memref::LoadOp::create(b, parts, ValueRange{n, batch, head, d});
      if (!elemType.isF32())
        x = arith::ExtFOp::create(b, f32, x);
      scf::YieldOp::create(b, ValueRange{math::FmaOp::create(
                                  b, weightOf(n), x,
                                  accLoop.getRegionIterArgs()[0])});
    }
    Value r = arith::MulFOp::create(b, accLoop.getResult(0), inv);
    if (!elemType.isF32())
      r = arith::TruncFOp::create(b, elemType, r);
    memref::StoreOp::create(b, r, op.getOut(), ValueRange{batch, head, d});
    rewriter.eraseOp(op);
    return success();
  }
};

struct ConvertPagedAttnToLoopsPass
    : public mlir::paged_attn::impl::ConvertPagedAttnToLoopsBase<
          ConvertPagedAttnToLoopsPass> {
  void runOnOperation() override {
    WalkResult walk = getOperation()->walk([](Operation *op) {
      bool tensorForm = false;
      if (auto decode = dyn_cast<DecodeOp>(op))
        tensorForm = !decode.hasPureBufferSemantics();
      else if (auto merge = dyn_cast<MergeOp>(op))
        tensorForm = !merge.hasPureBufferSemantics();
      else if (auto append = dyn_cast<AppendOp>(op))
        tensorForm = !append.hasPureBufferSemantics();
      if (!tensorForm)
        return WalkResult::advance();
      op->emitOpError("must be bufferized (memref form) before "
                      "convert-paged-attn-to-loops");
      return WalkResult::interrupt();
    });
    if (walk.wasInterrupted())
      return signalPassFailure();
    RewritePatternSet patterns(&getContext());
    populatePagedAttnToLoopsPatterns(patterns);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace

void mlir::paged_attn::populatePagedAttnToLoopsPatterns(
    RewritePatternSet &patterns) {
  patterns.add<DecodeOpToLoops, MergeOpToLoops>(patterns.getContext());
  populateAppendToLoopsPatterns(patterns);
}
