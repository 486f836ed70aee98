//===- Pipelines.cpp - paged_attn lowering pipelines ----------------------===//

#include "PagedAttn/Pipelines/Pipelines.h"
#include "PagedAttn/Conversion/Passes.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Arith/Transforms/Passes.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/StringSwitch.h"

using namespace mlir;
using namespace mlir::paged_attn;

std::string mlir::paged_attn::getDefaultPTXFeatures(StringRef chip) {
  return llvm::StringSwitch<std::string>(chip)
      .Case("sm_80", "+ptx70")
      .Case("sm_86", "+ptx71")
      .Case("sm_89", "+ptx78")
      .Case("sm_90", "+ptx80")
      .Case("sm_90a", "+ptx80")
      .Default("");
}

int64_t mlir::paged_attn::getMaxSharedMemoryPerCTA(StringRef chip) {
  // The opt-in limits of the CUDA programming guide's table of compute
  // capabilities.
  return llvm::StringSwitch<int64_t>(chip)
      .Case("sm_80", 163 * 1024)
      .Cases("sm_86", "sm_89", 99 * 1024)
      .Cases("sm_90", "sm_90a", 227 * 1024)
      .Default(0);
}

bool mlir::paged_attn::supportsProgrammaticLaunch(StringRef chip) {
  return chip == "sm_90" || chip == "sm_90a";
}

bool mlir::paged_attn::isSupportedChip(StringRef chip) {
  return !getDefaultPTXFeatures(chip).empty();
}

/// Tensor form to memref form; function arguments keep identity layouts so
/// the decode op's operands get unit innermost strides.
static void addBufferization(OpPassManager &pm) {
  bufferization::OneShotBufferizePassOptions options;
  options.bufferizeFunctionBoundaries = true;
  options.functionBoundaryTypeConversion =
      bufferization::LayoutMapOption::IdentityLayoutMap;
  pm.addPass(bufferization::createOneShotBufferizePass(options));
}

void mlir::paged_attn::buildPagedAttnToPTXPipeline(
    OpPassManager &pm, const PagedAttnToPTXOptions &options) {
  addBufferization(pm);
  ConvertPagedAttnToGPUOptions toGPU;
  toGPU.numWarps = options.numWarps;
  toGPU.numSplits = options.numSplits;
  toGPU.tokensPerLaneGroup = options.tokensPerLaneGroup;
  toGPU.maxHeadsPerCTA = options.maxHeadsPerCTA;
  toGPU.prefetchPageTable = options.prefetchPageTable;
  toGPU.minCTAsPerSM = options.minCTAsPerSM;
  toGPU.tensorCores = options.tensorCores;
  toGPU.kvStages = options.kvStages;
  toGPU.sharedMemoryLimit = getMaxSharedMemoryPerCTA(options.chip);
  toGPU.programmaticLaunch = supportsProgrammaticLaunch(options.chip);
  pm.addPass(createConvertPagedAttnToGPU(toGPU));

  GpuNVVMAttachTargetOptions target;
  target.chip = options.chip;
  target.features = options.features.empty()
                        ? getDefaultPTXFeatures(options.chip)
                        : std::string(options.features);
  target.optLevel = options.optLevel;
  pm.addPass(createGpuNVVMAttachTarget(target));

  OpPassManager &kernels = pm.nest<gpu::GPUModuleOp>();
  kernels.addPass(createSCFToControlFlowPass());
  // cp.async and ldmatrix of the tensor-core kernel; before the GPU
  // conversion, which leaves nvgpu ops alone.
  kernels.addPass(createConvertNVGPUToNVVMPass());
  ConvertGpuOpsToNVVMOpsOptions toNVVM;
  toNVVM.indexBitwidth = 64;
  kernels.addPass(createConvertGpuOpsToNVVMOps(toNVVM));
  kernels.addPass(createExternDynamicSharedMemory());
  kernels.addPass(createCanonicalizerPass());
  kernels.addPass(createCSEPass());
  kernels.addPass(createReconcileUnrealizedCastsPass());

  if (options.emitPTX) {
    GpuModuleToBinaryPassOptions binary;
    binary.compilationTarget = "isa";
    pm.addPass(createGpuModuleToBinaryPass(binary));
  }
}

void mlir::paged_attn::buildPagedAttnToCPUPipeline(OpPassManager &pm) {
  addBufferization(pm);
  pm.addPass(createConvertPagedAttnToLoops());
  pm.addPass(createSCFToControlFlowPass());
  // bf16 conversions become integer arithmetic: no soft-float library call.
  arith::ArithExpandOpsPassOptions expand;
  expand.includeBf16 = true;
  pm.addPass(arith::createArithExpandOpsPass(expand));
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createConvertToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
}

void mlir::paged_attn::registerPagedAttnPipelines() {
  PassPipelineRegistration<PagedAttnToPTXOptions>(
      "paged-attn-to-ptx",
      "Lower paged_attn to GPU kernels and on to a gpu.binary holding PTX",
      buildPagedAttnToPTXPipeline);
  PassPipelineRegistration<>(
      "paged-attn-to-cpu",
      "Lower paged_attn to loops and on to the LLVM dialect for the CPU",
      buildPagedAttnToCPUPipeline);
}
