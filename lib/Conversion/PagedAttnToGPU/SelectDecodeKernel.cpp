//===- SelectDecodeKernel.cpp - choosing a decode's kernel strategy -------===//
//
// The kernel strategy is chosen once per decode op and kept on it, as IREE
// keeps its lowering configuration: the conversion builds what it says and
// the compiler's manifest reads it back, so nothing recomputes it. An append
// into fp8 caches is marked where the target converts to fp8 in hardware.
//
//===----------------------------------------------------------------------===//

#include "PagedAttn/Conversion/PagedAttnToGPU/SelectDecodeKernel.h"
#include "PagedAttn/Conversion/PagedAttnToGPU/AppendKernel.h"
#include "PagedAttn/Conversion/Passes.h"

namespace mlir {
namespace paged_attn {
#define GEN_PASS_DEF_SELECTDECODEKERNEL
#include "PagedAttn/Conversion/Passes.h.inc"
} // namespace paged_attn
} // namespace mlir

using namespace mlir;
using namespace mlir::paged_attn;

FailureOr<DecodeKernelConfig>
mlir::paged_attn::getDecodeKernelConfig(DecodeOp op,
                                        const DecodeKernelOptions &options) {
  MLIRContext *ctx = op.getContext();
  // The kernels read the tree mask as bytes: an i1 memref has no i8 view
  // to pass them.
  if (Value mask = op.getTreeMask();
      mask && !getElementTypeOrSelf(mask.getType()).isInteger(8))
    return op.emitOpError(
        "has an i1 'tree_mask'; the GPU kernels read the mask as bytes: give "
        "it as i8 (a bool tensor's bytes)");
  DecodeSpec spec = getDecodeSpec(op);
  Attribute attr = op->getDiscardableAttr(kStrategyAttrName);
  if (!attr) {
    spec.numWarps = options.numWarps;
    return DecodeKernelConfig::select(ctx, spec, options);
  }
  auto strategyAttr = dyn_cast<DecodeStrategyAttr>(attr);
  if (!strategyAttr)
    return op.emitOpError() << "'" << kStrategyAttrName
                            << "' must be a #paged_attn.decode_strategy, got "
                            << attr;
  spec.numWarps = strategyAttr.getNumWarps();
  DecodeStrategy strategy = DecodeStrategy::fromAttr(strategyAttr);
  if (std::string error = checkStrategy(ctx, spec, spec.numWarps, strategy,
                                        options.sharedMemoryLimit);
      !error.empty())
    return op.emitOpError() << "cannot be built with its strategy: " << error;
  return DecodeKernelConfig::get(ctx, spec, strategy);
}

namespace {
struct SelectDecodeKernelPass
    : public mlir::paged_attn::impl::SelectDecodeKernelBase<
          SelectDecodeKernelPass> {
  using Base::Base;
  // Reads the options the shared list declares (protected in the base).
  template <typename PassT>
  friend DecodeKernelOptionStrings
  mlir::paged_attn::getDecodeKernelOptionStrings(const PassT &);
  explicit SelectDecodeKernelPass(const DecodeKernelOptions &typed)
      : typed(typed) {}

  /// The typed options: as constructed, or parsed from the textual ones.
  std::variant<DecodeKernelOptions, std::string> options() const {
    if (typed)
      return *typed;
    return parseDecodeKernelOptions(getDecodeKernelOptionStrings(*this));
  }

  void runOnOperation() override {
    auto parsed = options();
    if (auto *error = std::get_if<std::string>(&parsed)) {
      getOperation().emitError() << *error;
      return signalPassFailure();
    }
    const DecodeKernelOptions &o = std::get<DecodeKernelOptions>(parsed);
    WalkResult walk = getOperation().walk([&](DecodeOp op) {
      FailureOr<DecodeKernelConfig> config = getDecodeKernelConfig(op, o);
      if (failed(config))
        return WalkResult::interrupt();
      // The conversion builds what the strategy says; the target's
      // instructions are known here.
      if (config->strategy.fp8Conversion && !o.fp8Conversions) {
        op.emitOpError("has a strategy with fp8_conversion, but the target "
                       "has no fp8 conversion instructions (sm_89 with PTX "
                       "8.1, sm_90 with PTX 7.8; fp8-conversions=true)");
        return WalkResult::interrupt();
      }
      op->setDiscardableAttr(kStrategyAttrName,
                             config->strategy.toAttr(op.getContext(),
                                                     config->numWarps()));
      return WalkResult::advance();
    });
    if (walk.wasInterrupted())
      return signalPassFailure();
    // An append into fp8 caches converts in hardware where the target can.
    getOperation().walk([&](AppendOp op) {
      if (o.fp8Conversions && getAppendSpec(op).kvQuant)
        op->setDiscardableAttr(kFp8ConversionAttrName,
                               UnitAttr::get(op.getContext()));
    });
  }

  std::optional<DecodeKernelOptions> typed;
};
} // namespace

std::unique_ptr<Pass> mlir::paged_attn::createSelectDecodeKernelPass(
    const DecodeKernelOptions &options) {
  return std::make_unique<SelectDecodeKernelPass>(options);
}

std::variant<DecodeKernelOptions, std::string>
mlir::paged_attn::parseDecodeKernelOptionText(StringRef text,
                                              StringRef prefix) {
  SelectDecodeKernelPass pass;
  std::string error;
  if (failed(pass.initializeOptions(text, [&](const Twine &message) {
        error = message.str();
        return failure();
      }))) {
    // The options parser names an unknown option in its own words.
    StringRef unknown = StringRef(error).split("no such option ").second;
    if (!unknown.empty())
      return "unknown option '" + prefix.str() + unknown.trim().str() + "'";
    return error.empty() ? "cannot parse '" + text.str() + "'" : error;
  }
  return parseDecodeKernelOptions(getDecodeKernelOptionStrings(pass), prefix);
}
