//===- BufferizableOpInterfaceImpl.cpp - paged_attn bufferization ---------===//
//
// The tensor forms of paged_attn.decode and merge read their operands and
// return new tensors; they bufferize to the memref form writing fresh
// allocations. paged_attn.append returns the caches it writes; it bufferizes
// in place, to the memref form writing the caches' buffers.
//
//===----------------------------------------------------------------------===//

#include "PagedAttn/Dialect/PagedAttn/Transforms/BufferizableOpInterfaceImpl.h"
#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttn.h"

#include "mlir/Dialect/Bufferization/IR/BufferizableOpInterface.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/DialectRegistry.h"

using namespace mlir;
using namespace mlir::bufferization;
using namespace mlir::paged_attn;

namespace {

/// The kernels load rows as vectors, so the memref form requires a static
/// unit innermost stride. Buffers whose layout does not say so (for example
/// function arguments bufferized with fully dynamic layouts) are cast to a
/// layout with dynamic outer strides and a unit innermost stride.
static Value castToUnitInnermostStride(RewriterBase &rewriter, Location loc,
                                       Value buffer) {
  auto type = cast<MemRefType>(buffer.getType());
  SmallVector<int64_t> strides;
  int64_t offset;
  if (succeeded(type.getStridesAndOffset(strides, offset)) &&
      (strides.empty() || strides.back() == 1))
    return buffer;
  SmallVector<int64_t> castStrides(type.getRank(), ShapedType::kDynamic);
  castStrides.back() = 1;
  auto layout = StridedLayoutAttr::get(rewriter.getContext(),
                                       ShapedType::kDynamic, castStrides);
  auto castType = MemRefType::get(type.getShape(), type.getElementType(),
                                  layout, type.getMemorySpace());
  return memref::CastOp::create(rewriter, loc, castType, buffer);
}

/// What the tensor forms of decode and merge share: they read every
/// operand, write none, and return fresh buffers.
template <typename ConcreteModel, typename OpTy>
struct ReadsOperandsReturnsNewBuffers
    : public BufferizableOpInterface::ExternalModel<ConcreteModel, OpTy> {
  bool bufferizesToMemoryRead(Operation *, OpOperand &,
                              const AnalysisState &) const {
    return true;
  }

  bool bufferizesToMemoryWrite(Operation *, OpOperand &,
                               const AnalysisState &) const {
    return false;
  }

  AliasingValueList getAliasingValues(Operation *, OpOperand &,
                                      const AnalysisState &) const {
    return {};
  }

  bool bufferizesToAllocation(Operation *, Value) const { return true; }
};

/// A new buffer for the tensor `result`, whose dynamic first dimension (the
/// batch) is dim `batchDim` of `shapeSource`.
static FailureOr<Value> allocateResult(RewriterBase &rewriter, Location loc,
                                       const BufferizationOptions &options,
                                       Value result, Value shapeSource,
                                       int64_t batchDim) {
  auto type = cast<RankedTensorType>(result.getType());
  auto bufferType = MemRefType::get(type.getShape(), type.getElementType());
  SmallVector<Value> dynamicSizes;
  for (int64_t dim = 0; dim < type.getRank(); ++dim)
    if (type.isDynamicDim(dim))
      dynamicSizes.push_back(memref::DimOp::create(
          rewriter, loc, shapeSource, dim == 0 ? batchDim : dim));
  return options.createAlloc(rewriter, loc, bufferType, dynamicSizes);
}

struct DecodeOpInterface
    : public ReadsOperandsReturnsNewBuffers<DecodeOpInterface, DecodeOp> {

  LogicalResult bufferize(Operation *op, RewriterBase &rewriter,
                          const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto decodeOp = cast<DecodeOp>(op);
    if (!decodeOp.hasPureTensorSemantics())
      return success();
    Location loc = op->getLoc();
    rewriter.setInsertionPoint(op);

    auto bufferOf = [&](Value tensor) -> FailureOr<Value> {
      if (!tensor)
        return Value();
      return getBuffer(rewriter, tensor, options, state);
    };
    Value inputs[] = {decodeOp.getQ(),       decodeOp.getKCache(),
                      decodeOp.getVCache(),  decodeOp.getBlockTable(),
                      decodeOp.getSeqLens(), decodeOp.getAlibiSlopes(),
                      decodeOp.getSinks(),   decodeOp.getTreeMask(),
                      decodeOp.getKScale(),  decodeOp.getVScale()};
    SmallVector<Value> buffers;
    for (Value input : inputs) {
      FailureOr<Value> buffer = bufferOf(input);
      if (failed(buffer))
        return failure();
      buffers.push_back(*buffer);
    }
    // q, k_cache, v_cache are loaded as vectors.
    for (unsigned i = 0; i < 3; ++i)
      buffers[i] = castToUnitInnermostStride(rewriter, loc, buffers[i]);

    // The results' batch is q's.
    auto allocFor = [&](Value result) {
      return allocateResult(rewriter, loc, options, result, buffers[0], 0);
    };
    FailureOr<Value> out = allocFor(decodeOp.getResult());
    if (failed(out))
      return failure();
    SmallVector<Value> results = {*out};
    Value lseOut;
    if (decodeOp.getLse()) {
      FailureOr<Value> lse = allocFor(decodeOp.getLse());
      if (failed(lse))
        return failure();
      lseOut = *lse;
      results.push_back(lseOut);
    }

    DecodeOp::create(rewriter, loc, /*result=*/Type(), /*lse=*/Type(),
                     buffers[0], buffers[1], buffers[2], buffers[3], buffers[4],
                     buffers[5], buffers[6], buffers[7], buffers[8], buffers[9],
                     *out, lseOut, decodeOp.getLayoutAttr(),
                     decodeOp.getScaleAttr(), decodeOp.getWindowAttr(),
                     decodeOp.getSoftCapAttr());
    replaceOpWithBufferizedValues(rewriter, op, results);
    return success();
  }
};

/// The tensor form of paged_attn.merge: new buffers for its results, the
/// batch from partial_out's dim 1.
struct MergeOpInterface
    : public ReadsOperandsReturnsNewBuffers<MergeOpInterface, MergeOp> {

  LogicalResult bufferize(Operation *op, RewriterBase &rewriter,
                          const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto mergeOp = cast<MergeOp>(op);
    if (!mergeOp.hasPureTensorSemantics())
      return success();
    Location loc = op->getLoc();
    rewriter.setInsertionPoint(op);
    SmallVector<Value> buffers;
    for (Value input : {mergeOp.getPartialOut(), mergeOp.getPartialLse(),
                        mergeOp.getSinks()}) {
      if (!input) {
        buffers.push_back(Value());
        continue;
      }
      FailureOr<Value> buffer = getBuffer(rewriter, input, options, state);
      if (failed(buffer))
        return failure();
      buffers.push_back(*buffer);
    }
    // Partial rows are loaded as vectors.
    buffers[0] = castToUnitInnermostStride(rewriter, loc, buffers[0]);
    // The results' batch is partial_out's dim 1.
    auto allocFor = [&](Value result) {
      return allocateResult(rewriter, loc, options, result, buffers[0], 1);
    };
    FailureOr<Value> out = allocFor(mergeOp.getResult());
    if (failed(out))
      return failure();
    SmallVector<Value> results = {*out};
    Value lseOut;
    if (mergeOp.getLse()) {
      FailureOr<Value> lse = allocFor(mergeOp.getLse());
      if (failed(lse))
        return failure();
      lseOut = *lse;
      results.push_back(lseOut);
    }
    MergeOp::create(rewriter, loc, /*result=*/Type(), /*lse=*/Type(),
                    buffers[0], buffers[1], buffers[2], *out, lseOut);
    replaceOpWithBufferizedValues(rewriter, op, results);
    return success();
  }
};

/// The tensor form of paged_attn.append: each updated cache (and per-token
/// scale cache) is its operand's buffer, written in place.
struct AppendOpInterface
    : public BufferizableOpInterface::ExternalModel<AppendOpInterface,
                                                    AppendOp> {
  /// The result that `operand` becomes, if the op writes it.
  static std::optional<unsigned> resultOf(AppendOp op, OpOperand &operand) {
    SmallVector<Value> updated = op.getUpdatedOperands();
    auto *it = llvm::find(updated, operand.get());
    if (it == updated.end())
      return std::nullopt;
    return unsigned(it - updated.begin());
  }

  bool bufferizesToMemoryRead(Operation *, OpOperand &,
                              const AnalysisState &) const {
    // The caches' other rows are kept: conservatively, read as well.
    return true;
  }

  bool bufferizesToMemoryWrite(Operation *op, OpOperand &operand,
                               const AnalysisState &) const {
    return resultOf(cast<AppendOp>(op), operand).has_value();
  }

  AliasingValueList getAliasingValues(Operation *op, OpOperand &operand,
                                      const AnalysisState &) const {
    std::optional<unsigned> result = resultOf(cast<AppendOp>(op), operand);
    if (!result)
      return {};
    return {{op->getResult(*result), BufferRelation::Equivalent}};
  }

  LogicalResult bufferize(Operation *op, RewriterBase &rewriter,
                          const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto appendOp = cast<AppendOp>(op);
    if (!appendOp.hasPureTensorSemantics())
      return success();
    Location loc = op->getLoc();
    rewriter.setInsertionPoint(op);
    SmallVector<Value> buffers;
    for (Value input : op->getOperands()) {
      FailureOr<Value> buffer = getBuffer(rewriter, input, options, state);
      if (failed(buffer))
        return failure();
      buffers.push_back(*buffer);
    }
    // The results are the written buffers themselves.
    SmallVector<Value> results = {buffers[3], buffers[4]};
    if (appendOp.writesScales())
      results.append({buffers[5], buffers[6]});
    // k, v and the caches are moved as vectors.
    SmallVector<Value> opBuffers = buffers;
    for (unsigned i : {0u, 1u, 3u, 4u})
      opBuffers[i] = castToUnitInnermostStride(rewriter, loc, buffers[i]);
    Value kScale = appendOp.getKScale() ? opBuffers[5] : Value();
    Value vScale = appendOp.getVScale() ? opBuffers[6] : Value();
    AppendOp::create(rewriter, loc, TypeRange{}, opBuffers[0], opBuffers[1],
                     opBuffers[2], opBuffers[3], opBuffers[4], kScale, vScale,
                     appendOp.getLayoutAttr());
    replaceOpWithBufferizedValues(rewriter, op, results);
    return success();
  }
};

} // namespace

void mlir::paged_attn::registerBufferizableOpInterfaceExternalModels(
    DialectRegistry &registry) {
  registry.addExtension(+[](MLIRContext *ctx, PagedAttnDialect *) {
    DecodeOp::attachInterface<DecodeOpInterface>(*ctx);
    MergeOp::attachInterface<MergeOpInterface>(*ctx);
    AppendOp::attachInterface<AppendOpInterface>(*ctx);
  });
}
