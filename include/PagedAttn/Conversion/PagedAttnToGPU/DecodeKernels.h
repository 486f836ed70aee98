//===- DecodeKernels.h - build decode, merge and check kernels --*- C++ -*-===//
//
// The kernels a decode lowers to, built into a gpu.module once per config:
// the decode kernel of the config's strategy (CUDA cores or tensor cores),
// the kernel that merges split-KV partial results, and the opt-in
// page-table check. Their parameters are the Spec's kernel ABI
// (PagedAttn/Spec/KernelABI.h).
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_CONVERSION_PAGEDATTNTOGPU_DECODEKERNELS_H
#define PAGEDATTN_CONVERSION_PAGEDATTNTOGPU_DECODEKERNELS_H

#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernelConfig.h"
#include "PagedAttn/Spec/KernelABI.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"

namespace mlir {
namespace paged_attn {

/// The MLIR types of `params` (memrefs with dynamic strides and offset,
/// and a unit innermost stride where the kernel loads vectors, so any
/// strided tensor of that kind can be passed).
SmallVector<Type> getKernelArgTypes(MLIRContext *ctx,
                                    ArrayRef<::paged_attn::KernelParam> params);
/// The argument of kernel `func` (built from `params`) that the Spec's ABI
/// names `name`; null when `params` has no such parameter (a variant the
/// config lacks).
Value getKernelArg(gpu::GPUFuncOp func,
                   ArrayRef<::paged_attn::KernelParam> params, StringRef name);
/// The decode kernel's argument types for `config`.
SmallVector<Type> getDecodeKernelArgTypes(MLIRContext *ctx,
                                          const DecodeKernelConfig &config);

/// Returns the decode kernel for `config` in `module`, building it first if
/// the module does not hold it yet.
gpu::GPUFuncOp getOrBuildDecodeKernel(OpBuilder &builder,
                                      gpu::GPUModuleOp module,
                                      const DecodeKernelConfig &config);
/// Same for the kernel that merges split-KV partial results.
gpu::GPUFuncOp getOrBuildMergeKernel(OpBuilder &builder,
                                     gpu::GPUModuleOp module,
                                     const DecodeKernelConfig &config);
/// Same for a merge kernel of the merge op.
gpu::GPUFuncOp getOrBuildMergeKernel(OpBuilder &builder,
                                     gpu::GPUModuleOp module,
                                     const MergeKernelConfig &config);

/// The opt-in page-table check: grid (batch), one CTA per sequence. Finds
/// the first bad entry in row-major order and atomically keeps the smallest
/// key in first_bad[0] (which the caller sets to INT64_MAX first):
/// key b*(max_pages+1) when seq_lens[b] is negative or beyond the page
/// table's capacity, b*(max_pages+1)+1+j when block_table[b][j] (one of the
/// pages the sequence uses) is outside [0, num_pages).
gpu::GPUFuncOp getOrBuildCheckKernel(OpBuilder &builder,
                                     gpu::GPUModuleOp module,
                                     const DecodeKernelConfig &config);

} // namespace paged_attn
} // namespace mlir

#endif // PAGEDATTN_CONVERSION_PAGEDATTNTOGPU_DECODEKERNELS_H
