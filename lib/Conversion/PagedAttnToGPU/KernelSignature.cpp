//===- KernelSignature.cpp - kernels' arguments from the Spec's ABI -------===//
//
// The kernels' parameters are the Spec's (PagedAttn/Spec/KernelABI.h), which
// the runtime passes and the manifest describes: here they become memref
// and scalar types, and kernels are created with them.
//
//===----------------------------------------------------------------------===//

#include "KernelEmitter.h"
#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernels.h"

using namespace mlir;
using namespace mlir::paged_attn;

/// A memref with the given shape, dynamic offset and outer strides, and a
/// unit innermost stride when `unitInnermost`.
static MemRefType getStridedMemRefType(ArrayRef<int64_t> shape, Type elemType,
                                       bool unitInnermost) {
  SmallVector<int64_t> strides(shape.size(), ShapedType::kDynamic);
  if (unitInnermost)
    strides.back() = 1;
  auto layout = StridedLayoutAttr::get(elemType.getContext(),
                                       ShapedType::kDynamic, strides);
  return MemRefType::get(shape, elemType, layout);
}

SmallVector<Type>
mlir::paged_attn::getKernelArgTypes(MLIRContext *ctx,
                                    ArrayRef<::paged_attn::KernelParam> params) {
  SmallVector<Type> types;
  for (const ::paged_attn::KernelParam &param : params) {
    Type element = toMLIRType(ctx, param.dtype);
    if (!param.isMemRef) {
      types.push_back(element);
      continue;
    }
    SmallVector<int64_t> shape;
    for (int64_t size : param.shape)
      shape.push_back(size == ::paged_attn::kDynamicSize ? ShapedType::kDynamic
                                                         : size);
    types.push_back(
        getStridedMemRefType(shape, element, param.unitInnermostStride));
  }
  return types;
}

Value mlir::paged_attn::getKernelArg(
    gpu::GPUFuncOp func, ArrayRef<::paged_attn::KernelParam> params,
    StringRef name) {
  for (auto [i, param] : llvm::enumerate(params))
    if (name == param.name)
      return func.getArgument(i);
  return Value();
}

SmallVector<Type>
mlir::paged_attn::getDecodeKernelArgTypes(MLIRContext *ctx,
                                          const DecodeKernelConfig &config) {
  return getKernelArgTypes(ctx, ::paged_attn::decodeKernelParams(config.spec));
}

gpu::GPUFuncOp mlir::paged_attn::createKernel(
    OpBuilder &builder, gpu::GPUModuleOp module, StringRef name,
    ArrayRef<Type> argTypes, ArrayRef<Type> workgroupTypes, int64_t blockSize) {
  OpBuilder::InsertionGuard guard(builder);
  builder.setInsertionPointToEnd(module.getBody());
  auto funcType = builder.getFunctionType(argTypes, {});
  auto func = gpu::GPUFuncOp::create(builder, module.getLoc(), name, funcType,
                                     workgroupTypes);
  func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(),
                builder.getUnitAttr());
  func.setKnownBlockSizeAttr(
      builder.getDenseI32ArrayAttr({static_cast<int32_t>(blockSize), 1, 1}));
  for (unsigned i = 0; i < workgroupTypes.size(); ++i)
    func.setWorkgroupAttributionAttr(i, "llvm.align",
                                     builder.getI64IntegerAttr(16));
  return func;
}
