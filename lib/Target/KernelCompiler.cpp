//===- KernelCompiler.cpp - decode kernels to PTX and a manifest ----------===//

#include "PagedAttn/Target/KernelCompiler.h"

#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernels.h"
#include "PagedAttn/Pipelines/Pipelines.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Config/llvm-config.h"

using namespace mlir;
using namespace mlir::paged_attn;

std::string mlir::paged_attn::getCompilerVersion() {
  return std::string("PagedAttn " PAGED_ATTN_VERSION " (MLIR ") +
         LLVM_VERSION_STRING + ")";
}

FailureOr<OwningOpRef<ModuleOp>>
mlir::paged_attn::buildDecodeModule(MLIRContext *ctx,
                                    ArrayRef<DecodeKernelConfig> configs) {
  ctx->loadDialect<PagedAttnDialect, func::FuncDialect>();
  OpBuilder b(ctx);
  Location loc = UnknownLoc::get(ctx);
  OwningOpRef<ModuleOp> module = ModuleOp::create(b, loc);
  b.setInsertionPointToEnd(module->getBody());
  int64_t dyn = ShapedType::kDynamic;
  for (const DecodeKernelConfig &c : configs) {
    Type i32 = b.getI32Type();
    auto qType = MemRefType::get({dyn, c.numHeads, c.headDim}, c.elementType);
    auto cacheType = MemRefType::get(
        c.layout == KVLayout::nhd
            ? SmallVector<int64_t>{dyn, c.pageSize, c.numKVHeads, c.headDim}
            : SmallVector<int64_t>{dyn, c.numKVHeads, c.pageSize, c.headDim},
        c.elementType);
    SmallVector<Type> argTypes = {qType,
                                  cacheType,
                                  cacheType,
                                  MemRefType::get({dyn, dyn}, i32),
                                  MemRefType::get({dyn}, i32),
                                  qType};
    auto func = func::FuncOp::create(b, loc, "decode_" + c.name(),
                                     b.getFunctionType(argTypes, {}));
    Block *body = func.addEntryBlock();
    OpBuilder fb = OpBuilder::atBlockBegin(body);
    auto args = body->getArguments();
    DecodeOp::create(fb, loc, args[0], args[1], args[2], args[3], args[4],
                     args[5], c.layout, std::nullopt);
    func::ReturnOp::create(fb, loc);
  }
  if (failed(verify(*module)))
    return failure();
  return module;
}

SmallVector<DecodeKernelConfig>
mlir::paged_attn::collectDecodeConfigs(ModuleOp module,
                                       const DecodeKernelOptions &options) {
  SmallVector<DecodeKernelConfig> configs;
  llvm::StringSet<> seen;
  module.walk([&](DecodeOp op) {
    DecodeKernelConfig c = DecodeKernelConfig::fromOp(op, options);
    if (seen.insert(c.name()).second)
      configs.push_back(c);
  });
  return configs;
}

FailureOr<std::string> mlir::paged_attn::extractPTX(ModuleOp module) {
  std::string ptx;
  module.walk([&](gpu::BinaryOp binary) {
    for (Attribute attr : binary.getObjects()) {
      auto object = dyn_cast<gpu::ObjectAttr>(attr);
      if (object && object.getFormat() == gpu::CompilationTarget::Assembly)
        ptx += object.getObject().getValue().str();
    }
  });
  if (ptx.empty())
    return module.emitError("no PTX (gpu.binary with format=isa) in module");
  return ptx;
}

static llvm::json::Array describeParams(MLIRContext *ctx, ArrayRef<Type> types,
                                        ArrayRef<StringRef> names) {
  llvm::json::Array params;
  for (auto [type, name] : llvm::zip_equal(types, names)) {
    llvm::json::Object param{{"name", name}};
    if (auto memref = dyn_cast<MemRefType>(type)) {
      param["kind"] = "memref";
      std::string elem;
      llvm::raw_string_ostream os(elem);
      os << memref.getElementType();
      param["element_type"] = elem;
      param["rank"] = memref.getRank();
      llvm::json::Array shape;
      for (int64_t d : memref.getShape())
        shape.push_back(ShapedType::isDynamic(d) ? int64_t(-1) : d);
      param["shape"] = std::move(shape);
      SmallVector<int64_t> strides;
      int64_t offset;
      (void)memref.getStridesAndOffset(strides, offset);
      param["unit_innermost_stride"] = strides.back() == 1;
    } else {
      param["kind"] = "scalar";
      std::string scalar;
      llvm::raw_string_ostream os(scalar);
      os << type;
      param["type"] = scalar;
    }
    params.push_back(std::move(param));
  }
  return params;
}

/// The config section: the shapes, and the code-generation choices of the
/// decode kernel the config uses (each kernel has its own).
static llvm::json::Object describeConfig(const DecodeKernelConfig &c) {
  llvm::json::Object config{{"name", c.name()},
                            {"num_heads", c.numHeads},
                            {"num_kv_heads", c.numKVHeads},
                            {"head_dim", c.headDim},
                            {"page_size", c.pageSize},
                            {"dtype", c.elementTypeName()},
                            {"layout", stringifyKVLayout(c.layout)},
                            {"num_warps", c.numWarps},
                            {"min_ctas_per_sm", c.minCTAsPerSM},
                            {"tensor_cores", c.usesTensorCores()}};
  if (c.usesTensorCores()) {
    config["kv_stages"] = c.stagesUsed();
    config["l2_prefetch_bytes"] = c.l2PrefetchBytes;
  } else {
    config["tokens_per_lane_group"] = c.tokensPerGroupIteration();
    config["prefetch_page_table"] = c.prefetchesPageTable();
  }
  return config;
}

static llvm::json::Value describeKernels(MLIRContext *ctx,
                                         const DecodeKernelConfig &c) {
  return llvm::json::Object{
      {"config", describeConfig(c)},
      {"decode",
       llvm::json::Object{
           {"name", c.decodeKernelName()},
           {"grid", llvm::json::Array{"num_kv_heads * ctas_per_kv_head",
                                      "batch", "num_splits"}},
           {"ctas_per_kv_head", c.ctasPerKVHead()},
           {"heads_per_cta", c.headsPerCTA()},
           {"block", llvm::json::Array{c.blockSize(), 1, 1}},
           {"static_shared_memory_bytes", c.sharedMemoryBytes()},
           {"dynamic_shared_memory_bytes", c.dynamicSharedMemoryBytes()},
           {"params", describeParams(ctx, getDecodeKernelArgTypes(ctx, c),
                                     getDecodeKernelArgNames())}}},
      {"merge",
       llvm::json::Object{
           {"name", c.mergeKernelName()},
           {"grid", llvm::json::Array{"num_heads", "batch", 1}},
           {"block", llvm::json::Array{c.mergeBlockSize(), 1, 1}},
           {"dynamic_shared_memory_bytes", 0},
           {"programmatic_launch", c.programmaticLaunch},
           {"params", describeParams(ctx, getMergeKernelArgTypes(ctx, c),
                                     getMergeKernelArgNames())}}},
      {"check",
       llvm::json::Object{
           {"name", c.checkKernelName()},
           {"grid", llvm::json::Array{"batch", 1, 1}},
           {"block", llvm::json::Array{c.checkBlockSize(), 1, 1}},
           {"dynamic_shared_memory_bytes", 0},
           {"params", describeParams(ctx, getCheckKernelArgTypes(ctx, c),
                                     getCheckKernelArgNames())}}},
      {"split_kv",
       llvm::json::Object{
           {"tokens_per_iteration", c.tokensPerIteration()},
           {"workspace",
            "partial_out f32 [batch, num_heads, num_splits, head_dim], then "
            "partial_lse f32 [batch, num_heads, num_splits], each 256-byte "
            "aligned"},
           {"merge_when", "num_splits > 1"}}}};
}

FailureOr<CompiledKernels> mlir::paged_attn::compileDecodeKernels(
    MLIRContext *ctx, ArrayRef<DecodeKernelConfig> configs,
    const KernelCompileOptions &options, StringRef ptxFileName) {
  if (!isSupportedChip(options.chip))
    return emitError(UnknownLoc::get(ctx))
           << "unsupported chip '" << options.chip
           << "' (expected sm_80, sm_86, sm_89, sm_90 or sm_90a)";
  if (options.optLevel < 0 || options.optLevel > 3)
    return emitError(UnknownLoc::get(ctx))
           << "opt level must be 0 to 3, got " << options.optLevel;
  FailureOr<OwningOpRef<ModuleOp>> module = buildDecodeModule(ctx, configs);
  if (failed(module))
    return failure();

  PassManager pm(ctx);
  PagedAttnToPTXOptions pipeline;
  pipeline.chip = options.chip;
  pipeline.features = options.features;
  pipeline.optLevel = options.optLevel;
  if (!configs.empty()) {
    // The conversion builds every kernel of a module with one set of
    // code-generation options.
    const DecodeKernelConfig &first = configs.front();
    pipeline.numWarps = first.numWarps;
    pipeline.tokensPerLaneGroup = first.tokensPerLaneGroup;
    pipeline.maxHeadsPerCTA = first.maxHeadsPerCTA;
    pipeline.prefetchPageTable =
        stringifyPageTablePrefetch(first.prefetchPageTable).str();
    pipeline.minCTAsPerSM = first.minCTAsPerSM;
    pipeline.tensorCores = stringifyTensorCoreUse(first.tensorCores).str();
    pipeline.kvStages = first.kvStages;
    pipeline.l2Prefetch = first.l2PrefetchBytes;
  }
  buildPagedAttnToPTXPipeline(pm, pipeline);
  if (failed(pm.run(**module)))
    return failure();
  FailureOr<std::string> ptx = extractPTX(**module);
  if (failed(ptx))
    return failure();

  llvm::json::Array kernels;
  // The pipeline fits the kernels to the chip's shared memory; describe
  // them as built.
  DecodeTargetLimits limits =
      getDecodeTargetLimits(options.chip, options.features);
  for (DecodeKernelConfig c : configs) {
    c.sharedMemoryLimit = limits.sharedMemoryLimit;
    c.programmaticLaunch = limits.programmaticLaunch;
    if (!limits.l2PrefetchHint)
      c.l2PrefetchBytes = 0;
    kernels.push_back(describeKernels(ctx, c));
  }
  CompiledKernels result;
  result.ptx = std::move(*ptx);
  std::string features = options.features.empty()
                             ? getDefaultPTXFeatures(options.chip)
                             : options.features;
  result.manifest = llvm::json::Object{
      {"format", "paged_attn.manifest"},
      {"version", 1},
      {"compiler", getCompilerVersion()},
      {"ptx", ptxFileName},
      {"chip", options.chip},
      {"features", features},
      {"opt_level", options.optLevel},
      {"abi",
       "each memref parameter is passed as its descriptor: allocated "
       "pointer, aligned pointer, offset (i64), sizes (i64 x rank), strides "
       "(i64 x rank), in elements; scalars as themselves"},
      {"kernels", std::move(kernels)}};
  return result;
}
