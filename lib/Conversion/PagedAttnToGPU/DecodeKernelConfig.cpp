//===- DecodeKernelConfig.cpp - what a decode kernel is built for ---------===//

#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernelConfig.h"

#include "llvm/Support/FormatVariadic.h"

#include <algorithm>

using namespace mlir;
using namespace mlir::paged_attn;

//===----------------------------------------------------------------------===//
// Options
//===----------------------------------------------------------------------===//

std::variant<DecodeKernelOptions, std::string>
mlir::paged_attn::parseDecodeKernelOptions(const DecodeKernelOptionStrings &in,
                                           StringRef prefix) {
  DecodeKernelOptions out;
  std::string error;
  // Copies `value` into `field` when it is in [lo, hi], else sets `error`.
  auto inRange = [&](StringRef name, int64_t value, int64_t lo, int64_t hi,
                     int64_t &field) {
    if (value < lo || value > hi) {
      error = llvm::formatv("{0}{1} must be in [{2}, {3}], got {4}", prefix,
                            name, lo, hi, value)
                  .str();
      return false;
    }
    field = value;
    return true;
  };
  if (!inRange("num-warps", in.numWarps, 1, 32, out.numWarps) ||
      !inRange("tokens-per-lane-group", in.tokensPerLaneGroup, 0, 16,
               out.tokensPerLaneGroup) ||
      !inRange("max-heads-per-cta", in.maxHeadsPerCTA, 0, 256,
               out.maxHeadsPerCTA) ||
      !inRange("min-ctas-per-sm", in.minCTAsPerSM, 0, 32, out.minCTAsPerSM) ||
      !inRange("kv-stages", in.kvStages, 2, kMaxKVStagesPerWarp, out.kvStages))
    return error;
  if (!llvm::is_contained({0, 64, 128, 256}, in.l2PrefetchBytes))
    return llvm::formatv("{0}l2-prefetch must be 0, 64, 128 or 256, got {1}",
                         prefix, in.l2PrefetchBytes)
        .str();
  out.l2PrefetchBytes = in.l2PrefetchBytes;
  if (in.sharedMemoryLimit < 0)
    return llvm::formatv("{0}shared-memory-limit must not be negative, got {1}",
                         prefix, in.sharedMemoryLimit)
        .str();
  out.sharedMemoryLimit = in.sharedMemoryLimit;
  out.programmaticLaunch = in.programmaticLaunch;
  out.fp8Conversions = in.fp8Conversions;
  std::optional<PageTablePrefetch> prefetch =
      parsePageTablePrefetch(in.prefetchPageTable);
  if (!prefetch)
    return llvm::formatv("{0}prefetch-page-table must be auto, on or off, got "
                         "'{1}'",
                         prefix, in.prefetchPageTable)
        .str();
  out.prefetchPageTable = *prefetch;
  std::optional<TensorCoreUse> tensorCores = parseTensorCoreUse(in.tensorCores);
  if (!tensorCores)
    return llvm::formatv("{0}tensor-cores must be auto, on or off, got '{1}'",
                         prefix, in.tensorCores)
        .str();
  out.tensorCores = *tensorCores;
  return out;
}

DecodeKernelOptions
DecodeKernelOptions::forTarget(const ::paged_attn::TargetInfo &target,
                               StringRef features) const {
  int ptx = ::paged_attn::ptxVersionOf(features);
  if (ptx == 0)
    ptx = target.defaultPTXVersion;
  DecodeKernelOptions options = *this;
  options.sharedMemoryLimit = target.sharedMemoryPerBlockOptIn;
  options.programmaticLaunch = target.programmaticLaunch;
  if (ptx < ::paged_attn::kL2PrefetchHintPTXVersion)
    options.l2PrefetchBytes = 0;
  options.fp8Conversions = target.fp8ConversionPTXVersion > 0 &&
                           ptx >= target.fp8ConversionPTXVersion;
  return options;
}

/// The auto/on/off switches share their spelling.
template <typename Switch>
static std::optional<Switch> parseAutoOnOff(StringRef s) {
  if (s == "auto")
    return Switch::Auto;
  if (s == "on")
    return Switch::On;
  if (s == "off")
    return Switch::Off;
  return std::nullopt;
}

std::optional<PageTablePrefetch>
mlir::paged_attn::parsePageTablePrefetch(StringRef s) {
  return parseAutoOnOff<PageTablePrefetch>(s);
}

std::optional<TensorCoreUse> mlir::paged_attn::parseTensorCoreUse(StringRef s) {
  return parseAutoOnOff<TensorCoreUse>(s);
}

//===----------------------------------------------------------------------===//
// Strategy
//===----------------------------------------------------------------------===//

DecodeStrategy DecodeStrategy::fromAttr(DecodeStrategyAttr attr) {
  DecodeStrategy s;
  s.kernel = attr.getKernel();
  s.headsPerCTA = attr.getHeadsPerCta();
  s.kvStages = attr.getKvStages();
  s.l2PrefetchBytes = attr.getL2Prefetch();
  s.tokensPerLaneGroup = attr.getTokensPerLaneGroup();
  s.prefetchPageTable = attr.getPrefetchPageTable();
  s.minCTAsPerSM = attr.getMinCtasPerSm();
  s.programmaticLaunch = attr.getProgrammaticLaunch();
  s.queriesPerCTA = attr.getQueriesPerCta();
  s.fp8Conversion = attr.getFp8Conversion();
  return s;
}

DecodeStrategyAttr DecodeStrategy::toAttr(MLIRContext *ctx,
                                          int64_t numWarps) const {
  return DecodeStrategyAttr::get(
      ctx, kernel, numWarps, headsPerCTA, kvStages, l2PrefetchBytes,
      tokensPerLaneGroup, prefetchPageTable, minCTAsPerSM, programmaticLaunch,
      queriesPerCTA, fp8Conversion);
}

/// Whether the tensor-core kernel can compute `spec`: 16-bit q, head_dim a
/// multiple of 16 up to the op's bound (256), of 32 for fp8 caches (a
/// tile's row of codes is then an even number of 16-byte chunks, and an
/// ldmatrix takes two k steps).
static bool tensorCoresServe(const DecodeSpec &spec) {
  int64_t multiple = spec.kvQuant ? 32 : 16;
  return (spec.dtype == DType::BF16 || spec.dtype == DType::F16) &&
         spec.headDim % multiple == 0 &&
         spec.headDim <= DecodeSpec::kMaxHeadDim;
}

/// The largest divisor of the group up to `cap` that `fits`.
template <typename Fits>
static int64_t largestHeadDivisor(int64_t group, int64_t cap, Fits fits) {
  for (int64_t heads = std::min(group, cap); heads > 1; --heads)
    if (group % heads == 0 && fits(heads))
      return heads;
  return 1;
}

/// Tensor cores: the largest divisor of the group up to the rows a CTA
/// serves at this head_dim (two row groups of warps where the warps split
/// evenly) and maxHeadsPerCTA.
static int64_t tensorCoreHeads(const DecodeSpec &spec,
                               const DecodeKernelOptions &o) {
  return largestHeadDivisor(
      spec.groupSize(),
      DecodeKernelConfig::maxMmaRowsPerCTA(spec.headDim, spec.numWarps),
      [&](int64_t heads) {
        return o.maxHeadsPerCTA <= 0 || heads <= o.maxHeadsPerCTA;
      });
}

/// A multi-token decode's queries per CTA: as many of the L as fit beside
/// `heads` heads in `maxRows` rows, so that one CTA reads each key once for
/// all of them.
static int64_t queriesThatFit(const DecodeSpec &spec, int64_t heads,
                              int64_t maxRows) {
  return std::clamp<int64_t>(maxRows / heads, 1, spec.queryLen);
}

/// The tensor-core kernel's stages: kvStages tiles per warp (a ring shared
/// by row groups holds that many per sharer, each copying its part of every
/// tile, so that a warp keeps the same bytes in flight), fewer where the
/// shared-memory limit asks for it, down to 2; none when even 2 do not fit.
static std::optional<int64_t> tensorCoreStages(const DecodeKernelConfig &c,
                                               const DecodeKernelOptions &o) {
  auto fits = [&](int64_t stages) {
    return o.sharedMemoryLimit <= 0 ||
           c.mmaSharedMemoryBytes(stages) <= o.sharedMemoryLimit;
  };
  if (!fits(2))
    return std::nullopt;
  int64_t stages = o.kvStages * c.mmaRowGroups();
  while (stages > 2 && !fits(stages))
    --stages;
  return stages;
}

/// The tensor-core strategy, when the kernel serves the spec and fits.
static std::optional<DecodeKernelConfig>
selectTensorCores(MLIRContext *ctx, const DecodeSpec &spec,
                  const DecodeKernelOptions &o) {
  // The mma's rows are the query group, times the new queries of a
  // multi-token decode.
  bool wanted = o.tensorCores == TensorCoreUse::On ||
                (o.tensorCores == TensorCoreUse::Auto &&
                 spec.groupSize() * spec.queryLen >= 4);
  if (!wanted || !tensorCoresServe(spec))
    return std::nullopt;
  DecodeStrategy s;
  s.kernel = DecodeKernelKind::tensor_cores;
  s.headsPerCTA = tensorCoreHeads(spec, o);
  s.queriesPerCTA = queriesThatFit(
      spec, s.headsPerCTA,
      DecodeKernelConfig::maxMmaRowsPerCTA(spec.headDim, spec.numWarps));
  DecodeKernelConfig c = DecodeKernelConfig::get(ctx, spec, s);
  std::optional<int64_t> stages = tensorCoreStages(c, o);
  if (!stages)
    return std::nullopt;
  c.strategy.kvStages = *stages;
  c.strategy.l2PrefetchBytes = o.l2PrefetchBytes;
  return c;
}

/// Static shared memory a CTA may always use (more must be opted into,
/// which the CUDA-core kernel's workgroup buffers cannot be).
static constexpr int64_t kStaticSharedMemoryLimit = 48 * 1024;

/// The CUDA-core strategy: rows (heads, then a multi-token decode's
/// queries beside them) within 64 registers of q and of the accumulators
/// each (and the warps' merge buffers within static shared memory: many
/// warps take fewer rows), loads in flight within about 32 registers, and
/// the page-table prefetch when a thread's softmax state is small.
static DecodeKernelConfig selectCudaCores(MLIRContext *ctx,
                                          const DecodeSpec &spec,
                                          const DecodeKernelOptions &o) {
  DecodeStrategy s;
  s.kernel = DecodeKernelKind::cuda_cores;
  DecodeKernelConfig c = DecodeKernelConfig::get(ctx, spec, s);
  int64_t elems = c.elemsPerThread();
  auto rowsFit = [&] {
    return c.rowsPerCTA() * elems <= 64 &&
           c.sharedMemoryBytes() <= kStaticSharedMemoryLimit;
  };
  c.strategy.headsPerCTA = largestHeadDivisor(
      spec.groupSize(), DecodeKernelConfig::kMaxCudaCoreHeadsPerCTA,
      [&](int64_t heads) {
        c.strategy.headsPerCTA = heads;
        return rowsFit() &&
               (o.maxHeadsPerCTA <= 0 || heads <= o.maxHeadsPerCTA);
      });
  for (int64_t queries = queriesThatFit(
           spec, c.headsPerCTA(), DecodeKernelConfig::kMaxCudaCoreHeadsPerCTA);
       queries >= 1; --queries) {
    c.strategy.queriesPerCTA = queries;
    if (rowsFit())
      break;
  }
  // Registers a token's K slice takes as loaded (fp8: a byte an element).
  int64_t regsPerToken = std::max<int64_t>(
      1, elems * int64_t(::paged_attn::dtypeBytes(spec.cacheDType())) / 4);
  c.strategy.tokensPerLaneGroup =
      o.tokensPerLaneGroup > 0 ? o.tokensPerLaneGroup
                               : std::clamp<int64_t>(16 / regsPerToken, 1, 4);
  switch (o.prefetchPageTable) {
  case PageTablePrefetch::On:
    c.strategy.prefetchPageTable = true;
    break;
  case PageTablePrefetch::Off:
    c.strategy.prefetchPageTable = false;
    break;
  case PageTablePrefetch::Auto:
    c.strategy.prefetchPageTable = c.rowsPerCTA() * elems <= 16;
    break;
  }
  return c;
}

DecodeKernelConfig
DecodeKernelConfig::select(MLIRContext *ctx, const DecodeSpec &spec,
                           const DecodeKernelOptions &options) {
  std::optional<DecodeKernelConfig> config =
      selectTensorCores(ctx, spec, options);
  if (!config)
    config = selectCudaCores(ctx, spec, options);
  config->strategy.minCTAsPerSM = options.minCTAsPerSM;
  config->strategy.programmaticLaunch = options.programmaticLaunch;
  config->strategy.fp8Conversion =
      spec.kvQuant.has_value() && options.fp8Conversions;
  return *config;
}

MergeKernelConfig MergeKernelConfig::get(MLIRContext *ctx,
                                         const ::paged_attn::MergeSpec &spec,
                                         std::string kernelName,
                                         bool programmaticLaunch,
                                         MergeMapping mapping) {
  return {spec,
          std::move(kernelName),
          programmaticLaunch,
          toMLIRType(ctx, spec.dtype),
          toMLIRType(ctx, spec.partialDType),
          mapping};
}

MergeKernelConfig
MergeKernelConfig::forOp(MLIRContext *ctx,
                         const ::paged_attn::MergeSpec &spec) {
  // Merges of shards and cascades combine a few partials of many rows: a
  // thread per column, without barriers (bench/NOTES.md 23).
  return get(ctx, spec, ::paged_attn::mergeOpKernelName(spec),
             /*programmaticLaunch=*/false, MergeMapping::ColumnThreads);
}

MergeKernelConfig DecodeKernelConfig::mergeConfig(MLIRContext *ctx) const {
  return MergeKernelConfig::get(ctx, ::paged_attn::splitMergeSpec(spec),
                                mergeKernelName(), strategy.programmaticLaunch);
}

DecodeKernelConfig DecodeKernelConfig::get(MLIRContext *ctx,
                                           const DecodeSpec &spec,
                                           const DecodeStrategy &strategy) {
  return {spec, strategy, toMLIRType(ctx, spec.dtype)};
}

//===----------------------------------------------------------------------===//
// Thread mapping
//===----------------------------------------------------------------------===//

int64_t DecodeKernelConfig::threadsPerToken() const {
  int64_t vectors = vectorsPerRow();
  int64_t threads = 1;
  while (threads < 32 && vectors % (threads * 2) == 0)
    threads *= 2;
  if (vectors / threads <= kMaxVectorsPerLane)
    return threads;
  while (threads < 32 && threads * 2 <= vectors)
    threads *= 2;
  return threads;
}

int64_t DecodeKernelConfig::mmaSharedMemoryBytes(int64_t stages) const {
  int64_t rings =
      tokenWarps() * stages * 2 * kMmaTileTokens * mmaRingRowBytes();
  int64_t merge = tokenWarps() * mmaPaddedRows() * (spec.headDim + 2) * 4;
  return std::max(rings, merge);
}

int64_t DecodeKernelConfig::tokensPerIteration() const {
  if (usesTensorCores())
    return tokenWarps() * kMmaTileTokens;
  return numWarps() * tokensPerWarp() * strategy.tokensPerLaneGroup;
}

int64_t DecodeKernelConfig::sharedMemoryBytes() const {
  if (usesTensorCores())
    return 0;
  return numWarps() * rowsPerCTA() * (spec.headDim + 2) * 4;
}

int64_t DecodeKernelConfig::dynamicSharedMemoryBytes() const {
  if (!usesTensorCores())
    return 0;
  return mmaSharedMemoryBytes(strategy.kvStages);
}

//===----------------------------------------------------------------------===//
// A strategy given by hand
//===----------------------------------------------------------------------===//

std::string mlir::paged_attn::checkStrategy(MLIRContext *ctx,
                                            const DecodeSpec &spec,
                                            int64_t numWarps,
                                            const DecodeStrategy &s,
                                            int64_t sharedMemoryLimit) {
  auto outside = [](const char *what, int64_t v, int64_t lo, int64_t hi) {
    return std::string(what) + " must be in [" + std::to_string(lo) + ", " +
           std::to_string(hi) + "], got " + std::to_string(v);
  };
  bool tensorCores = s.kernel == DecodeKernelKind::tensor_cores;
  // A tensor-core CTA's rows may fill two row groups of warps.
  int64_t maxHeads =
      tensorCores
          ? DecodeKernelConfig::maxMmaRowsPerCTA(spec.headDim, numWarps)
          : DecodeKernelConfig::kMaxCudaCoreHeadsPerCTA;
  if (numWarps < 1 || numWarps > 32)
    return outside("num_warps", numWarps, 1, 32);
  if (s.headsPerCTA < 1 || s.headsPerCTA > maxHeads)
    return outside("heads_per_cta", s.headsPerCTA, 1, maxHeads);
  if (spec.groupSize() % s.headsPerCTA != 0)
    return "heads_per_cta (" + std::to_string(s.headsPerCTA) +
           ") must divide the query heads per KV head (" +
           std::to_string(spec.groupSize()) + ")";
  if (s.queriesPerCTA < 1 || s.queriesPerCTA > spec.queryLen)
    return outside("queries_per_cta", s.queriesPerCTA, 1, spec.queryLen);
  if (s.queriesPerCTA * s.headsPerCTA > maxHeads)
    return "queries_per_cta times heads_per_cta (" +
           std::to_string(s.queriesPerCTA * s.headsPerCTA) +
           ") must be at most " + std::to_string(maxHeads) +
           ", the rows a CTA of this kernel serves with " +
           std::to_string(numWarps) + " warps";
  if (s.minCTAsPerSM < 0 || s.minCTAsPerSM > 32)
    return outside("min_ctas_per_sm", s.minCTAsPerSM, 0, 32);
  if (s.fp8Conversion && !spec.kvQuant)
    return "fp8_conversion applies to fp8 caches only";
  if (!tensorCores) {
    if (s.tokensPerLaneGroup < 1 || s.tokensPerLaneGroup > 16)
      return outside("tokens_per_lane_group", s.tokensPerLaneGroup, 1, 16);
    return "";
  }
  if (!tensorCoresServe(spec))
    return "the tensor-core kernel serves f16/bf16 with head_dim a multiple "
           "of 16 up to 256 (of 32 with fp8 caches)";
  DecodeSpec withWarps = spec;
  withWarps.numWarps = numWarps;
  DecodeKernelConfig config = DecodeKernelConfig::get(ctx, withWarps, s);
  int64_t maxStages = kMaxKVStagesPerWarp * config.mmaRowGroups();
  if (s.kvStages < 2 || s.kvStages > maxStages)
    return outside("kv_stages", s.kvStages, 2, maxStages);
  if (!llvm::is_contained({0, 64, 128, 256}, s.l2PrefetchBytes))
    return "l2_prefetch must be 0, 64, 128 or 256, got " +
           std::to_string(s.l2PrefetchBytes);
  int64_t bytes = config.dynamicSharedMemoryBytes();
  if (sharedMemoryLimit > 0 && bytes > sharedMemoryLimit)
    return std::to_string(s.kvStages) + " stages need " +
           std::to_string(bytes) + " bytes of shared memory, more than " +
           std::to_string(sharedMemoryLimit);
  return "";
}
