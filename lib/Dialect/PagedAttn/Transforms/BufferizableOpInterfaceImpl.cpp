//===- BufferizableOpInterfaceImpl.cpp - paged_attn bufferization ---------===//
//
// The tensor form of paged_attn.decode reads its five operands and returns a
// new tensor; it bufferizes to the memref form writing a fresh allocation.
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

struct DecodeOpInterface
    : public BufferizableOpInterface::ExternalModel<DecodeOpInterface,
                                                    DecodeOp> {
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

  LogicalResult bufferize(Operation *op, RewriterBase &rewriter,
                          const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto decodeOp = cast<DecodeOp>(op);
    if (!decodeOp.hasPureTensorSemantics())
      return success();
    Location loc = op->getLoc();
    rewriter.setInsertionPoint(op);

    SmallVector<Value> buffers;
    for (OpOperand &operand : op->getOpOperands()) {
      FailureOr<Value> buffer =
          getBuffer(rewriter, operand.get(), options, state);
      if (failed(buffer))
        return failure();
      buffers.push_back(*buffer);
    }
    // q, k_cache, v_cache are loaded as vectors.
    for (unsigned i = 0; i < 3; ++i)
      buffers[i] = castToUnitInnermostStride(rewriter, loc, buffers[i]);

    auto resultType = cast<RankedTensorType>(decodeOp.getResult().getType());
    auto outType =
        MemRefType::get(resultType.getShape(), resultType.getElementType());
    SmallVector<Value> dynamicSizes;
    for (int64_t dim = 0; dim < resultType.getRank(); ++dim)
      if (resultType.isDynamicDim(dim))
        dynamicSizes.push_back(
            memref::DimOp::create(rewriter, loc, buffers[0], dim));
    FailureOr<Value> out =
        options.createAlloc(rewriter, loc, outType, dynamicSizes);
    if (failed(out))
      return failure();

    DecodeOp::create(rewriter, loc, /*result=*/Type(), buffers[0], buffers[1],
                     buffers[2], buffers[3], buffers[4], *out,
                     decodeOp.getLayoutAttr(), decodeOp.getScaleAttr());
    replaceOpWithBufferizedValues(rewriter, op, *out);
    return success();
  }
};

} // namespace

void mlir::paged_attn::registerBufferizableOpInterfaceExternalModels(
    DialectRegistry &registry) {
  registry.addExtension(+[](MLIRContext *ctx, PagedAttnDialect *) {
    DecodeOp::attachInterface<DecodeOpInterface>(*ctx);
  });
}
