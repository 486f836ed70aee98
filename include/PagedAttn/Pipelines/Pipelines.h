//===- Pipelines.h - paged_attn lowering pipelines --------------*- C++ -*-===//

#ifndef PAGEDATTN_PIPELINES_PIPELINES_H
#define PAGEDATTN_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassOptions.h"

#include <string>

namespace mlir {
class OpPassManager;
namespace paged_attn {

struct PagedAttnToPTXOptions
    : public PassPipelineOptions<PagedAttnToPTXOptions> {
  PassOptions::Option<std::string> chip{
      *this, "chip",
      llvm::cl::desc("Target chip: sm_80, sm_89, sm_90 or sm_90a"),
      llvm::cl::init("sm_90")};
  PassOptions::Option<std::string> features{
      *this, "features",
      llvm::cl::desc("PTX features; empty picks the lowest the chip needs"),
      llvm::cl::init("")};
  PassOptions::Option<int> optLevel{
      *this, "opt-level", llvm::cl::desc("LLVM optimization level (0-3)"),
      llvm::cl::init(3)};
  PassOptions::Option<int64_t> numWarps{
      *this, "num-warps", llvm::cl::desc("Warps per CTA of the decode kernel"),
      llvm::cl::init(4)};
  PassOptions::Option<int64_t> tokensPerLaneGroup{
      *this, "tokens-per-lane-group",
      llvm::cl::desc("Tokens a lane group loads per loop iteration (0: auto)"),
      llvm::cl::init(0)};
  PassOptions::Option<int64_t> maxHeadsPerCTA{
      *this, "max-heads-per-cta",
      llvm::cl::desc("Most query heads one CTA serves (0: auto)"),
      llvm::cl::init(0)};
  PassOptions::Option<std::string> prefetchPageTable{
      *this, "prefetch-page-table",
      llvm::cl::desc("Load the next iteration's page-table entries early: "
                     "auto, on or off"),
      llvm::cl::init("auto")};
  PassOptions::Option<int64_t> minCTAsPerSM{
      *this, "min-ctas-per-sm",
      llvm::cl::desc("CTAs per SM ptxas must fit the decode kernel to"),
      llvm::cl::init(0)};
  PassOptions::Option<std::string> tensorCores{
      *this, "tensor-cores",
      llvm::cl::desc("Decode with mma.sync over the query group: auto, on or "
                     "off"),
      llvm::cl::init("auto")};
  PassOptions::Option<int64_t> kvStages{
      *this, "kv-stages",
      llvm::cl::desc("Shared-memory K/V tiles per warp of the tensor-core "
                     "kernel (2 to 4)"),
      llvm::cl::init(3)};
  PassOptions::Option<int64_t> l2Prefetch{
      *this, "l2-prefetch",
      llvm::cl::desc("Bytes the tensor-core kernel's cp.async copies ask L2 "
                     "to fetch around each request: 0, 64, 128 or 256"),
      llvm::cl::init(128)};
  PassOptions::Option<int64_t> numSplits{
      *this, "num-splits",
      llvm::cl::desc("Chunks per sequence in the emitted host code"),
      llvm::cl::init(1)};
  PassOptions::Option<bool> emitPTX{
      *this, "emit-binary",
      llvm::cl::desc("End in a gpu.binary holding PTX; false stops at NVVM"),
      llvm::cl::init(true)};
};

/// The PTX features the kernels need on sm_XX ("+ptx74" for sm_80, ...), or
/// an empty string for a chip this project does not know.
std::string getDefaultPTXFeatures(llvm::StringRef chip);

/// What the target decides of the decode kernels' code-generation options.
struct DecodeTargetLimits {
  /// The most shared memory one CTA may use, in bytes (0 for a chip this
  /// project does not know).
  int64_t sharedMemoryLimit = 0;
  /// griddepcontrol (programmatic dependent launch), sm_90 and later.
  bool programmaticLaunch = false;
  /// The cp.async L2 prefetch-size hint, PTX ISA 7.4 and later.
  bool l2PrefetchHint = false;
};

/// The limits for `chip` with PTX `features` (empty: the chip's default).
DecodeTargetLimits getDecodeTargetLimits(llvm::StringRef chip,
                                         llvm::StringRef features);

/// True for the chips the kernels are built for.
bool isSupportedChip(llvm::StringRef chip);

/// paged_attn (tensor or memref form) -> bufferize -> GPU kernels -> NVVM
/// -> gpu.binary with PTX (format=isa).
void buildPagedAttnToPTXPipeline(OpPassManager &pm,
                                 const PagedAttnToPTXOptions &options);

/// paged_attn (tensor or memref form) -> bufferize -> loops -> LLVM, ready
/// for the CPU ExecutionEngine.
void buildPagedAttnToCPUPipeline(OpPassManager &pm);

/// Registers `paged-attn-to-ptx` and `paged-attn-to-cpu`.
void registerPagedAttnPipelines();

} // namespace paged_attn
} // namespace mlir

#endif // PAGEDATTN_PIPELINES_PIPELINES_H
