//===- Pipelines.h - paged_attn lowering pipelines --------------*- C++ -*-===//

#ifndef PAGEDATTN_PIPELINES_PIPELINES_H
#define PAGEDATTN_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassOptions.h"

#include <string>

namespace mlir {
class OpPassManager;
namespace paged_attn {
struct DecodeKernelOptions;

/// "Target chip: sm_80, sm_86, sm_89, sm_90 or sm_90a", from the chip table.
const char *getChipOptionHelp();

/// The target and host-code options of `paged-attn-to-ptx`. The pipeline
/// also takes every option of `paged-attn-select-decode-kernel` (num-warps,
/// tensor-cores, kv-stages, ...), which it forwards to that pass; the chip
/// decides its shared-memory limit, programmatic launch and, with the PTX
/// version, the L2 prefetch hint.
struct PagedAttnToPTXOptions
    : public PassPipelineOptions<PagedAttnToPTXOptions> {
  PassOptions::Option<std::string> chip{*this, "chip",
                                        llvm::cl::desc(getChipOptionHelp()),
                                        llvm::cl::init("sm_90")};
  PassOptions::Option<std::string> features{
      *this, "features",
      llvm::cl::desc("PTX features; empty picks the chip's default"),
      llvm::cl::init("")};
  PassOptions::Option<int> optLevel{
      *this, "opt-level", llvm::cl::desc("LLVM optimization level (0-3)"),
      llvm::cl::init(3)};
  PassOptions::Option<int64_t> numSplits{
      *this, "num-splits",
      llvm::cl::desc("Chunks per sequence in the emitted host code"),
      llvm::cl::init(1)};
  PassOptions::Option<bool> emitPTX{
      *this, "emit-binary",
      llvm::cl::desc("End in a gpu.binary holding PTX; false stops at NVVM"),
      llvm::cl::init(true)};
};

/// Checks the chip and PTX features (`features` empty: the chip's default):
/// empty, or the message.
std::string checkTarget(llvm::StringRef chip, llvm::StringRef features);

/// paged_attn (tensor or memref form) -> bufferize -> kernel strategies
/// (`kernels`, fitted to the chip) -> GPU kernels -> NVVM -> gpu.binary with
/// PTX (format=isa). The chip must pass checkTarget.
void buildPagedAttnToPTXPipeline(OpPassManager &pm,
                                 const PagedAttnToPTXOptions &options,
                                 const DecodeKernelOptions &kernels);
/// The same in two halves: up to the recorded strategies, and from there
/// on (paged-attn-compile reads the strategies in between).
void buildPagedAttnSelectionPipeline(OpPassManager &pm,
                                     const PagedAttnToPTXOptions &options,
                                     const DecodeKernelOptions &kernels);
void buildPagedAttnKernelPipeline(OpPassManager &pm,
                                  const PagedAttnToPTXOptions &options);

/// buildPagedAttnToPTXPipeline, then the host code (the functions around
/// the ops, with their gpu.alloc / gpu.launch_func / gpu.dealloc) on to the
/// LLVM dialect: one stream per function (gpu-async-region), mgpu* calls
/// (gpu-to-llvm), memref/func/arith/cf to LLVM with the _mlir_ciface_
/// wrappers `llvm.emit_c_interface` asks for. mlir-translate then gives LLVM
/// IR with the PTX embedded; libpaged_attn_mgpu runs it. `options.emitPTX`
/// must be set.
void buildPagedAttnToHostPipeline(OpPassManager &pm,
                                  const PagedAttnToPTXOptions &options,
                                  const DecodeKernelOptions &kernels);

/// paged_attn (tensor or memref form) -> bufferize -> loops -> LLVM, ready
/// for the CPU ExecutionEngine.
void buildPagedAttnToCPUPipeline(OpPassManager &pm);

/// Registers `paged-attn-to-ptx`, `paged-attn-to-host` and
/// `paged-attn-to-cpu`.
void registerPagedAttnPipelines();

} // namespace paged_attn
} // namespace mlir

#endif // PAGEDATTN_PIPELINES_PIPELINES_H
