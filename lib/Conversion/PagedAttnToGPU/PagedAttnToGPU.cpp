//===- PagedAttnToGPU.cpp - paged_attn.decode to GPU kernels --------------===//
//
// Host side: each memref-form decode op becomes a launch of the decode
// kernel over grid (num_kv_heads * ctas_per_kv_head, batch, num_splits) and,
// when split, a launch of the merge kernel over (num_heads, batch). The
// split-KV workspace is a gpu.alloc freed after the launches.
//
//===----------------------------------------------------------------------===//

#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernels.h"
#include "PagedAttn/Conversion/Passes.h"
#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttn.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "mlir/IR/SymbolTable.h"

namespace mlir {
namespace paged_attn {
#define GEN_PASS_DEF_CONVERTPAGEDATTNTOGPU
#include "PagedAttn/Conversion/Passes.h.inc"
} // namespace paged_attn
} // namespace mlir

using namespace mlir;
using namespace mlir::paged_attn;

static constexpr StringLiteral kKernelModuleName = "paged_attn_kernels";

/// The module's gpu.module for paged_attn kernels, created on first use.
static gpu::GPUModuleOp getOrCreateKernelModule(ModuleOp module) {
  if (auto existing = module.lookupSymbol<gpu::GPUModuleOp>(kKernelModuleName))
    return existing;
  OpBuilder b(module.getBodyRegion());
  b.setInsertionPointToEnd(module.getBody());
  module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(),
                  b.getUnitAttr());
  return gpu::GPUModuleOp::create(b, module.getLoc(), kKernelModuleName);
}

static Value castTo(ImplicitLocOpBuilder &b, Value v, Type type) {
  if (v.getType() == type)
    return v;
  return memref::CastOp::create(b, type, v);
}

static void lowerDecodeOp(DecodeOp op, gpu::GPUModuleOp kernelModule,
                          const DecodeKernelOptions &options,
                          int64_t numSplitsOption) {
  DecodeKernelConfig config = DecodeKernelConfig::fromOp(op, options);
  OpBuilder builder(op);
  gpu::GPUFuncOp decode = getOrBuildDecodeKernel(builder, kernelModule, config);
  gpu::GPUFuncOp merge = getOrBuildMergeKernel(builder, kernelModule, config);
  // Built for runtimes that offer a page-table check; not launched here.
  getOrBuildCheckKernel(builder, kernelModule, config);

  ImplicitLocOpBuilder b(op.getLoc(), op);
  auto index = [&](int64_t v) -> Value {
    return arith::ConstantIndexOp::create(b, v);
  };
  SmallVector<Type> argTypes = getDecodeKernelArgTypes(b.getContext(), config);
  Value batch = memref::DimOp::create(b, op.getQ(), 0);
  Value numSplits = index(numSplitsOption);

  // Split-KV workspace: partial outputs [B, Hq, S, D] and log-sum-exps
  // [B, Hq, S], f32.
  Type f32 = b.getF32Type();
  int64_t dyn = ShapedType::kDynamic;
  auto partialOutType =
      MemRefType::get({dyn, config.numHeads, dyn, config.headDim}, f32);
  auto partialLseType = MemRefType::get({dyn, config.numHeads, dyn}, f32);
  Value partialOut = gpu::AllocOp::create(
                         b, partialOutType, /*asyncToken=*/Type(), ValueRange{},
                         ValueRange{batch, numSplits}, ValueRange{})
                         .getMemref();
  Value partialLse =
      gpu::AllocOp::create(b, partialLseType, Type(), ValueRange{},
                           ValueRange{batch, numSplits}, ValueRange{})
          .getMemref();

  SmallVector<Value> decodeArgs = {
      castTo(b, op.getQ(), argTypes[0]),
      castTo(b, op.getKCache(), argTypes[1]),
      castTo(b, op.getVCache(), argTypes[2]),
      castTo(b, op.getBlockTable(), argTypes[3]),
      castTo(b, op.getSeqLens(), argTypes[4]),
      castTo(b, op.getOut(), argTypes[5]),
      castTo(b, partialOut, argTypes[6]),
      castTo(b, partialLse, argTypes[7]),
      arith::ConstantOp::create(b, b.getF32FloatAttr(op.getEffectiveScale())),
      arith::ConstantIntOp::create(b, b.getI32Type(), numSplitsOption)};
  Value one = index(1);
  gpu::LaunchFuncOp::create(
      b, decode,
      gpu::KernelDim3{index(config.numKVHeads * config.ctasPerKVHead()), batch,
                      numSplits},
      gpu::KernelDim3{index(config.blockSize()), one, one},
      config.dynamicSharedMemoryBytes() > 0
          ? arith::ConstantIntOp::create(b, b.getI32Type(),
                                         config.dynamicSharedMemoryBytes())
                .getResult()
          : Value(),
      decodeArgs);
  if (numSplitsOption > 1)
    gpu::LaunchFuncOp::create(
        b, merge, gpu::KernelDim3{index(config.numHeads), batch, one},
        gpu::KernelDim3{index(config.mergeBlockSize()), one, one}, Value(),
        ValueRange{decodeArgs[6], decodeArgs[7], decodeArgs[5], decodeArgs[9]});
  gpu::DeallocOp::create(b, Type(), ValueRange{}, partialOut);
  gpu::DeallocOp::create(b, Type(), ValueRange{}, partialLse);
  op.erase();
}

namespace {
struct ConvertPagedAttnToGPUPass
    : public mlir::paged_attn::impl::ConvertPagedAttnToGPUBase<
          ConvertPagedAttnToGPUPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (numSplits < 1) {
      module.emitError() << "num-splits must be at least 1, got "
                         << static_cast<int64_t>(numSplits);
      return signalPassFailure();
    }
    DecodeKernelOptionStrings strings;
    strings.numWarps = numWarps;
    strings.tokensPerLaneGroup = tokensPerLaneGroup;
    strings.maxHeadsPerCTA = maxHeadsPerCTA;
    strings.prefetchPageTable = prefetchPageTable;
    strings.minCTAsPerSM = minCTAsPerSM;
    strings.tensorCores = tensorCores;
    strings.kvStages = kvStages;
    strings.l2PrefetchBytes = l2Prefetch;
    strings.sharedMemoryLimit = sharedMemoryLimit;
    strings.programmaticLaunch = programmaticLaunch;
    auto parsed = parseDecodeKernelOptions(strings);
    if (auto *error = std::get_if<std::string>(&parsed)) {
      module.emitError() << *error;
      return signalPassFailure();
    }
    const DecodeKernelOptions &options = std::get<DecodeKernelOptions>(parsed);
    SmallVector<DecodeOp> ops;
    WalkResult walk = module.walk([&](DecodeOp op) {
      if (!op.hasPureBufferSemantics()) {
        op.emitOpError("must be bufferized (memref form) before "
                       "convert-paged-attn-to-gpu");
        return WalkResult::interrupt();
      }
      ops.push_back(op);
      return WalkResult::advance();
    });
    if (walk.wasInterrupted())
      return signalPassFailure();
    if (ops.empty())
      return;
    gpu::GPUModuleOp kernelModule = getOrCreateKernelModule(module);
    for (DecodeOp op : ops)
      lowerDecodeOp(op, kernelModule, options, numSplits);
  }
};
} // namespace
