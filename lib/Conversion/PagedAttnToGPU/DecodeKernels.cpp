//===- DecodeKernels.cpp - a config's kernels, built once per module ------===//
//
// The dispatcher: each kernel of a config is built once per gpu.module, by
// the builder of its file (DecodeKernelBuilders.h), the decode kernel by the
// one its strategy names.
//
//===----------------------------------------------------------------------===//

#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernels.h"
#include "DecodeKernelBuilders.h"
#include "KernelEmitter.h"

using namespace mlir;
using namespace mlir::paged_attn;

gpu::GPUFuncOp mlir::paged_attn::getOrBuildDecodeKernel(
    OpBuilder &builder, gpu::GPUModuleOp module, const DecodeKernelConfig &c) {
  if (gpu::GPUFuncOp existing = lookupKernel(module, c.decodeKernelName()))
    return existing;
  switch (c.strategy.kernel) {
  case DecodeKernelKind::tensor_cores:
    return buildTensorCoreDecodeKernel(builder, module, c);
  case DecodeKernelKind::cuda_cores:
    return buildCudaCoreDecodeKernel(builder, module, c);
  }
  llvm_unreachable("a decode kernel kind without a builder");
}

gpu::GPUFuncOp mlir::paged_attn::getOrBuildMergeKernel(
    OpBuilder &builder, gpu::GPUModuleOp module, const DecodeKernelConfig &c) {
  return getOrBuildMergeKernel(builder, module,
                               c.mergeConfig(builder.getContext()));
}

gpu::GPUFuncOp mlir::paged_attn::getOrBuildMergeKernel(
    OpBuilder &builder, gpu::GPUModuleOp module, const MergeKernelConfig &c) {
  if (gpu::GPUFuncOp existing = lookupKernel(module, c.kernelName))
    return existing;
  return buildMergeKernel(builder, module, c);
}

gpu::GPUFuncOp mlir::paged_attn::getOrBuildCheckKernel(
    OpBuilder &builder, gpu::GPUModuleOp module, const DecodeKernelConfig &c) {
  if (gpu::GPUFuncOp existing = lookupKernel(module, c.checkKernelName()))
    return existing;
  return buildPageCheckKernel(builder, module, c);
}
