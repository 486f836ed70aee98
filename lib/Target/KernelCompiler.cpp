//===- KernelCompiler.cpp - decode kernels to PTX and a manifest ----------===//

#include "PagedAttn/Target/KernelCompiler.h"

#include "PagedAttn/Conversion/PagedAttnToGPU/AppendKernel.h"
#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernels.h"
#include "PagedAttn/Conversion/PagedAttnToGPU/SelectDecodeKernel.h"
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

/// Appends to `module` a function per decode spec, each with a memref-form
/// decode op.
static void buildDecodeFuncs(OpBuilder &b, ArrayRef<DecodeSpec> specs) {
  MLIRContext *ctx = b.getContext();
  Location loc = b.getUnknownLoc();
  int64_t dyn = ShapedType::kDynamic;
  for (const DecodeSpec &spec : specs) {
    Type i32 = b.getI32Type();
    Type element = toMLIRType(ctx, spec.dtype);
    // A multi-token decode's q is [batch, L, num_heads, head_dim].
    bool multiToken = spec.hasQueryDim();
    auto qType =
        multiToken
            ? MemRefType::get({dyn, spec.queryLen, spec.numHeads, spec.headDim},
                              element)
            : MemRefType::get({dyn, spec.numHeads, spec.headDim}, element);
    std::array<int64_t, 4> cacheShape = spec.cacheShape(dyn);
    auto cacheType =
        MemRefType::get(cacheShape, toMLIRType(ctx, spec.cacheDType()));
    SmallVector<Type> argTypes = {qType,
                                  cacheType,
                                  cacheType,
                                  MemRefType::get({dyn, dyn}, i32),
                                  MemRefType::get({dyn}, i32),
                                  qType};
    // The variants' operands: per-head f32 vectors, and the log-sum-exp.
    const ::paged_attn::DecodeVariants &variants = spec.variants;
    Type f32 = b.getF32Type();
    auto perHead = MemRefType::get({spec.numHeads}, f32);
    if (variants.alibi)
      argTypes.push_back(perHead);
    if (variants.sinks)
      argTypes.push_back(perHead);
    if (variants.treeMask)
      argTypes.push_back(MemRefType::get({dyn, spec.queryLen, spec.queryLen},
                                         b.getI8Type()));
    if (variants.lse)
      argTypes.push_back(
          multiToken
              ? MemRefType::get({dyn, spec.queryLen, spec.numHeads}, f32)
              : MemRefType::get({dyn, spec.numHeads}, f32));
    // A quantised cache's scales, K's and V's of one granularity.
    if (spec.kvQuant)
      argTypes.append(2, MemRefType::get(spec.kvScaleShape(dyn), f32));
    auto func = func::FuncOp::create(b, loc, "decode_" + spec.name(),
                                     b.getFunctionType(argTypes, {}));
    Block *body = func.addEntryBlock();
    OpBuilder fb = OpBuilder::atBlockBegin(body);
    auto args = body->getArguments();
    unsigned next = 6;
    auto variantArg = [&](bool present) {
      return present ? args[next++] : Value();
    };
    Value alibi = variantArg(variants.alibi);
    Value sinks = variantArg(variants.sinks);
    Value treeMask = variantArg(variants.treeMask);
    Value lse = variantArg(variants.lse);
    Value kScale = variantArg(spec.kvQuant.has_value());
    Value vScale = variantArg(spec.kvQuant.has_value());
    // The kernels take the window and the cap as arguments: any value
    // specialises them the same way.
    DecodeOp::create(fb, loc, /*result=*/Type(), /*lse=*/Type(), args[0],
                     args[1], args[2], args[3], args[4], alibi, sinks, treeMask,
                     kScale, vScale, args[5], lse,
                     KVLayoutAttr::get(ctx, toKVLayout(spec.layout)),
                     /*scale=*/FloatAttr(),
                     variants.window ? fb.getI64IntegerAttr(1) : IntegerAttr(),
                     variants.softCap ? fb.getF32FloatAttr(1.0f) : FloatAttr());
    func::ReturnOp::create(fb, loc);
  }
}

/// Appends a function per merge spec, each with a memref-form merge op on
/// partials [N, batch, num_heads, head_dim].
static void buildMergeFuncs(OpBuilder &b,
                            ArrayRef<::paged_attn::MergeSpec> specs) {
  MLIRContext *ctx = b.getContext();
  Location loc = b.getUnknownLoc();
  int64_t dyn = ShapedType::kDynamic;
  Type f32 = b.getF32Type();
  for (const ::paged_attn::MergeSpec &spec : specs) {
    Type element = toMLIRType(ctx, spec.dtype);
    SmallVector<Type> argTypes = {
        MemRefType::get({dyn, dyn, spec.numHeads, spec.headDim}, element),
        MemRefType::get({dyn, dyn, spec.numHeads}, f32),
        MemRefType::get({dyn, spec.numHeads, spec.headDim}, element)};
    if (spec.sinks)
      argTypes.push_back(MemRefType::get({spec.numHeads}, f32));
    if (spec.lse)
      argTypes.push_back(MemRefType::get({dyn, spec.numHeads}, f32));
    auto func = func::FuncOp::create(b, loc, "merge_" + spec.name(),
                                     b.getFunctionType(argTypes, {}));
    Block *body = func.addEntryBlock();
    OpBuilder fb = OpBuilder::atBlockBegin(body);
    auto args = body->getArguments();
    unsigned next = 3;
    Value sinks = spec.sinks ? args[next++] : Value();
    Value lse = spec.lse ? args[next++] : Value();
    MergeOp::create(fb, loc, /*result=*/Type(), /*lse=*/Type(), args[0],
                    args[1], sinks, args[2], lse);
    func::ReturnOp::create(fb, loc);
  }
}

/// Appends a function per append spec, each with a memref-form append op
/// on T dynamic new tokens and a dynamic page pool.
static void buildAppendFuncs(OpBuilder &b,
                             ArrayRef<::paged_attn::AppendSpec> specs) {
  MLIRContext *ctx = b.getContext();
  Location loc = b.getUnknownLoc();
  int64_t dyn = ShapedType::kDynamic;
  for (const ::paged_attn::AppendSpec &spec : specs) {
    auto rows = MemRefType::get({dyn, spec.numKVHeads, spec.headDim},
                                toMLIRType(ctx, spec.dtype));
    std::array<int64_t, 4> cacheShape = spec.cacheShape(dyn);
    auto cache =
        MemRefType::get(cacheShape, toMLIRType(ctx, spec.cacheDType()));
    SmallVector<Type> argTypes = {
        rows, rows, MemRefType::get({dyn}, b.getI64Type()), cache, cache};
    if (spec.kvQuant)
      argTypes.append(2,
                      MemRefType::get(spec.kvScaleShape(dyn), b.getF32Type()));
    auto func = func::FuncOp::create(b, loc, "append_" + spec.name(),
                                     b.getFunctionType(argTypes, {}));
    Block *body = func.addEntryBlock();
    OpBuilder fb = OpBuilder::atBlockBegin(body);
    auto args = body->getArguments();
    Value kScale = spec.kvQuant ? args[5] : Value();
    Value vScale = spec.kvQuant ? args[6] : Value();
    AppendOp::create(fb, loc, TypeRange{}, args[0], args[1], args[2], args[3],
                     args[4], kScale, vScale,
                     KVLayoutAttr::get(ctx, toKVLayout(spec.layout)));
    func::ReturnOp::create(fb, loc);
  }
}

FailureOr<OwningOpRef<ModuleOp>>
mlir::paged_attn::buildKernelModule(MLIRContext *ctx, const KernelSet &set) {
  ctx->loadDialect<PagedAttnDialect, func::FuncDialect>();
  OpBuilder b(ctx);
  OwningOpRef<ModuleOp> module = ModuleOp::create(b, b.getUnknownLoc());
  b.setInsertionPointToEnd(module->getBody());
  buildDecodeFuncs(b, set.decodes);
  buildMergeFuncs(b, set.merges);
  buildAppendFuncs(b, set.appends);
  if (failed(verify(*module)))
    return failure();
  return module;
}

FailureOr<OwningOpRef<ModuleOp>>
mlir::paged_attn::buildDecodeModule(MLIRContext *ctx,
                                    ArrayRef<DecodeSpec> specs) {
  KernelSet set;
  set.decodes.assign(specs.begin(), specs.end());
  return buildKernelModule(ctx, set);
}

SmallVector<DecodeSpec> mlir::paged_attn::collectDecodeSpecs(ModuleOp module) {
  SmallVector<DecodeSpec> specs;
  llvm::StringSet<> seen;
  module.walk([&](DecodeOp op) {
    DecodeSpec spec = getDecodeSpec(op);
    if (seen.insert(spec.name()).second)
      specs.push_back(spec);
  });
  return specs;
}

KernelSet mlir::paged_attn::collectKernelSet(ModuleOp module) {
  KernelSet set;
  set.decodes = collectDecodeSpecs(module);
  llvm::StringSet<> seen;
  module.walk([&](MergeOp op) {
    ::paged_attn::MergeSpec spec = getMergeSpec(op);
    if (seen.insert(spec.name()).second)
      set.merges.push_back(spec);
  });
  llvm::StringSet<> seenAppends;
  module.walk([&](AppendOp op) {
    ::paged_attn::AppendSpec spec = getAppendSpec(op);
    if (seenAppends.insert(spec.name()).second)
      set.appends.push_back(spec);
  });
  return set;
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

//===----------------------------------------------------------------------===//
// Manifest
//===----------------------------------------------------------------------===//

static llvm::json::Array
describeParams(MLIRContext *ctx, ArrayRef<::paged_attn::KernelParam> params) {
  llvm::json::Array described;
  for (auto [param, type] :
       llvm::zip_equal(params, getKernelArgTypes(ctx, params))) {
    llvm::json::Object entry{{"name", param.name}};
    std::string typeName;
    llvm::raw_string_ostream os(typeName);
    if (auto memref = dyn_cast<MemRefType>(type)) {
      entry["kind"] = "memref";
      // The Spec's spelling (f8e4m3fn, not MLIR's f8E4M3FN), which the
      // runtime compares with.
      if (std::optional<DType> dtype = toDType(memref.getElementType()))
        os << ::paged_attn::dtypeName(*dtype);
      else
        os << memref.getElementType();
      entry["element_type"] = typeName;
      entry["rank"] = memref.getRank();
      llvm::json::Array shape;
      for (int64_t d : memref.getShape())
        shape.push_back(ShapedType::isDynamic(d) ? int64_t(-1) : d);
      entry["shape"] = std::move(shape);
      entry["unit_innermost_stride"] = param.unitInnermostStride;
    } else {
      entry["kind"] = "scalar";
      os << type;
      entry["type"] = typeName;
    }
    described.push_back(std::move(entry));
  }
  return described;
}

/// The config section: the spec's fields, and the strategy the decode
/// kernel was built with (each kernel has its own choices).
static llvm::json::Object describeConfig(const DecodeKernelConfig &c) {
  llvm::json::Object config;
  for (const ::paged_attn::ConfigField &field :
       ::paged_attn::specConfigFields(c.spec))
    std::visit([&](const auto &value) { config[field.first] = value; },
               field.second);
  const DecodeStrategy &s = c.strategy;
  config["min_ctas_per_sm"] = s.minCTAsPerSM;
  config["tensor_cores"] = c.usesTensorCores();
  if (c.usesTensorCores()) {
    config["kv_stages"] = s.kvStages;
    config["l2_prefetch_bytes"] = s.l2PrefetchBytes;
  } else {
    config["tokens_per_lane_group"] = s.tokensPerLaneGroup;
    config["prefetch_page_table"] = s.prefetchPageTable;
  }
  return config;
}

static llvm::json::Object describeKernel(std::string name,
                                         llvm::json::Array grid, int64_t block,
                                         int64_t dynamicShared,
                                         llvm::json::Array params) {
  return llvm::json::Object{{"name", std::move(name)},
                            {"grid", std::move(grid)},
                            {"block", llvm::json::Array{block, 1, 1}},
                            {"dynamic_shared_memory_bytes", dynamicShared},
                            {"params", std::move(params)}};
}

static llvm::json::Value describeKernels(MLIRContext *ctx,
                                         const DecodeKernelConfig &c) {
  llvm::json::Object decode = describeKernel(
      c.decodeKernelName(),
      llvm::json::Array{"num_kv_heads * ctas_per_kv_head", "batch",
                        "num_splits"},
      c.blockSize(), c.dynamicSharedMemoryBytes(),
      describeParams(ctx, ::paged_attn::decodeKernelParams(c.spec)));
  decode["ctas_per_kv_head"] = c.ctasPerKVHead();
  decode["heads_per_cta"] = c.headsPerCTA();
  // Only a multi-token decode's entry has it, so that others are unchanged.
  if (c.spec.hasQueryDim())
    decode["queries_per_cta"] = c.queriesPerCTA();
  decode["static_shared_memory_bytes"] = c.sharedMemoryBytes();
  decode["programmatic_launch"] = c.strategy.programmaticLaunch;
  llvm::json::Object merge = describeKernel(
      c.mergeKernelName(),
      llvm::json::Array{c.spec.hasQueryDim() ? "query_len * num_heads"
                                             : "num_heads",
                        "batch", 1},
      c.mergeBlockSize(), 0,
      describeParams(ctx, ::paged_attn::mergeKernelParams(c.spec)));
  merge["programmatic_launch"] = c.strategy.programmaticLaunch;
  return llvm::json::Object{
      {"config", describeConfig(c)},
      {"decode", std::move(decode)},
      {"merge", std::move(merge)},
      {"check",
       describeKernel(
           c.checkKernelName(), llvm::json::Array{"batch", 1, 1},
           c.checkBlockSize(), 0,
           describeParams(ctx, ::paged_attn::checkKernelParams(c.spec)))},
      {"split_kv",
       llvm::json::Object{{"tokens_per_iteration", c.tokensPerIteration()},
                          {"workspace", ::paged_attn::splitWorkspaceDoc()},
                          {"merge_when", "num_splits > 1"}}}};
}

/// A merge entry: its config (the MergeSpec's fields) and its kernel,
/// launched over (num_heads / rows_per_cta, batch) on [batch, num_heads,
/// N, ...] views of the op's [N, batch, num_heads, ...] partials.
static llvm::json::Value describeMerge(MLIRContext *ctx,
                                       const ::paged_attn::MergeSpec &spec) {
  llvm::json::Object config;
  for (const ::paged_attn::ConfigField &field :
       ::paged_attn::mergeConfigFields(spec))
    std::visit([&](const auto &value) { config[field.first] = value; },
               field.second);
  MergeKernelConfig kernel = MergeKernelConfig::forOp(ctx, spec);
  llvm::json::Object merge = describeKernel(
      kernel.kernelName,
      llvm::json::Array{"ceil(num_heads / rows_per_cta)", "batch", 1},
      kernel.blockSize(), 0,
      describeParams(ctx, ::paged_attn::mergeKernelParams(spec)));
  merge["rows_per_cta"] = kernel.rowsPerCTA();
  merge["partials"] = "the op's [N, batch, num_heads, ...] partial_out and "
                      "partial_lse, passed as [batch, num_heads, N, ...] "
                      "views; num_splits is N";
  return llvm::json::Object{{"config", std::move(config)},
                            {"merge", std::move(merge)}};
}

/// An append entry: its config (the AppendSpec's fields) and its kernel,
/// launched over ceil(T * num_kv_heads / rows_per_cta) CTAs.
static llvm::json::Value describeAppend(MLIRContext *ctx,
                                        const ::paged_attn::AppendSpec &spec,
                                        bool fp8Conversion) {
  llvm::json::Object config;
  for (const ::paged_attn::ConfigField &field :
       ::paged_attn::appendConfigFields(spec))
    std::visit([&](const auto &value) { config[field.first] = value; },
               field.second);
  AppendKernelConfig kernel{spec, fp8Conversion};
  llvm::json::Object append = describeKernel(
      kernel.kernelName(),
      llvm::json::Array{"ceil(num_tokens * num_kv_heads / rows_per_cta)", 1, 1},
      kernel.blockSize(), 0,
      describeParams(ctx, ::paged_attn::appendKernelParams(spec)));
  append["rows_per_cta"] = kernel.rowsPerCTA();
  if (spec.kvQuant)
    append["fp8_conversion"] = fp8Conversion;
  return llvm::json::Object{{"config", std::move(config)},
                            {"append", std::move(append)}};
}

//===----------------------------------------------------------------------===//
// Compilation
//===----------------------------------------------------------------------===//

/// The strategies the selection recorded on the decode ops of `module`.
static FailureOr<SmallVector<DecodeKernelConfig>>
readStrategies(ModuleOp module, const DecodeKernelOptions &kernels) {
  SmallVector<DecodeKernelConfig> configs;
  WalkResult walk = module.walk([&](DecodeOp op) {
    FailureOr<DecodeKernelConfig> config = getDecodeKernelConfig(op, kernels);
    if (failed(config))
      return WalkResult::interrupt();
    configs.push_back(*config);
    return WalkResult::advance();
  });
  if (walk.wasInterrupted())
    return failure();
  return configs;
}

FailureOr<CompiledKernels> mlir::paged_attn::compileDecodeKernels(
    MLIRContext *ctx, ArrayRef<DecodeSpec> specs,
    const KernelCompileOptions &options, StringRef ptxFileName) {
  KernelSet set;
  set.decodes.assign(specs.begin(), specs.end());
  return compileKernels(ctx, set, options, ptxFileName);
}

FailureOr<CompiledKernels>
mlir::paged_attn::compileKernels(MLIRContext *ctx, const KernelSet &set,
                                 const KernelCompileOptions &options,
                                 StringRef ptxFileName) {
  Location loc = UnknownLoc::get(ctx);
  if (std::string error = checkTarget(options.chip, options.features);
      !error.empty())
    return emitError(loc) << error;
  if (options.optLevel < 0 || options.optLevel > 3)
    return emitError(loc) << "opt level must be 0 to 3, got "
                          << options.optLevel;
  if (set.empty())
    return emitError(loc) << "no kernels to compile";
  for (const DecodeSpec &spec : set.decodes)
    if (spec.numWarps != options.kernels.numWarps)
      return emitError(loc)
             << spec.name() << " asks for " << spec.numWarps
             << " warps, the options for " << options.kernels.numWarps;
  FailureOr<OwningOpRef<ModuleOp>> module = buildKernelModule(ctx, set);
  if (failed(module))
    return failure();

  PagedAttnToPTXOptions pipeline;
  pipeline.chip = options.chip;
  pipeline.features = options.features;
  pipeline.optLevel = options.optLevel;
  // The strategies are chosen once, read back for the manifest, and built.
  PassManager select(ctx);
  buildPagedAttnSelectionPipeline(select, pipeline, options.kernels);
  if (failed(select.run(**module)))
    return failure();
  FailureOr<SmallVector<DecodeKernelConfig>> configs =
      readStrategies(**module, options.kernels);
  if (failed(configs))
    return failure();
  PassManager build(ctx);
  buildPagedAttnKernelPipeline(build, pipeline);
  if (failed(build.run(**module)))
    return failure();
  FailureOr<std::string> ptx = extractPTX(**module);
  if (failed(ptx))
    return failure();
  // What the selection fitted to the chip (its fp8 conversions).
  const ::paged_attn::TargetInfo *chip =
      ::paged_attn::lookupTarget(options.chip);
  DecodeKernelOptions fittedKernels =
      options.kernels.forTarget(*chip, options.features);

  llvm::json::Array kernels, merges, appends;
  for (const DecodeKernelConfig &c : *configs)
    kernels.push_back(describeKernels(ctx, c));
  for (const ::paged_attn::MergeSpec &spec : set.merges)
    merges.push_back(describeMerge(ctx, spec));
  for (const ::paged_attn::AppendSpec &spec : set.appends)
    appends.push_back(describeAppend(ctx, spec, fittedKernels.fp8Conversions));
  CompiledKernels result;
  result.ptx = std::move(*ptx);
  const ::paged_attn::TargetInfo *target =
      ::paged_attn::lookupTarget(options.chip);
  std::string features =
      options.features.empty()
          ? ::paged_attn::ptxFeature(target->defaultPTXVersion)
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
  // Manifests without merges stay as they were.
  if (!merges.empty())
    result.manifest.getAsObject()->try_emplace("merges", std::move(merges));
  if (!appends.empty())
    result.manifest.getAsObject()->try_emplace("appends", std::move(appends));
  return result;
}
