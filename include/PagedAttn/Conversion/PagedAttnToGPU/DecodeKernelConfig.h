//===- DecodeKernelConfig.h - what a decode kernel is built for -*- C++ -*-===//
//
// Three steps from an op to a kernel:
//   DecodeKernelOptions  what the user asks for (auto/on/off, stages, ...);
//   DecodeStrategy       what the selection decided for one decode (which
//                        kernel, its stages, heads per CTA, ...), recorded
//                        on the op as #paged_attn.decode_strategy;
//   DecodeKernelConfig   a DecodeSpec with its strategy, and the thread
//                        mapping both imply, which the kernel builders read
//                        and paged-attn-compile writes into the manifest.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_CONVERSION_PAGEDATTNTOGPU_DECODEKERNELCONFIG_H
#define PAGEDATTN_CONVERSION_PAGEDATTNTOGPU_DECODEKERNELCONFIG_H

#include "PagedAttn/Dialect/PagedAttn/IR/DecodeSpec.h"
#include "PagedAttn/Spec/KernelABI.h"

#include <algorithm>
#include <optional>
#include <string>
#include <variant>

namespace mlir {
namespace paged_attn {

/// Whether the decode loop loads the next iteration's page-table entries
/// during the current one.
enum class PageTablePrefetch { Auto, On, Off };

/// The most shared-memory K/V tiles per warp the tensor-core kernel takes
/// (kv-stages); a ring that row groups share holds that many per sharer.
constexpr int64_t kMaxKVStagesPerWarp = 4;

/// Whether the decode kernel computes with tensor cores (mma.sync over the
/// query group, K and V staged through shared memory by cp.async) or with
/// one lane group per token on the CUDA cores.
enum class TensorCoreUse { Auto, On, Off };

/// Code-generation choices that do not change what a kernel computes, as
/// the user asks for them.
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
  /// in flight plus the one being computed on). A ring that the warps of
  /// row groups share holds kvStages times the groups: each warp copies its
  /// part of every tile, and keeps the same bytes in flight.
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
  /// fp8 caches are widened with cvt.rn.f16x2.e4m3x2 (e5m2x2) rather than
  /// integer arithmetic (sm_89 with PTX 8.1, sm_90 with PTX 7.8).
  bool fp8Conversions = false;

  /// The options a target allows: its shared memory, programmatic launch,
  /// fp8 conversions, and no L2 prefetch hint below PTX 7.4 (`features`
  /// empty: the chip's default PTX version).
  DecodeKernelOptions forTarget(const ::paged_attn::TargetInfo &target,
                                StringRef features) const;
};

/// The options as the passes spell them: their textual form is the only
/// place where the enums are strings.
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
  bool fp8Conversions = false;
};

/// Checks and converts `strings`; on failure returns the message, which
/// names the bad option as `prefix` + its pass spelling ("num-warps").
std::variant<DecodeKernelOptions, std::string>
parseDecodeKernelOptions(const DecodeKernelOptionStrings &strings,
                         llvm::StringRef prefix = "");

/// The options of a pass generated from the shared option list
/// (Passes.td), in their string form.
template <typename PassOptionsT>
DecodeKernelOptionStrings getDecodeKernelOptionStrings(const PassOptionsT &o) {
  DecodeKernelOptionStrings s;
  s.numWarps = o.numWarps;
  s.tokensPerLaneGroup = o.tokensPerLaneGroup;
  s.maxHeadsPerCTA = o.maxHeadsPerCTA;
  s.prefetchPageTable = o.prefetchPageTable;
  s.minCTAsPerSM = o.minCTAsPerSM;
  s.tensorCores = o.tensorCores;
  s.kvStages = o.kvStages;
  s.l2PrefetchBytes = o.l2Prefetch;
  s.sharedMemoryLimit = o.sharedMemoryLimit;
  s.programmaticLaunch = o.programmaticLaunch;
  s.fp8Conversions = o.fp8Conversions;
  return s;
}

/// What the selection decided for one decode: every choice resolved.
struct DecodeStrategy {
  DecodeKernelKind kernel = DecodeKernelKind::cuda_cores;
  /// Query heads one CTA serves.
  int64_t headsPerCTA = 1;
  /// Tensor cores: shared-memory K/V stages of a ring and the L2 prefetch
  /// hint (0 for the CUDA-core kernel).
  int64_t kvStages = 0;
  int64_t l2PrefetchBytes = 0;
  /// CUDA cores: tokens a lane group loads per iteration, and whether the
  /// next iteration's page-table entries are loaded early (0 and false for
  /// the tensor-core kernel).
  int64_t tokensPerLaneGroup = 0;
  bool prefetchPageTable = false;
  int64_t minCTAsPerSM = 0;
  bool programmaticLaunch = false;
  /// A multi-token decode's new queries per CTA: a CTA serves
  /// queriesPerCTA x headsPerCTA rows (1 for a single-token decode).
  int64_t queriesPerCTA = 1;
  /// fp8 caches: widened with the chip's fp8 conversion instructions
  /// (DecodeKernelOptions::fp8Conversions) rather than integer arithmetic.
  bool fp8Conversion = false;

  static DecodeStrategy fromAttr(DecodeStrategyAttr attr);
  DecodeStrategyAttr toAttr(MLIRContext *ctx, int64_t numWarps) const;
};

/// Whether `strategy` can build `spec`'s kernels (a hand-written
/// strategy attribute is checked with it): empty, or what is wrong.
std::string checkStrategy(MLIRContext *ctx, const DecodeSpec &spec,
                          int64_t numWarps, const DecodeStrategy &strategy,
                          int64_t sharedMemoryLimit);

/// A merge kernel: its spec, its name and whether it waits for a decode
/// grid launched before it (programmatic dependent launch).
/// How a merge kernel's threads share its work.
enum class MergeMapping {
  /// One CTA per (head, sequence); its threads split between the row's
  /// columns and the partials, whose sums meet in shared memory. For many
  /// partials: a split decode's, up to 256 per row.
  SplitLanes,
  /// Each thread one 16-byte column of one row, over all of the row's
  /// partials itself, kPartialsPerStep at a time (their loads in flight
  /// together); several rows (heads) per CTA; no shared memory and no
  /// barrier. For few partials of the output's dtype: the merge op's
  /// (shards, cascades).
  ColumnThreads,
};

/// A merge kernel: its spec, entry name and thread mapping.
struct MergeKernelConfig {
  ::paged_attn::MergeSpec spec;
  std::string kernelName;
  bool programmaticLaunch = false;
  /// The MLIR types of spec.dtype and spec.partialDType.
  Type elementType, partialType;
  MergeMapping mapping = MergeMapping::SplitLanes;

  static MergeKernelConfig get(MLIRContext *ctx,
                               const ::paged_attn::MergeSpec &spec,
                               std::string kernelName,
                               bool programmaticLaunch = false,
                               MergeMapping mapping = MergeMapping::SplitLanes);
  /// The kernel paged_attn.merge lowers to.
  static MergeKernelConfig forOp(MLIRContext *ctx,
                                 const ::paged_attn::MergeSpec &spec);

  /// Threads per CTA with split lanes, and at most with column threads.
  static constexpr int64_t kBlockSize = 128;
  /// Partials a column thread loads at once. Two keep it within 32
  /// registers, so that a full SM of threads is resident; four take 59 and
  /// halve that, which costs more at large batches than the fewer round
  /// trips save at many partials (bench/NOTES.md 24).
  static constexpr int64_t kPartialsPerStep = 2;
  /// Output elements in one 16-byte vector, and vectors per row.
  int64_t vectorElems() const {
    return 16 / int64_t(::paged_attn::dtypeBytes(spec.dtype));
  }
  int64_t vectorsPerRow() const { return spec.headDim / vectorElems(); }
  /// Rows (heads) one CTA merges.
  int64_t rowsPerCTA() const {
    if (mapping == MergeMapping::SplitLanes)
      return 1;
    return std::clamp<int64_t>(kBlockSize / vectorsPerRow(), 1, spec.numHeads);
  }
  /// Threads per CTA.
  int64_t blockSize() const {
    if (mapping == MergeMapping::SplitLanes)
      return kBlockSize;
    return rowsPerCTA() * vectorsPerRow();
  }
  /// CTAs along the grid's x dimension (its y is the batch).
  int64_t gridX() const {
    return (spec.numHeads + rowsPerCTA() - 1) / rowsPerCTA();
  }
};

/// A decode spec with its strategy, and the thread mapping they imply.
struct DecodeKernelConfig {
  DecodeSpec spec;
  DecodeStrategy strategy;
  /// The MLIR type of spec.dtype.
  Type elementType;

  /// The selection: the strategy `options` give for `spec` (whose numWarps
  /// must be options.numWarps).
  static DecodeKernelConfig select(MLIRContext *ctx, const DecodeSpec &spec,
                                   const DecodeKernelOptions &options);
  /// The config of a verified decode op built with `strategy`.
  static DecodeKernelConfig get(MLIRContext *ctx, const DecodeSpec &spec,
                                const DecodeStrategy &strategy);

  bool usesTensorCores() const {
    return strategy.kernel == DecodeKernelKind::tensor_cores;
  }
  int64_t numWarps() const { return spec.numWarps; }
  int64_t elementBytes() const { return spec.elementBytes(); }
  /// Bytes of a cache element: q's, or an fp8 cache's one.
  int64_t cacheElementBytes() const {
    return int64_t(::paged_attn::dtypeBytes(spec.cacheDType()));
  }
  int64_t groupSize() const { return spec.groupSize(); }
  /// Elements in one 16-byte vector.
  int64_t vectorElems() const { return 16 / elementBytes(); }
  int64_t vectorsPerRow() const { return spec.headDim / vectorElems(); }

  /// CUDA-core kernel: lanes that share one token's row. The largest power
  /// of two that divides the row's vector count, at most a warp; but where
  /// that leaves a lane more than kMaxVectorsPerLane vectors (a row of 13,
  /// 15, 17, ... vectors), the largest power of two up to the vector count
  /// (and a warp), with the last vector of some lanes empty.
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
  int64_t elemsPerThread() const { return vectorsPerThread() * vectorElems(); }
  /// Tokens a warp works on at once (one per lane group).
  int64_t tokensPerWarp() const { return 32 / threadsPerToken(); }
  /// More vectors per lane than this spill registers (ptxas matrix).
  static constexpr int64_t kMaxVectorsPerLane = 8;
  /// Most query rows (heads, or (query, head) pairs) a CTA of the
  /// CUDA-core kernel serves: with 16, the per-row softmax statistics push
  /// f32 kernels past 255 registers.
  static constexpr int64_t kMaxCudaCoreHeadsPerCTA = 8;

  /// Tensor-core kernel: tokens one warp computes on at a time (one mma
  /// tile), the query heads its accumulators are laid out for (8 per mma
  /// column block), and its dynamic shared memory with `stages` stages.
  static constexpr int64_t kMmaTileTokens = 16;
  /// Rows of q one tensor-core warp serves (a CTA's row group): one mma row
  /// block up to kMmaWideRowsMaxHeadDim, half of one above it. A warp holds q
  /// fragments and O^T accumulators for rows x head_dim, so both caps keep
  /// them at 64 registers each (D = 128 x 16 rows, D = 256 x 8 rows).
  static constexpr int64_t kMaxMmaRows = 16;
  static constexpr int64_t kMmaWideRowsMaxHeadDim = 128;
  static int64_t maxMmaRows(int64_t headDim) {
    return headDim <= kMmaWideRowsMaxHeadDim ? kMaxMmaRows : kMaxMmaRows / 2;
  }
  /// A CTA may hold more rows than one warp's mma takes (a large query
  /// group, or a multi-token decode's queries beside its heads): its warps
  /// then form row groups of maxMmaRows rows, and the
  /// warps of different row groups that take the same tiles share one ring
  /// of K/V tiles (a key is read once for all of the CTA's rows). At most
  /// two groups, of warps that split evenly between them.
  static constexpr int64_t kMaxMmaRowGroups = 2;
  /// Row groups `numWarps` warps allow.
  static int64_t maxMmaRowGroups(int64_t numWarps) {
    return numWarps % kMaxMmaRowGroups == 0 ? kMaxMmaRowGroups : 1;
  }
  /// Rows a tensor-core CTA of `numWarps` warps serves at `headDim`.
  static int64_t maxMmaRowsPerCTA(int64_t headDim, int64_t numWarps) {
    return maxMmaRows(headDim) * maxMmaRowGroups(numWarps);
  }
  /// This CTA's row groups: rows are split into groups of maxMmaRows.
  int64_t mmaRowGroups() const {
    int64_t perGroup = maxMmaRows(spec.headDim);
    return (rowsPerCTA() + perGroup - 1) / perGroup;
  }
  /// 8-row mma column blocks of one warp's rows (the last group's rows
  /// past the CTA's are padding), and the rows of the merge buffers.
  int64_t mmaHeadBlocks() const {
    return (std::min(rowsPerCTA(), maxMmaRows(spec.headDim)) + 7) / 8;
  }
  int64_t mmaPaddedRows() const { return mmaRowGroups() * mmaHeadBlocks() * 8; }
  /// Warps that split a chunk's tokens, each with its own softmax state
  /// per row until the end of the kernel: all of them on CUDA cores, the
  /// warps of one row group on tensor cores.
  int64_t tokenWarps() const {
    return usesTensorCores() ? numWarps() / mmaRowGroups() : numWarps();
  }
  int64_t mmaSharedMemoryBytes(int64_t stages) const;
  /// 16-byte chunks of one K or V row in the tensor-core kernel's rings.
  int64_t mmaRowChunks() const {
    return spec.headDim * cacheElementBytes() / 16;
  }
  /// Whether the rings' rows are dense, with chunk c of row r at chunk
  /// c ^ (r mod 8) (rows of a multiple of 8 chunks), or padded by one
  /// chunk. Either keeps the 8 rows an ldmatrix reads in different banks;
  /// padded rows made cp.async copy each 128-byte line in more L2 requests
  /// and stream the cache up to 8% slower (bench/NOTES.md 47).
  bool mmaRowsSwizzled() const { return mmaRowChunks() % 8 == 0; }
  int64_t mmaRingRowBytes() const {
    return (mmaRowChunks() + (mmaRowsSwizzled() ? 0 : 1)) * 16;
  }

  int64_t headsPerCTA() const { return strategy.headsPerCTA; }
  int64_t queriesPerCTA() const { return strategy.queriesPerCTA; }
  /// The query rows a CTA serves, (query, head) pairs in query-major order:
  /// its heads for a single-token decode.
  int64_t rowsPerCTA() const { return queriesPerCTA() * headsPerCTA(); }
  /// CTAs along the new queries of one KV head; the last one's queries
  /// past L are padding when queriesPerCTA does not divide L.
  int64_t queryBlocks() const {
    return (spec.queryLen + queriesPerCTA() - 1) / queriesPerCTA();
  }
  bool hasPaddingQueries() const {
    return queryBlocks() * queriesPerCTA() != spec.queryLen;
  }
  /// CTAs of one KV head's group along grid x: (query block, head block)
  /// pairs, head blocks fastest.
  int64_t headCTAsPerKVHead() const { return groupSize() / headsPerCTA(); }
  int64_t ctasPerKVHead() const { return headCTAsPerKVHead() * queryBlocks(); }
  int64_t blockSize() const { return numWarps() * 32; }
  /// Tokens a CTA consumes per loop iteration; split-KV chunks are rounded
  /// up to a multiple of it.
  int64_t tokensPerIteration() const;
  /// Static and dynamic shared memory of the decode kernel in bytes
  /// (tensor cores: the K/V stages, reused for the cross-warp merge).
  int64_t sharedMemoryBytes() const;
  int64_t dynamicSharedMemoryBytes() const;
  /// Threads per CTA of the merge and page-table check kernels.
  int64_t mergeBlockSize() const { return MergeKernelConfig::kBlockSize; }
  int64_t checkBlockSize() const { return 128; }

  std::string name() const { return spec.name(); }
  std::string decodeKernelName() const { return "paged_attn_decode_" + name(); }
  std::string mergeKernelName() const { return "paged_attn_merge_" + name(); }
  /// The merge kernel of this decode's split-KV partials.
  MergeKernelConfig mergeConfig(MLIRContext *ctx) const;
  std::string checkKernelName() const { return "paged_attn_check_" + name(); }
};

/// "auto", "on" or "off"; std::nullopt for anything else.
std::optional<PageTablePrefetch> parsePageTablePrefetch(llvm::StringRef s);
std::optional<TensorCoreUse> parseTensorCoreUse(llvm::StringRef s);

} // namespace paged_attn
} // namespace mlir

#endif // PAGEDATTN_CONVERSION_PAGEDATTNTOGPU_DECODEKERNELCONFIG_H
