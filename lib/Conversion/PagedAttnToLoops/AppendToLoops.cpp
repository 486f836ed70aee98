//===- AppendToLoops.cpp - paged_attn.append to scalar loops --------------===//
//
// The reference semantics of append: for every new token whose slot lies in
// the cache, and every KV head, its K row and its V row go to the cache row
// the slot names, element by element; into an fp8 cache as the codes of the
// values times the reciprocal of their scale, the per-token scale computed
// from the row's largest magnitude first and stored (KVDequant, shared with
// the kernel).
//
//===----------------------------------------------------------------------===//

#include "AppendToLoops.h"

#include "PagedAttn/Conversion/KVDequant.h"
#include "PagedAttn/Dialect/PagedAttn/IR/DecodeSpec.h"
#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttn.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

using namespace mlir;
using namespace mlir::paged_attn;

namespace {

/// One of the two rows a token writes per KV head: K's or V's.
struct RowStream {
  Value source, cache, scales;
};

struct AppendOpToLoops : public OpRewritePattern<AppendOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(AppendOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.hasPureBufferSemantics())
      return rewriter.notifyMatchFailure(op, "expected the memref form");
    ImplicitLocOpBuilder b(op.getLoc(), rewriter);
    ::paged_attn::AppendSpec spec = getAppendSpec(op);
    auto index = [&](int64_t v) -> Value {
      return arith::ConstantIndexOp::create(b, v);
    };
    Value zero = index(0), one = index(1);
    Value pageSize = index(spec.pageSize);
    // Slots at or past num_pages * page are outside the cache.
    Value capacity = arith::IndexCastOp::create(
        b, b.getI64Type(),
        arith::MulIOp::create(b, memref::DimOp::create(b, op.getKCache(), 0),
                              pageSize));
    Value tokens = memref::DimOp::create(b, op.getK(), 0);
    auto tokenLoop = scf::ForOp::create(b, zero, tokens, one);
    b.setInsertionPointToStart(tokenLoop.getBody());
    Value token = tokenLoop.getInductionVar();
    Value slot = memref::LoadOp::create(b, op.getSlotMapping(), token);
    Value i64Zero = arith::ConstantIntOp::create(b, b.getI64Type(), 0);
    Value inCache = arith::AndIOp::create(
        b, arith::CmpIOp::create(b, arith::CmpIPredicate::sge, slot, i64Zero),
        arith::CmpIOp::create(b, arith::CmpIPredicate::slt, slot, capacity));
    auto ifInCache = scf::IfOp::create(b, inCache, /*withElse=*/false);
    b.setInsertionPointToStart(ifInCache.thenBlock());
    Value slotIndex = arith::IndexCastOp::create(b, b.getIndexType(), slot);
    Value page = arith::DivUIOp::create(b, slotIndex, pageSize);
    Value offset = arith::RemUIOp::create(b, slotIndex, pageSize);
    auto headLoop = scf::ForOp::create(b, zero, index(spec.numKVHeads), one);
    b.setInsertionPointToStart(headLoop.getBody());
    Value kvHead = headLoop.getInductionVar();
    for (RowStream row : {RowStream{op.getK(), op.getKCache(), op.getKScale()},
                          RowStream{op.getV(), op.getVCache(), op.getVScale()}})
      writeRow(b, spec, row, token, page, offset, kvHead);
    rewriter.eraseOp(op);
    return success();
  }

  /// Row (token, kvHead) of `row.source` into the cache row (page, offset,
  /// kvHead).
  static void writeRow(ImplicitLocOpBuilder &b,
                       const ::paged_attn::AppendSpec &spec,
                       const RowStream &row, Value token, Value page,
                       Value offset, Value kvHead) {
    Value zero = arith::ConstantIndexOp::create(b, 0);
    Value one = arith::ConstantIndexOp::create(b, 1);
    Value headDim = arith::ConstantIndexOp::create(b, spec.headDim);
    auto cacheIndex = [&](Value d) {
      return ::paged_attn::cacheIndex(spec.layout, page, offset, kvHead, d);
    };
    auto sourceAt = [&](Value d) -> Value {
      return memref::LoadOp::create(b, row.source,
                                    ValueRange{token, kvHead, d});
    };
    Type f32 = b.getF32Type();
    auto sourceF32At = [&](Value d) -> Value {
      return arith::ExtFOp::create(b, f32, sourceAt(d));
    };
    if (!spec.kvQuant) {
      auto loop = scf::ForOp::create(b, zero, headDim, one);
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(loop.getBody());
      Value d = loop.getInductionVar();
      memref::StoreOp::create(b, sourceAt(d), row.cache, cacheIndex(d));
      return;
    }
    ::paged_attn::DType format = spec.kvQuant->dtype;
    Value scale;
    if (spec.kvQuant->scale == ::paged_attn::KVScaleKind::Token) {
      // The row's largest magnitude (NaN-propagating), then its scale.
      Value init = arith::ConstantOp::create(b, b.getF32FloatAttr(0.0f));
      auto loop = scf::ForOp::create(b, zero, headDim, one, ValueRange{init});
      {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(loop.getBody());
        Value magnitude =
            math::AbsFOp::create(b, sourceF32At(loop.getInductionVar()));
        scf::YieldOp::create(b, ValueRange{arith::MaximumFOp::create(
                                    b, loop.getRegionIterArg(0), magnitude)});
      }
      scale = tokenScale(b, loop.getResult(0), format);
      std::array<Value, 4> index = cacheIndex(Value());
      memref::StoreOp::create(b, scale, row.scales,
                              ValueRange{index[0], index[1], index[2]});
    } else {
      scale = loadKVScale(b, spec.kvQuant->scale, spec.layout, row.scales, page,
                          offset, kvHead);
    }
    Value reciprocal = arith::DivFOp::create(
        b, arith::ConstantOp::create(b, b.getF32FloatAttr(1.0f)), scale);
    auto loop = scf::ForOp::create(b, zero, headDim, one);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    Value d = loop.getInductionVar();
    Value code = fp8FromF32(
        b, arith::MulFOp::create(b, sourceF32At(d), reciprocal), format);
    Type cacheType = cast<MemRefType>(row.cache.getType()).getElementType();
    memref::StoreOp::create(b, arith::BitcastOp::create(b, cacheType, code),
                            row.cache, cacheIndex(d));
  }
};

} // namespace

void mlir::paged_attn::populateAppendToLoopsPatterns(
    RewritePatternSet &patterns) {
  patterns.add<AppendOpToLoops>(patterns.getContext());
}
