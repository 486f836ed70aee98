//===- Pipelines.cpp - paged_attn lowering pipelines ----------------------===//

#include "PagedAttn/Pipelines/Pipelines.h"
#include "PagedAttn/Conversion/PagedAttnToGPU/SelectDecodeKernel.h"
#include "PagedAttn/Conversion/Passes.h"
#include "PagedAttn/Spec/TargetInfo.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Arith/Transforms/Passes.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/FormatVariadic.h"

using namespace mlir;
using namespace mlir::paged_attn;

const char *mlir::paged_attn::getChipOptionHelp() {
  static const std::string help =
      "Target chip: " + ::paged_attn::supportedChipList();
  return help.c_str();
}

std::string mlir::paged_attn::checkTarget(StringRef chip, StringRef features) {
  const ::paged_attn::TargetInfo *target = ::paged_attn::lookupTarget(chip);
  if (!target)
    return llvm::formatv("unsupported chip '{0}' (expected {1})", chip,
                         ::paged_attn::supportedChipList())
        .str();
  if (features.empty())
    return "";
  int version = ::paged_attn::ptxVersionOf(features);
  if (features != ::paged_attn::ptxFeature(version) ||
      !::paged_attn::isKnownPTXVersion(version))
    return llvm::formatv("PTX features must be one +ptxNN of a PTX ISA "
                         "version the compiler knows (+ptx70 to +ptx90), "
                         "got '{0}'",
                         features)
        .str();
  if (version < target->minPTXVersion)
    return llvm::formatv("PTX {0}.{1} cannot target {2}: it needs {3} or "
                         "later",
                         version / 10, version % 10, chip,
                         ::paged_attn::ptxFeature(target->minPTXVersion))
        .str();
  return "";
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

/// The PTX features the kernels are compiled with.
static std::string getFeatures(const PagedAttnToPTXOptions &options) {
  if (!options.features.empty())
    return options.features;
  const ::paged_attn::TargetInfo *target =
      ::paged_attn::lookupTarget(options.chip);
  return target ? ::paged_attn::ptxFeature(target->defaultPTXVersion) : "";
}

void mlir::paged_attn::buildPagedAttnSelectionPipeline(
    OpPassManager &pm, const PagedAttnToPTXOptions &options,
    const DecodeKernelOptions &kernels) {
  addBufferization(pm);
  const ::paged_attn::TargetInfo *target =
      ::paged_attn::lookupTarget(options.chip);
  pm.addPass(createSelectDecodeKernelPass(
      target ? kernels.forTarget(*target, options.features) : kernels));
}

void mlir::paged_attn::buildPagedAttnKernelPipeline(
    OpPassManager &pm, const PagedAttnToPTXOptions &options) {
  ConvertPagedAttnToGPUOptions toGPU;
  toGPU.numSplits = options.numSplits;
  pm.addPass(createConvertPagedAttnToGPU(toGPU));

  GpuNVVMAttachTargetOptions target;
  target.chip = options.chip;
  target.features = getFeatures(options);
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

void mlir::paged_attn::buildPagedAttnToPTXPipeline(
    OpPassManager &pm, const PagedAttnToPTXOptions &options,
    const DecodeKernelOptions &kernels) {
  buildPagedAttnSelectionPipeline(pm, options, kernels);
  buildPagedAttnKernelPipeline(pm, options);
}

/// What the CPU and host pipelines share before their LLVM lowering:
/// scf to cf; bf16 conversions as integer arithmetic (no soft-float library
/// call for a JIT or linker to resolve); subviews and transposes (the
/// merge's views of its partials) to the reinterpret_casts the LLVM lowering
/// handles, with their offsets and sizes, computed by affine.apply (a
/// subview at a loop's index), lowered to arith.
static void addHostCodeToArith(OpPassManager &pm) {
  pm.addPass(createSCFToControlFlowPass());
  arith::ArithExpandOpsPassOptions expand;
  expand.includeBf16 = true;
  pm.addPass(arith::createArithExpandOpsPass(expand));
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createLowerAffinePass());
}

void mlir::paged_attn::buildPagedAttnToHostPipeline(
    OpPassManager &pm, const PagedAttnToPTXOptions &options,
    const DecodeKernelOptions &kernels) {
  buildPagedAttnToPTXPipeline(pm, options, kernels);
  // The host code left is func/memref/arith/scf with gpu.alloc,
  // gpu.launch_func and gpu.dealloc, none of them async. gpu-to-llvm lowers
  // only the async forms (every call takes a stream), so gpu-async-region
  // first chains the GPU ops on a stream of their own, created where the
  // function (or a loop body) begins and synchronised before it returns
  // (or the iteration ends, or a call is made).
  pm.addNestedPass<func::FuncOp>(createGpuAsyncRegionPass());
  addHostCodeToArith(pm);
  // mgpu* calls for streams, allocations and copies; gpu.launch_func and
  // gpu.binary stay, with LLVM-typed operands, for the translation to LLVM
  // IR (#gpu.select_object: the PTX as a global, loaded by a constructor).
  pm.addPass(createGpuToLLVMConversionPass());
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  // func (with the _mlir_ciface_ wrappers of llvm.emit_c_interface
  // functions), arith, cf, index, math, vector.
  pm.addPass(createConvertToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  pm.addPass(createCanonicalizerPass());
}

void mlir::paged_attn::buildPagedAttnToCPUPipeline(OpPassManager &pm) {
  addBufferization(pm);
  pm.addPass(createConvertPagedAttnToLoops());
  addHostCodeToArith(pm);
  pm.addPass(createConvertToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
}

//===----------------------------------------------------------------------===//
// Registration
//===----------------------------------------------------------------------===//

/// The names of PagedAttnToPTXOptions' own options, as it prints them.
static llvm::StringSet<> getOwnOptionNames() {
  std::string printed;
  llvm::raw_string_ostream os(printed);
  PagedAttnToPTXOptions().print(os);
  llvm::StringSet<> names;
  for (StringRef entry : llvm::split(StringRef(printed).trim("{} "), ' '))
    if (!entry.empty())
      names.insert(entry.split('=').first);
  return names;
}

/// Splits a pipeline's option text ("chip=sm_90 kv-stages=2") into
/// PagedAttnToPTXOptions' own options and the rest, which belong to
/// paged-attn-select-decode-kernel. Values may be quoted or braced.
static std::pair<std::string, std::string> splitOptions(StringRef text) {
  static const llvm::StringSet<> own = getOwnOptionNames();
  std::string ownText, forwarded;
  StringRef rest = text.trim();
  while (!rest.empty()) {
    size_t end = 0;
    int depth = 0;
    char quote = 0;
    for (; end < rest.size(); ++end) {
      char ch = rest[end];
      if (quote) {
        quote = ch == quote ? 0 : quote;
      } else if (ch == '"' || ch == '\'') {
        quote = ch;
      } else if (ch == '{') {
        ++depth;
      } else if (ch == '}') {
        --depth;
      } else if (ch == ' ' && depth == 0) {
        break;
      }
    }
    StringRef token = rest.take_front(end);
    StringRef key = token.split('=').first;
    std::string &into = own.contains(key) ? ownText : forwarded;
    into += (into.empty() ? "" : " ") + token.str();
    rest = rest.drop_front(end).ltrim();
  }
  return {ownText, forwarded};
}

/// Registers a pipeline that takes PagedAttnToPTXOptions and forwards the
/// kernel options to the selection pass, which parses (and checks) them:
/// they are declared once, in Passes.td.
static void registerKernelPipeline(StringRef name, StringRef description,
                                   void (*build)(OpPassManager &,
                                                 const PagedAttnToPTXOptions &,
                                                 const DecodeKernelOptions &),
                                   bool needsBinary) {
  registerPassPipeline(
      name, description,
      [build, needsBinary, name = name.str()](
          OpPassManager &pm, StringRef text,
          function_ref<LogicalResult(const Twine &)> errorHandler) {
        PagedAttnToPTXOptions options;
        auto [own, forwarded] = splitOptions(text);
        std::string parseError;
        llvm::raw_string_ostream os(parseError);
        if (failed(options.parseFromString(own, os)))
          return errorHandler(parseError);
        if (std::string error = checkTarget(options.chip, options.features);
            !error.empty())
          return errorHandler(error);
        if (needsBinary && !options.emitPTX)
          return errorHandler(name + " needs the kernels' gpu.binary: "
                                     "emit-binary=false leaves host code "
                                     "that cannot be lowered to LLVM");
        auto kernels = parseDecodeKernelOptionText(forwarded);
        if (auto *error = std::get_if<std::string>(&kernels))
          return errorHandler(*error);
        build(pm, options, std::get<DecodeKernelOptions>(kernels));
        return success();
      },
      [](function_ref<void(const mlir::detail::PassOptions &)> optHandler) {
        optHandler(PagedAttnToPTXOptions());
      });
}

void mlir::paged_attn::registerPagedAttnPipelines() {
  PassPipelineRegistration<> cpu(
      "paged-attn-to-cpu",
      "Lower paged_attn to loops and on to the LLVM dialect for the CPU",
      buildPagedAttnToCPUPipeline);
  registerKernelPipeline(
      "paged-attn-to-ptx",
      "Lower paged_attn to GPU kernels and on to a gpu.binary holding PTX "
      "(also takes every option of paged-attn-select-decode-kernel)",
      buildPagedAttnToPTXPipeline, /*needsBinary=*/false);
  registerKernelPipeline(
      "paged-attn-to-host",
      "Lower paged_attn as paged-attn-to-ptx does, and the host code on to "
      "the LLVM dialect calling the mgpu* runtime functions "
      "(libpaged_attn_mgpu) (also takes every option of "
      "paged-attn-select-decode-kernel)",
      buildPagedAttnToHostPipeline, /*needsBinary=*/true);
}
