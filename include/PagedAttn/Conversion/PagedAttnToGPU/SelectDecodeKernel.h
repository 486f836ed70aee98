//===- SelectDecodeKernel.h - choosing a decode's kernel strategy -*- C++ -*-===//
//
// paged-attn-select-decode-kernel records each decode op's strategy as
// `paged_attn.strategy`; convert-paged-attn-to-gpu builds it and
// paged-attn-compile reads it back for the manifest. The options' textual
// form (the pass's, also what paged-attn-to-ptx and paged-attn-compile
// forward) is parsed here, once, into DecodeKernelOptions.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_CONVERSION_PAGEDATTNTOGPU_SELECTDECODEKERNEL_H
#define PAGEDATTN_CONVERSION_PAGEDATTNTOGPU_SELECTDECODEKERNEL_H

#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernelConfig.h"

#include "mlir/Pass/Pass.h"

#include <memory>
#include <variant>

namespace mlir {
namespace paged_attn {

/// The discardable attribute a decode op's strategy is kept in.
constexpr StringLiteral kStrategyAttrName = "paged_attn.strategy";

/// The selection pass with typed options (no textual round trip).
std::unique_ptr<Pass>
createSelectDecodeKernelPass(const DecodeKernelOptions &options);

/// Parses the pass's textual options ("kv-stages=2 tensor-cores=off") into
/// typed ones; on failure returns the message, flags named `prefix` +
/// their spelling.
std::variant<DecodeKernelOptions, std::string>
parseDecodeKernelOptionText(StringRef text, StringRef prefix = "");

/// The config `op` is lowered with: its recorded strategy (checked against
/// the op), or the one `options` select. Fails with a diagnostic on the op.
FailureOr<DecodeKernelConfig>
getDecodeKernelConfig(DecodeOp op, const DecodeKernelOptions &options);

} // namespace paged_attn
} // namespace mlir

#endif // PAGEDATTN_CONVERSION_PAGEDATTNTOGPU_SELECTDECODEKERNEL_H
