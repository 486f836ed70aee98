//===- DecodeKernelConfig.cpp - what a decode kernel is built for ---------===//

#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernelConfig.h"

#include "llvm/Support/FormatVariadic.h"

#include <algorithm>

using namespace mlir;
using namespace mlir::paged_attn;

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
      !inRange("kv-stages", in.kvStages, 2, 4, out.kvStages))
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

void DecodeKernelConfig::setOptions(const DecodeKernelOptions &options) {
  static_cast<DecodeKernelOptions &>(*this) = options;
}

DecodeKernelConfig
DecodeKernelConfig::fromOp(DecodeOp op, const DecodeKernelOptions &options) {
  DecodeKernelConfig config;
  config.numHeads = op.getNumHeads();
  config.numKVHeads = op.getNumKVHeads();
  config.headDim = op.getHeadDim();
  config.pageSize = op.getPageSize();
  config.elementType = op.getElementType();
  config.layout = op.getLayout();
  config.setOptions(options);
  return config;
}

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

bool DecodeKernelConfig::supportsTensorCores() const {
  return (elementType.isBF16() || elementType.isF16()) && headDim % 16 == 0 &&
         headDim <= 128;
}

bool DecodeKernelConfig::usesTensorCores() const {
  bool fits = sharedMemoryLimit <= 0 ||
              mmaSharedMemoryBytes(/*stages=*/2) <= sharedMemoryLimit;
  switch (tensorCores) {
  case TensorCoreUse::On:
    return supportsTensorCores() && fits;
  case TensorCoreUse::Off:
    return false;
  case TensorCoreUse::Auto:
    return supportsTensorCores() && fits && groupSize() >= 4;
  }
  return false;
}

int64_t DecodeKernelConfig::stagesUsed() const {
  int64_t stages = kvStages;
  while (stages > 2 && sharedMemoryLimit > 0 &&
         mmaSharedMemoryBytes(stages) > sharedMemoryLimit)
    --stages;
  return stages;
}

int64_t DecodeKernelConfig::mmaHeadsPerCTA() const {
  for (int64_t heads = std::min<int64_t>(groupSize(), 16); heads > 1; --heads)
    if (groupSize() % heads == 0 &&
        (maxHeadsPerCTA <= 0 || heads <= maxHeadsPerCTA))
      return heads;
  return 1;
}

int64_t DecodeKernelConfig::mmaHeadBlocks() const {
  return (mmaHeadsPerCTA() + 7) / 8;
}

int64_t DecodeKernelConfig::mmaSharedMemoryBytes(int64_t stages) const {
  int64_t rings =
      numWarps * stages * 2 * kMmaTileTokens * (headDim + 8) * elementBytes();
  int64_t merge = numWarps * mmaHeadBlocks() * 8 * (headDim + 2) * 4;
  return std::max(rings, merge);
}

int64_t DecodeKernelConfig::headsPerCTA() const {
  if (usesTensorCores())
    return mmaHeadsPerCTA();
  for (int64_t heads = std::min(groupSize(), kMaxCudaCoreHeadsPerCTA);
       heads > 1; --heads)
    if (groupSize() % heads == 0 && heads * elemsPerThread() <= 64 &&
        (maxHeadsPerCTA <= 0 || heads <= maxHeadsPerCTA))
      return heads;
  return 1;
}

int64_t DecodeKernelConfig::tokensPerGroupIteration() const {
  if (tokensPerLaneGroup > 0)
    return tokensPerLaneGroup;
  // Keep the K and V slices loaded ahead within about 32 registers.
  int64_t regsPerToken =
      std::max<int64_t>(1, elemsPerThread() * elementBytes() / 4);
  return std::clamp<int64_t>(16 / regsPerToken, 1, 4);
}

bool DecodeKernelConfig::prefetchesPageTable() const {
  switch (prefetchPageTable) {
  case PageTablePrefetch::On:
    return true;
  case PageTablePrefetch::Off:
    return false;
  case PageTablePrefetch::Auto:
    return headsPerCTA() * elemsPerThread() <= 16;
  }
  return false;
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

template <typename Switch> static StringRef stringifyAutoOnOff(Switch v) {
  switch (v) {
  case Switch::Auto:
    return "auto";
  case Switch::On:
    return "on";
  case Switch::Off:
    return "off";
  }
  return "auto";
}

std::optional<PageTablePrefetch>
mlir::paged_attn::parsePageTablePrefetch(StringRef s) {
  return parseAutoOnOff<PageTablePrefetch>(s);
}

std::optional<TensorCoreUse> mlir::paged_attn::parseTensorCoreUse(StringRef s) {
  return parseAutoOnOff<TensorCoreUse>(s);
}

StringRef mlir::paged_attn::stringifyTensorCoreUse(TensorCoreUse t) {
  return stringifyAutoOnOff(t);
}

StringRef mlir::paged_attn::stringifyPageTablePrefetch(PageTablePrefetch p) {
  return stringifyAutoOnOff(p);
}

int64_t DecodeKernelConfig::sharedMemoryBytes() const {
  if (usesTensorCores())
    return 0;
  return numWarps * headsPerCTA() * (headDim + 2) * 4;
}

int64_t DecodeKernelConfig::dynamicSharedMemoryBytes() const {
  if (!usesTensorCores())
    return 0;
  return mmaSharedMemoryBytes(stagesUsed());
}

std::string DecodeKernelConfig::elementTypeName() const {
  if (elementType.isBF16())
    return "bf16";
  if (elementType.isF16())
    return "f16";
  return "f32";
}

std::string DecodeKernelConfig::name() const {
  return llvm::formatv("h{0}_kv{1}_d{2}_p{3}_{4}_{5}_w{6}", numHeads,
                       numKVHeads, headDim, pageSize, elementTypeName(),
                       stringifyKVLayout(layout), numWarps)
      .str();
}
