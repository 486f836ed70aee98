//===- DecodeKernels.h - build decode and merge kernels ---------*- C++ -*-===//

#ifndef PAGEDATTN_CONVERSION_PAGEDATTNTOGPU_DECODEKERNELS_H
#define PAGEDATTN_CONVERSION_PAGEDATTNTOGPU_DECODEKERNELS_H

#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernelConfig.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"

namespace mlir {
namespace paged_attn {

/// Kernel argument types (memrefs with dynamic outer strides and offset, so
/// any strided tensor with a unit innermost stride can be passed).
/// Decode kernel:  q, k_cache, v_cache, block_table, seq_lens, out,
///                 partial_out, partial_lse, scale (f32), num_splits (i32).
/// Merge kernel:   partial_out, partial_lse, out, num_splits (i32).
SmallVector<Type> getDecodeKernelArgTypes(MLIRContext *ctx,
                                          const DecodeKernelConfig &config);
SmallVector<Type> getMergeKernelArgTypes(MLIRContext *ctx,
                                         const DecodeKernelConfig &config);

/// Page-table check kernel: block_table, seq_lens, num_pages (i32),
/// first_bad (memref<1xi64>).
SmallVector<Type> getCheckKernelArgTypes(MLIRContext *ctx,
                                         const DecodeKernelConfig &config);

/// Names of the kernel arguments, in order, for manifests and diagnostics.
ArrayRef<StringRef> getDecodeKernelArgNames();
ArrayRef<StringRef> getMergeKernelArgNames();
ArrayRef<StringRef> getCheckKernelArgNames();

/// Returns the decode kernel for `config` in `module`, building it first if
/// the module does not hold it yet.
gpu::GPUFuncOp getOrBuildDecodeKernel(OpBuilder &builder,
                                      gpu::GPUModuleOp module,
                                      const DecodeKernelConfig &config);
/// Same for the kernel that merges split-KV partial results.
gpu::GPUFuncOp getOrBuildMergeKernel(OpBuilder &builder,
                                     gpu::GPUModuleOp module,
                                     const DecodeKernelConfig &config);

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
