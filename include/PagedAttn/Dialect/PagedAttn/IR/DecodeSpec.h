//===- DecodeSpec.h - the op as the shared DecodeSpec -----------*- C++ -*-===//
//
// Between the dialect and the LLVM-free description of a decode every layer
// shares (PagedAttn/Spec): a decode op's spec, and the MLIR spelling of the
// spec's dtypes and layouts. Kept out of PagedAttn.h: the spec lives in the
// top-level `paged_attn` namespace, which would make `paged_attn::` ambiguous
// in code that says `using namespace mlir`.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_DIALECT_PAGEDATTN_IR_DECODESPEC_H
#define PAGEDATTN_DIALECT_PAGEDATTN_IR_DECODESPEC_H

#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttn.h"
#include "PagedAttn/Spec/AppendSpec.h"
#include "PagedAttn/Spec/DecodeSpec.h"
#include "PagedAttn/Spec/KernelABI.h"
#include "PagedAttn/Spec/TargetInfo.h"

#include <optional>

namespace mlir {
namespace paged_attn {
using ::paged_attn::DecodeSpec;
using ::paged_attn::DecodeVariants;
using ::paged_attn::DType;
using ::paged_attn::Layout;

/// What `op` computes: its sizes (static once the op verifies), dtype,
/// layout and variants.
DecodeSpec getDecodeSpec(DecodeOp op);
/// The granularity of an op's k_scale and v_scale, by the rank of `scale`
/// (per tensor where there is none).
::paged_attn::KVScaleKind getKVScaleKind(Value scale);
/// The variants `op` asks for (its window, soft_cap, alibi_slopes, sinks
/// and log-sum-exp output).
DecodeVariants getDecodeVariants(DecodeOp op);
/// What `op` writes: its sizes (static once the op verifies), dtype, layout
/// and the caches' quantisation.
::paged_attn::AppendSpec getAppendSpec(AppendOp op);
/// What `op` merges: its sizes (static once the op verifies), dtype, sinks
/// and log-sum-exp output; natural log-sum-exps.
::paged_attn::MergeSpec getMergeSpec(MergeOp op);

/// The spec's dtype of an MLIR element type, if it is one of them.
std::optional<DType> toDType(Type type);
/// The MLIR element type of a dtype.
Type toMLIRType(MLIRContext *ctx, DType dtype);
/// The attribute's layout as the spec names it, and back.
Layout toLayout(KVLayout layout);
KVLayout toKVLayout(Layout layout);

} // namespace paged_attn
} // namespace mlir

#endif // PAGEDATTN_DIALECT_PAGEDATTN_IR_DECODESPEC_H
