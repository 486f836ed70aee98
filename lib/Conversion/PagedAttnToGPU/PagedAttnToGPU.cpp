//===- PagedAttnToGPU.cpp - paged_attn.decode to GPU kernels --------------===//
//
// Host side: each memref-form decode op becomes a launch of the decode
// kernel over grid (num_kv_heads * ctas_per_kv_head, batch, num_splits) and,
// when split, a launch of the merge kernel over (rows, batch): num_heads,
// or L * num_heads for a multi-token decode. The
// split-KV workspace is a gpu.alloc freed after the launches. A merge op
// becomes a launch of the same merge kernel, built for its dtype and
// natural log-sum-exps, on transposed views of its partials. An append op
// becomes a launch of its kernel over (ceil(T * num_kv_heads / rows per
// CTA)), nothing where T is 0.
//
//===----------------------------------------------------------------------===//

#include "PagedAttn/Conversion/PagedAttnToGPU/AppendKernel.h"
#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernels.h"
#include "PagedAttn/Conversion/PagedAttnToGPU/SelectDecodeKernel.h"
#include "PagedAttn/Conversion/Passes.h"
#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttn.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/AffineMap.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "mlir/IR/SymbolTable.h"
#include "llvm/ADT/StringMap.h"

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

/// The launch arguments of a kernel built from `params`: each parameter's
/// value by its Spec name, cast to the kernel's argument type.
static SmallVector<Value> kernelArgs(ImplicitLocOpBuilder &b,
                                     ArrayRef<::paged_attn::KernelParam> params,
                                     gpu::GPUFuncOp kernel,
                                     const llvm::StringMap<Value> &values) {
  SmallVector<Value> args;
  for (auto [param, type] : llvm::zip_equal(params, kernel.getArgumentTypes()))
    args.push_back(castTo(b, values.lookup(param.name), type));
  return args;
}

/// `value` ([batch, 1, ...], a rank-4 q of one new query, or its out or
/// log-sum-exp) without its query dim, as a rank-reducing subview: the
/// single-token kernels take it.
static Value dropQueryDim(ImplicitLocOpBuilder &b, Value value) {
  if (!value)
    return value;
  auto type = cast<MemRefType>(value.getType());
  SmallVector<OpFoldResult> offsets(type.getRank(), b.getIndexAttr(0));
  SmallVector<OpFoldResult> sizes, strides(type.getRank(), b.getIndexAttr(1));
  for (int64_t d = 0; d < type.getRank(); ++d)
    sizes.push_back(type.isDynamicDim(d)
                        ? OpFoldResult(memref::DimOp::create(b, value, d))
                        : OpFoldResult(b.getIndexAttr(type.getDimSize(d))));
  SmallVector<int64_t> reducedShape(type.getShape());
  reducedShape.erase(reducedShape.begin() + 1);
  auto reducedType = memref::SubViewOp::inferRankReducedResultType(
      reducedShape, type, offsets, sizes, strides);
  return memref::SubViewOp::create(b, cast<MemRefType>(reducedType), value,
                                   offsets, sizes, strides);
}

static void lowerDecodeOp(DecodeOp op, const DecodeKernelConfig &config,
                          gpu::GPUModuleOp kernelModule,
                          int64_t numSplitsOption) {
  OpBuilder builder(op);
  // An empty batch has nothing to compute and no grid to launch.
  if (op.getQType().getDimSize(0) == 0) {
    op.erase();
    return;
  }
  gpu::GPUFuncOp decode = getOrBuildDecodeKernel(builder, kernelModule, config);
  gpu::GPUFuncOp merge = getOrBuildMergeKernel(builder, kernelModule, config);
  // Built for runtimes that offer a page-table check; not launched here.
  getOrBuildCheckKernel(builder, kernelModule, config);

  ImplicitLocOpBuilder b(op.getLoc(), op);
  auto index = [&](int64_t v) -> Value {
    return arith::ConstantIndexOp::create(b, v);
  };
  Value batch = memref::DimOp::create(b, op.getQ(), 0);
  Value numSplits = index(numSplitsOption);

  // Split-KV workspace: partial outputs [B, rows, S, D] and log-sum-exps
  // [B, rows, S], f32, a row per query head (per new query and head of a
  // multi-token decode).
  Type f32 = b.getF32Type();
  int64_t dyn = ShapedType::kDynamic;
  int64_t rows = config.spec.partialRows();
  auto partialOutType =
      MemRefType::get({dyn, rows, dyn, config.spec.headDim}, f32);
  auto partialLseType = MemRefType::get({dyn, rows, dyn}, f32);
  Value partialOut = gpu::AllocOp::create(
                         b, partialOutType, /*asyncToken=*/Type(), ValueRange{},
                         ValueRange{batch, numSplits}, ValueRange{})
                         .getMemref();
  Value partialLse =
      gpu::AllocOp::create(b, partialLseType, Type(), ValueRange{},
                           ValueRange{batch, numSplits}, ValueRange{})
          .getMemref();

  // The value of each of the Spec's kernel parameters, by name: the
  // kernels' argument lists are the Spec's lists in order.
  // A rank-4 q of one query and no tree mask is a single-token decode.
  bool dropQuery = op.isMultiToken() && !config.spec.hasQueryDim();
  auto perQuery = [&](Value v) { return dropQuery ? dropQueryDim(b, v) : v; };
  llvm::StringMap<Value> values;
  values["q"] = perQuery(op.getQ());
  values["k_cache"] = op.getKCache();
  values["v_cache"] = op.getVCache();
  values["block_table"] = op.getBlockTable();
  values["seq_lens"] = op.getSeqLens();
  values["out"] = perQuery(op.getOut());
  values["partial_out"] = partialOut;
  values["partial_lse"] = partialLse;
  values["scale"] =
      arith::ConstantOp::create(b, b.getF32FloatAttr(op.getEffectiveScale()));
  values["num_splits"] =
      arith::ConstantIntOp::create(b, b.getI32Type(), numSplitsOption);
  // Even chunks: the pass knows no lengths to balance them for.
  values["split_chunk"] = arith::ConstantIntOp::create(b, b.getI32Type(), 0);
  if (std::optional<int64_t> window = op.getWindow())
    values["window"] = arith::ConstantIntOp::create(b, b.getI64Type(), *window);
  if (FloatAttr cap = op.getSoftCapAttr())
    values["soft_cap"] = arith::ConstantOp::create(b, cap);
  values["alibi_slopes"] = op.getAlibiSlopes();
  values["sinks"] = op.getSinks();
  values["lse"] = perQuery(op.getLseOut());
  values["tree_mask"] = op.getTreeMask();
  values["k_scale"] = op.getKScale();
  values["v_scale"] = op.getVScale();
  SmallVector<Value> decodeArgs = kernelArgs(
      b, ::paged_attn::decodeKernelParams(config.spec), decode, values);
  Value one = index(1);
  gpu::LaunchFuncOp::create(
      b, decode,
      gpu::KernelDim3{index(config.spec.numKVHeads * config.ctasPerKVHead()),
                      batch, numSplits},
      gpu::KernelDim3{index(config.blockSize()), one, one},
      config.dynamicSharedMemoryBytes() > 0
          ? arith::ConstantIntOp::create(b, b.getI32Type(),
                                         config.dynamicSharedMemoryBytes())
                .getResult()
          : Value(),
      decodeArgs);
  if (numSplitsOption > 1)
    gpu::LaunchFuncOp::create(
        b, merge, gpu::KernelDim3{index(rows), batch, one},
        gpu::KernelDim3{index(config.mergeBlockSize()), one, one}, Value(),
        kernelArgs(b, ::paged_attn::mergeKernelParams(config.spec), merge,
                   values));
  gpu::DeallocOp::create(b, Type(), ValueRange{}, partialOut);
  gpu::DeallocOp::create(b, Type(), ValueRange{}, partialLse);
  op.erase();
}

/// A view of `value` with its dims permuted so that dim `permutation[i]`
/// comes i-th: the merge kernel reads partials [batch, heads, N, ...] out of
/// the op's [N, batch, heads, ...] without a copy.
static Value permuteDims(ImplicitLocOpBuilder &b, Value value,
                         ArrayRef<unsigned> permutation) {
  AffineMap map = AffineMap::getPermutationMap(permutation, b.getContext());
  return memref::TransposeOp::create(b, value, AffineMapAttr::get(map));
}

static void lowerMergeOp(MergeOp op, gpu::GPUModuleOp kernelModule) {
  OpBuilder builder(op);
  MergeKernelConfig config =
      MergeKernelConfig::forOp(op.getContext(), getMergeSpec(op));
  gpu::GPUFuncOp merge = getOrBuildMergeKernel(builder, kernelModule, config);
  ImplicitLocOpBuilder b(op.getLoc(), op);
  llvm::StringMap<Value> values;
  values["partial_out"] = permuteDims(b, op.getPartialOut(), {1, 2, 0, 3});
  values["partial_lse"] = permuteDims(b, op.getPartialLse(), {1, 2, 0});
  values["out"] = op.getOut();
  values["num_splits"] = arith::IndexCastOp::create(
      b, b.getI32Type(), memref::DimOp::create(b, op.getPartialOut(), 0));
  values["sinks"] = op.getSinks();
  values["lse"] = op.getLseOut();
  SmallVector<Value> args = kernelArgs(
      b, ::paged_attn::mergeKernelParams(config.spec), merge, values);
  Value one = arith::ConstantIndexOp::create(b, 1);
  gpu::LaunchFuncOp::create(
      b, merge,
      gpu::KernelDim3{arith::ConstantIndexOp::create(b, config.gridX()),
                      memref::DimOp::create(b, op.getPartialOut(), 1), one},
      gpu::KernelDim3{arith::ConstantIndexOp::create(b, config.blockSize()),
                      one, one},
      Value(), args);
  op.erase();
}

/// The launch of an append's kernel, skipped at run time when there are no
/// new tokens (a grid of 0 CTAs is an error).
static void lowerAppendOp(AppendOp op, gpu::GPUModuleOp kernelModule) {
  OpBuilder builder(op);
  AppendKernelConfig config;
  config.spec = getAppendSpec(op);
  config.fp8Conversion = op->hasAttr(kFp8ConversionAttrName);
  gpu::GPUFuncOp kernel = getOrBuildAppendKernel(builder, kernelModule, config);
  ImplicitLocOpBuilder b(op.getLoc(), op);
  llvm::StringMap<Value> values;
  values["k"] = op.getK();
  values["v"] = op.getV();
  values["slot_mapping"] = op.getSlotMapping();
  values["k_cache"] = op.getKCache();
  values["v_cache"] = op.getVCache();
  values["k_scale"] = op.getKScale();
  values["v_scale"] = op.getVScale();
  SmallVector<Value> args = kernelArgs(
      b, ::paged_attn::appendKernelParams(config.spec), kernel, values);
  auto index = [&](int64_t v) -> Value {
    return arith::ConstantIndexOp::create(b, v);
  };
  Value rows = arith::MulIOp::create(b, memref::DimOp::create(b, op.getK(), 0),
                                     index(config.spec.numKVHeads));
  Value ctas = arith::CeilDivUIOp::create(b, rows, index(config.rowsPerCTA()));
  Value any =
      arith::CmpIOp::create(b, arith::CmpIPredicate::ugt, rows, index(0));
  auto ifAny = scf::IfOp::create(b, any, /*withElse=*/false);
  b.setInsertionPointToStart(ifAny.thenBlock());
  Value one = index(1);
  gpu::LaunchFuncOp::create(
      b, kernel, gpu::KernelDim3{ctas, one, one},
      gpu::KernelDim3{index(config.blockSize()), one, one}, Value(), args);
  op.erase();
}

namespace {
struct ConvertPagedAttnToGPUPass
    : public mlir::paged_attn::impl::ConvertPagedAttnToGPUBase<
          ConvertPagedAttnToGPUPass> {
  using Base::Base;
  // Reads the options the shared list declares (protected in the base).
  template <typename PassT>
  friend DecodeKernelOptionStrings
  mlir::paged_attn::getDecodeKernelOptionStrings(const PassT &);

  void runOnOperation() override {
    ModuleOp module = getOperation();
    // Splits are the launch's grid z.
    if (numSplits < 1 || numSplits > 65535) {
      module.emitError() << "num-splits must be in [1, 65535], got "
                         << static_cast<int64_t>(numSplits);
      return signalPassFailure();
    }
    auto parsed = parseDecodeKernelOptions(getDecodeKernelOptionStrings(*this));
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
    SmallVector<MergeOp> merges;
    walk = module.walk([&](MergeOp op) {
      if (!op.hasPureBufferSemantics()) {
        op.emitOpError("must be bufferized (memref form) before "
                       "convert-paged-attn-to-gpu");
        return WalkResult::interrupt();
      }
      // The batch is the launch's grid y.
      int64_t batch = op.getPartialOutType().getDimSize(1);
      if (!ShapedType::isDynamic(batch) && batch > 65535) {
        op.emitOpError() << "has a batch of " << batch
                         << " sequences; one launch takes at most 65535";
        return WalkResult::interrupt();
      }
      merges.push_back(op);
      return WalkResult::advance();
    });
    if (walk.wasInterrupted())
      return signalPassFailure();
    SmallVector<AppendOp> appends;
    walk = module.walk([&](AppendOp op) {
      if (!op.hasPureBufferSemantics()) {
        op.emitOpError("must be bufferized (memref form) before "
                       "convert-paged-attn-to-gpu");
        return WalkResult::interrupt();
      }
      appends.push_back(op);
      return WalkResult::advance();
    });
    if (walk.wasInterrupted())
      return signalPassFailure();
    for (AppendOp op : appends)
      lowerAppendOp(op, getOrCreateKernelModule(module));
    for (MergeOp op : merges) {
      if (op.getPartialOutType().getDimSize(1) == 0) {
        op.erase(); // nothing to merge, no grid to launch
        continue;
      }
      lowerMergeOp(op, getOrCreateKernelModule(module));
    }
    if (ops.empty())
      return;
    SmallVector<DecodeKernelConfig> configs;
    for (DecodeOp op : ops) {
      // The batch is the launch's grid y.
      int64_t batch = op.getQType().getDimSize(0);
      if (!ShapedType::isDynamic(batch) && batch > 65535) {
        op.emitOpError() << "has a batch of " << batch
                         << " sequences; one launch takes at most 65535";
        return signalPassFailure();
      }
      FailureOr<DecodeKernelConfig> config = getDecodeKernelConfig(op, options);
      if (failed(config))
        return signalPassFailure();
      configs.push_back(*config);
    }
    gpu::GPUModuleOp kernelModule = getOrCreateKernelModule(module);
    for (auto [op, config] : llvm::zip_equal(ops, configs))
      lowerDecodeOp(op, config, kernelModule, numSplits);
  }
};
} // namespace
