//===- DecodeKernelBuilders.h - one builder per kernel ----------*- C++ -*-===//
//
// Private to the PagedAttnToGPU conversion: the kernels DecodeKernels.cpp
// dispatches to, one file each.
//
//===----------------------------------------------------------------------===//

#ifndef LIB_CONVERSION_PAGEDATTNTOGPU_DECODEKERNELBUILDERS_H
#define LIB_CONVERSION_PAGEDATTNTOGPU_DECODEKERNELBUILDERS_H

#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernelConfig.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"

namespace mlir {
namespace paged_attn {

/// CudaCoreDecodeKernel.cpp: a lane group per token on the CUDA cores.
gpu::GPUFuncOp buildCudaCoreDecodeKernel(OpBuilder &builder,
                                         gpu::GPUModuleOp module,
                                         const DecodeKernelConfig &c);
/// TensorCoreDecodeKernel.cpp: mma.sync over the query group; same
/// arguments and grid as the CUDA-core kernel.
gpu::GPUFuncOp buildTensorCoreDecodeKernel(OpBuilder &builder,
                                           gpu::GPUModuleOp module,
                                           const DecodeKernelConfig &c);
/// MergeKernel.cpp: combines partial results (a split decode's, or the
/// merge op's).
gpu::GPUFuncOp buildMergeKernel(OpBuilder &builder, gpu::GPUModuleOp module,
                                const MergeKernelConfig &c);
/// PageCheckKernel.cpp: the opt-in page-table check.
gpu::GPUFuncOp buildPageCheckKernel(OpBuilder &builder,
                                    gpu::GPUModuleOp module,
                                    const DecodeKernelConfig &c);

} // namespace paged_attn
} // namespace mlir

#endif // LIB_CONVERSION_PAGEDATTNTOGPU_DECODEKERNELBUILDERS_H
