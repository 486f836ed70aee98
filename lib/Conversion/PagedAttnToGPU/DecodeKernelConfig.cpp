//===- DecodeKernelConfig.cpp - what a decode kernel is built for ---------===//

#include "PagedAttn/Conversion/PagedAttnToGPU/DecodeKernelConfig.h"

#include "llvm/Support/FormatVariadic.h"

#include <algorithm>

using namespace mlir;
using namespace mlir::paged_attn;

void DecodeKernelConfig::setOptions(const DecodeKernelOptions &options) {
  numWarps = options.numWarps;
  tokensPerLaneGroup = options.tokensPerLaneGroup;
  maxHeadsPerCTA = options.maxHeadsPerCTA;
  prefetchPageTable = options.prefetchPageTable;
  minCTAsPerSM = options.minCTAsPerSM;
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
  int64_t threads = 1;
  while (threads < 32 && vectorsPerRow() % (threads * 2) == 0)
    threads *= 2;
  return threads;
}

int64_t DecodeKernelConfig::headsPerCTA() const {
  for (int64_t heads = groupSize(); heads > 1; --heads)
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

std::optional<PageTablePrefetch>
mlir::paged_attn::parsePageTablePrefetch(StringRef s) {
  if (s == "auto")
    return PageTablePrefetch::Auto;
  if (s == "on")
    return PageTablePrefetch::On;
  if (s == "off")
    return PageTablePrefetch::Off;
  return std::nullopt;
}

StringRef mlir::paged_attn::stringifyPageTablePrefetch(PageTablePrefetch p) {
  switch (p) {
  case PageTablePrefetch::Auto:
    return "auto";
  case PageTablePrefetch::On:
    return "on";
  case PageTablePrefetch::Off:
    return "off";
  }
  return "auto";
}

int64_t DecodeKernelConfig::sharedMemoryBytes() const {
  return numWarps * headsPerCTA() * (headDim + 2) * 4;
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
