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
  // PTX 7.4 for the cp.async prefetch hint; what the chip needs above that.
  return llvm::StringSwitch<std::string>(chip)
      .Cases({"sm_80", "sm_86"}, "+ptx74")
      .Case("sm_89", "+ptx78")
      .Cases({"sm_90", "sm_90a"}, "+ptx80")
      .Default("");
}

/// The NN of a "+ptxNN" feature, or 0.
static int64_t getPTXVersion(StringRef features) {
  size_t at = features.find("+ptx");
  if (at == StringRef::npos)
    return 0;
  StringRef digits = features.drop_front(at + 4).take_while(llvm::isDigit);
  int64_t version = 0;
  return digits.getAsInteger(10, version) ? 0 : version;
}

DecodeTargetLimits mlir::paged_attn::getDecodeTargetLimits(StringRef chip,
                                                           StringRef features) {
  std::string defaults = getDefaultPTXFeatures(chip);
  if (features.empty())
    features = defaults;
  DecodeTargetLimits limits;
  // The opt-in limits of the CUDA programming guide's table of compute
  // capabilities.
  limits.sharedMemoryLimit = llvm::StringSwitch<int64_t>(chip)
                                 .Case("sm_80", 163 * 1024)
                                 .Cases({"sm_86", "sm_89"}, 99 * 1024)
                                 .Cases({"sm_90", "sm_90a"}, 227 * 1024)
                                 .Default(0);
  limits.programmaticLaunch = chip == "sm_90" || chip == "sm_90a";
  limits.l2PrefetchHint = getPTXVersion(features) >= 74;
  return limits;
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
  DecodeTargetLimits limits =
      getDecodeTargetLimits(options.chip, options.features);
  toGPU.l2Prefetch = limits.l2PrefetchHint ? options.l2Prefetch : 0;
  toGPU.sharedMemoryLimit = limits.sharedMemoryLimit;
  toGPU.programmaticLaunch = limits.programmaticLaunch;
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
  // nvvm.inline_ptx (cp.async with an L2 prefetch hint) to llvm.inline_asm.
  kernels.addPass(createConvertNVVMToLLVMPass());
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
