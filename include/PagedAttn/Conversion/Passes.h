//===- Passes.h - paged_attn conversion passes ------------------*- C++ -*-===//

#ifndef PAGEDATTN_CONVERSION_PASSES_H
#define PAGEDATTN_CONVERSION_PASSES_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir {
class RewritePatternSet;
namespace paged_attn {

#define GEN_PASS_DECL
#include "PagedAttn/Conversion/Passes.h.inc"

/// Rewrites memref-form paged_attn.decode, merge and append ops into scf
/// loops.
void populatePagedAttnToLoopsPatterns(RewritePatternSet &patterns);

#define GEN_PASS_REGISTRATION
#include "PagedAttn/Conversion/Passes.h.inc"

} // namespace paged_attn
} // namespace mlir

#endif // PAGEDATTN_CONVERSION_PASSES_H
