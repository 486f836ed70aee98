//===- DecodeKernelConfig.h - what a decode kernel is built for -*- C++ -*-===//
//
// The static parameters a decode kernel pair is specialised on, and the
// thread mapping derived from them. The conversion builds kernels from it and
// paged-attn-compile writes it into the manifest the runtime reads.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_CONVERSION_PAGEDATTNTOGPU_DECODEKERNELCONFIG_H
#define PAGEDATTN_CONVERSION_PAGEDATTNTOGPU_DECODEKERNELCONFIG_H

#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttn.h"

#include <optional>
#include <string>
#include <variant>

namespace mlir {
namespace paged_attn {

/// Whether the decode loop loads the next iteration's page-table entries
/// during the current one.
enum class PageTablePrefetch { Auto, On, Off };

/// Whether the decode kernel computes with tensor cores (mma.sync over the
/// query group, K and V staged through shared memory by cp.async) or with
/// one lane group per token on the CUDA cores.
enum class TensorCoreUse { Auto, On, Off };

/// Code-generation choices that do not change what a kernel computes.
struct DecodeKernelOptions {
  int64_t numWarps = 4;
  /// Tokens each lane group loads per loop iteration; 0 picks by registers.
  int64_t tokensPerLaneGroup = 0;
  /// Cap on the query heads one CTA serves; 0 picks by registers.
  int64_t maxHeadsPerCTA = 0;
  /// Auto prefetches only when a thread's softmax state is small: the
  /// prefetched entries cost registers, which the larger GQA kernels need
  /// for occupancy (measured on H200, bench/NOTES.md).
  PageTablePrefetch prefetchPageTable = PageTablePrefetch::Auto;
  /// Ask ptxas to fit this many CTAs per SM (nvvm.minctasm), trading
  /// registers for occupancy; 0 leaves the register count to ptxas.
  int64_t minCTAsPerSM = 0;
  /// Auto: for 16-bit caches whose query group has 4 or more heads.
  TensorCoreUse tensorCores = TensorCoreUse::Auto;
  /// Shared-memory buffers per warp of the tensor-core kernel (K/V tiles
  /// in flight plus the one being computed on).
  int64_t kvStages = 3;
  /// Bytes the tensor-core kernel's cp.async copies ask L2 to fetch around
  /// each 16-byte request (the .L2::64B/128B/256B prefetch-size hint; 0
  /// for none). 128 made decode 1-3% faster on H200 than no hint, and the
  /// same load pattern 2-3% faster in a probe on H100 (bench/NOTES.md 18).
  /// Needs PTX 7.4.
  int64_t l2PrefetchBytes = 128;
  /// Shared memory one CTA may use on the target, in bytes (0: no limit).
  /// The tensor-core kernel drops stages to fit, down to 2, and configs
  /// that do not fit even then use the CUDA-core kernel.
  int64_t sharedMemoryLimit = 0;
  /// Programmatic dependent launch (sm_90): the decode kernel lets the
  /// merge kernel launch early, and the merge kernel waits for the decode
  /// grid's results with griddepcontrol.wait.
  bool programmaticLaunch = false;
};

/// The options as the pass and paged-attn-compile spell them.
struct DecodeKernelOptionStrings {
  int64_t numWarps = 4;
  int64_t tokensPerLaneGroup = 0;
  int64_t maxHeadsPerCTA = 0;
  std::string prefetchPageTable = "auto";
  int64_t minCTAsPerSM = 0;
  std::string tensorCores = "auto";
  int64_t kvStages = 3;
  int64_t l2PrefetchBytes = 128;
  int64_t sharedMemoryLimit = 0;
  bool programmaticLaunch = false;
};

/// Checks and converts `strings`; on failure returns the message, which
/// names the bad option as `prefix` + its pass spelling ("num-warps").
std::variant<DecodeKernelOptions, std::string>
parseDecodeKernelOptions(const DecodeKernelOptionStrings &strings,
                         llvm::StringRef prefix = "");

/// The op's shapes and types, with the code-generation options it is built
/// with.
struct DecodeKernelConfig : DecodeKernelOptions {
  int64_t numHeads = 0;
  int64_t numKVHeads = 0;
  int64_t headDim = 0;
  int64_t pageSize = 0;
  Type elementType;
  KVLayout layout = KVLayout::nhd;

  /// The config of a verified decode op.
  static DecodeKernelConfig fromOp(DecodeOp op,
                                   const DecodeKernelOptions &options);
  void setOptions(const DecodeKernelOptions &options);

  int64_t elementBytes() const {
    return elementType.getIntOrFloatBitWidth() / 8;
  }
  /// Query heads per KV head.
  int64_t groupSize() const { return numHeads / numKVHeads; }
  /// Elements in one 16-byte vector.
  int64_t vectorElems() const { return 16 / elementBytes(); }
  int64_t vectorsPerRow() const { return headDim / vectorElems(); }
  /// Lanes that share one token's row: the largest power of two that
  /// divides the row's vector count, at most a warp; but where that leaves
  /// a lane more than kMaxVectorsPerLane vectors (a row of 13, 15, 17, ...
  /// vectors), the largest power of two up to the vector count (and a
  /// warp), with the last vector of some lanes empty.
  int64_t threadsPerToken() const;
  /// Vectors of a row one lane holds (the last may be past the row's end:
  /// hasEmptyVectors()).
  int64_t vectorsPerThread() const {
    return (vectorsPerRow() + threadsPerToken() - 1) / threadsPerToken();
  }
  /// Whether some lanes' last vector lies past the end of the row.
  bool hasEmptyVectors() const {
    return vectorsPerRow() % threadsPerToken() != 0;
  }
  /// More vectors per lane than this spill registers (ptxas matrix).
  static constexpr int64_t kMaxVectorsPerLane = 8;
  /// Most query heads a CTA of the CUDA-core kernel serves: with 16, the
  /// per-head softmax statistics push f32 kernels past 255 registers.
  static constexpr int64_t kMaxCudaCoreHeadsPerCTA = 8;
  int64_t elemsPerThread() const { return vectorsPerThread() * vectorElems(); }
  /// Tokens a warp works on at once (one per lane group).
  int64_t tokensPerWarp() const { return 32 / threadsPerToken(); }
  /// Whether the tensor-core kernel can serve this config: 16-bit K/V,
  /// head_dim a multiple of 16 up to 128.
  bool supportsTensorCores() const;
  /// Whether the decode kernel is the tensor-core one (resolves Auto and
  /// the shared-memory limit).
  bool usesTensorCores() const;
  /// K/V stages the tensor-core kernel is built with: kvStages, fewer where
  /// the shared-memory limit asks for it.
  int64_t stagesUsed() const;
  /// Dynamic shared memory of the tensor-core kernel with `stages` stages.
  int64_t mmaSharedMemoryBytes(int64_t stages) const;
  /// Tokens one warp of the tensor-core kernel computes on at a time (one
  /// mma tile).
  static constexpr int64_t kMmaTileTokens = 16;
  /// Query heads one CTA serves. Tensor cores: the largest divisor of the
  /// group size up to 16 (the rows of one mma). CUDA cores: the largest divisor
  /// of the group size up to kMaxCudaCoreHeadsPerCTA that keeps q and the
  /// accumulators of a thread within 64 registers each (and within
  /// maxHeadsPerCTA when set).
  int64_t headsPerCTA() const;
  /// CTAs along grid x for one KV head.
  int64_t ctasPerKVHead() const { return groupSize() / headsPerCTA(); }
  /// Tokens each lane group loads before it computes (loads in flight):
  /// tokensPerLaneGroup when set, else by registers.
  int64_t tokensPerGroupIteration() const;
  int64_t blockSize() const { return numWarps * 32; }
  /// Whether the kernel prefetches page-table entries (resolves Auto).
  bool prefetchesPageTable() const;
  /// Tokens a CTA consumes per loop iteration; split-KV chunks are rounded
  /// up to a multiple of it.
  int64_t tokensPerIteration() const {
    if (usesTensorCores())
      return numWarps * kMmaTileTokens;
    return numWarps * tokensPerWarp() * tokensPerGroupIteration();
  }
  /// Static shared memory of the decode kernel in bytes.
  int64_t sharedMemoryBytes() const;
  /// Dynamic shared memory of the decode kernel in bytes (tensor-core
  /// kernel: the K/V stages, reused for the cross-warp merge).
  int64_t dynamicSharedMemoryBytes() const;
  /// Query heads the tensor-core kernel's accumulators are laid out for:
  /// 8 per mma column block.
  int64_t mmaHeadBlocks() const;
  /// Query heads one CTA of the tensor-core kernel serves (whether or not
  /// the config uses it): the largest divisor of the group up to 16.
  int64_t mmaHeadsPerCTA() const;
  /// Threads per CTA of the merge kernel.
  int64_t mergeBlockSize() const { return 128; }

  /// "h32_kv8_d128_p16_bf16_nhd_w4".
  std::string name() const;
  std::string elementTypeName() const;
  std::string decodeKernelName() const { return "paged_attn_decode_" + name(); }
  std::string mergeKernelName() const { return "paged_attn_merge_" + name(); }
  std::string checkKernelName() const { return "paged_attn_check_" + name(); }
  /// Threads per CTA of the page-table check kernel.
  int64_t checkBlockSize() const { return 128; }
};

/// "auto", "on" or "off"; std::nullopt for anything else.
std::optional<PageTablePrefetch> parsePageTablePrefetch(llvm::StringRef s);
llvm::StringRef stringifyPageTablePrefetch(PageTablePrefetch p);
/// "auto", "on" or "off"; std::nullopt for anything else.
std::optional<TensorCoreUse> parseTensorCoreUse(llvm::StringRef s);
llvm::StringRef stringifyTensorCoreUse(TensorCoreUse t);

} // namespace paged_attn
} // namespace mlir

#endif // PAGEDATTN_CONVERSION_PAGEDATTNTOGPU_DECODEKERNELCONFIG_H
