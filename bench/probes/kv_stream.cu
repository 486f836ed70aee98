// kv_stream.cu - how fast can a decode kernel stream a paged KV cache?
//
// A probe, not part of the library: it reads K and V of a paged cache
// (bf16, 8 KV heads, head_dim 128, page 16, shuffled page table) with the
// load pattern of the tensor-core decode kernel (one CTA per KV head,
// sequence and split; each warp streams 16-token tiles into its own
// shared-memory ring) and variations of it, with only a trivial use of the
// data. Comparing it with the real kernel separates what the access
// pattern costs from what the kernel's work costs. The "dynamic" rows
// stream the same tiles from persistent CTAs (as many as fit) that take
// units of a sequence's tiles from an atomic counter, zeroed before each
// launch (bench/NOTES.md 44: the static grids end in a drain). The "CTA
// ring", "CTA tiles" and "warp rings, K and V decoupled" rows change who
// copies which rows, into what shared-memory layout, and when (bench/
// NOTES.md 47: padded shared-memory rows were what cost the kernel's
// pattern up to 8%).
//
// Build and run on the GPU machine:
//   nvcc -O3 -std=c++17 -arch=sm_90a -o kv_stream bench/probes/kv_stream.cu
//   ./kv_stream [reps]
// `./kv_stream profile` launches each variant of the first case once,
// untimed (its table shows 0 µs), for Nsight Compute:
//   ncu -k regex:"pagedStream|cta" --metrics ... ./kv_stream profile
#include "probe.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

constexpr int kHeadDim = 128, kKvHeads = 8, kPage = 16, kTile = 16;
constexpr int kRowBytes = kHeadDim * 2;
constexpr int kRowStride = kRowBytes + 16; // padded shared-memory row
constexpr int kTileBytes = kTile * kRowStride;

enum class Copy { cpAsync, cpAsync128, cpAsync256, cpAsyncEvictFirst, bulk };
const char *copyName(Copy c) {
  switch (c) {
  case Copy::cpAsync:
    return "cp.async";
  case Copy::cpAsync128:
    return "cp.async L2::128B";
  case Copy::cpAsync256:
    return "cp.async L2::256B";
  case Copy::cpAsyncEvictFirst:
    return "cp.async evict_first";
  case Copy::bulk:
    return "cp.async.bulk rows";
  }
  return "?";
}

struct Params {
  const char *k = nullptr, *v = nullptr;
  const int *table = nullptr;
  int pagesPerSeq = 0, seqLen = 0, chunkTokens = 0;
  Copy copy = Copy::cpAsync128;
  bool hnd = false; // [page, head, slot, d] instead of [page, slot, head, d]
  bool warpContiguous = false; // warp w takes a contiguous run of tiles,
                               // not w + W*i
  bool kThenV = false, halfRows = false; // see streamChunk's copies
  bool seqMajorGrid = false; // blockIdx.x the sequence, .y the KV head
                             // (FlashInfer's order), not the other way
  unsigned *sink = nullptr;
  // Dynamic units: chunkTokens keys of one (KV head, sequence) each,
  // handed out by *counter in the order head, chunk, sequence.
  unsigned *counter = nullptr;
  int numUnits = 0, unitsPerSeq = 0;
};

__device__ __forceinline__ size_t rowOffset(const Params &p, int page, int slot,
                                            int head) {
  return p.hnd ? ((size_t(page) * kKvHeads + head) * kPage + slot) * kRowBytes
               : ((size_t(page) * kPage + slot) * kKvHeads + head) * kRowBytes;
}

__device__ __forceinline__ void cpAsync16(unsigned dst, const void *src,
                                          Copy copy, uint64_t policy) {
  switch (copy) {
  case Copy::cpAsync128:
    asm volatile(
        "cp.async.cg.shared.global.L2::128B [%0], [%1], 16;" ::"r"(dst),
        "l"(src));
    break;
  case Copy::cpAsync256:
    asm volatile(
        "cp.async.cg.shared.global.L2::256B [%0], [%1], 16;" ::"r"(dst),
        "l"(src));
    break;
  case Copy::cpAsyncEvictFirst:
    asm volatile(
        "cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;" ::"r"(
            dst),
        "l"(src), "l"(policy));
    break;
  default:
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst),
                 "l"(src));
  }
}

// What every variant does with the data it streams: folds it into `acc`,
// which each thread writes to the sink at the end.
__device__ __forceinline__ void fold(uint4 &acc, uint4 x) {
  acc.x ^= x.x;
  acc.y ^= x.y;
  acc.z ^= x.z;
  acc.w ^= x.w;
}
// Reads what an mma warp reads of the tile at `slot` (256 bytes a lane).
__device__ __forceinline__ void touchTile(uint4 &acc, const char *slot,
                                          int lane) {
  for (int c = 0; c < 8; ++c)
    fold(acc, *reinterpret_cast<const uint4 *>(
                  slot + (lane % 16) * kRowStride + (lane / 16 * 8 + c) * 16));
}
__device__ __forceinline__ void writeSink(const Params &p, unsigned block,
                                          uint4 acc) {
  p.sink[block * blockDim.x + threadIdx.x] = acc.x ^ acc.y ^ acc.z ^ acc.w;
}
__device__ __forceinline__ unsigned linearBlock() {
  return (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
}

// Streams tokens [begin, end) of (head, seq) through each warp's ring;
// `used` counts the tiles the warp's ring has taken before (a bulk copy's
// barrier phase follows it).
template <int Stages, int Warps>
__device__ void streamChunk(const Params &p, int head, int seq, int begin,
                            int end, char *smem,
                            uint64_t (&barriers)[Warps][Stages], int &used,
                            uint4 &acc) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int numTiles = (end - begin + kTile - 1) / kTile;
  const int perWarp = (numTiles + Warps - 1) / Warps;
  const int warpTiles = p.warpContiguous
                            ? max(0, min(perWarp, numTiles - warp * perWarp))
                            : (numTiles - warp + Warps - 1) / Warps;
  auto tileToken = [&](int i) {
    int tile = p.warpContiguous ? warp * perWarp + i : i * Warps + warp;
    return begin + tile * kTile;
  };
  char *ring = smem + warp * Stages * 2 * kTileBytes;
  uint64_t policy = 0;
  if (p.copy == Copy::cpAsyncEvictFirst)
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;"
                 : "=l"(policy));
  const bool bulk = p.copy == Copy::bulk;

  // The page of token (tile i, row lane % 16), loaded a tile ahead as in
  // the real kernel.
  auto loadPage = [&](int i) {
    int token = min(tileToken(i) + lane % 16, end - 1);
    return p.table[seq * p.pagesPerSeq + token / kPage];
  };
  auto issue = [&](int i, int page) {
    if (i < warpTiles) {
      int stage = (used + i) % Stages;
      char *kSlot = ring + (stage * 2) * kTileBytes;
      if (bulk) {
        unsigned bar = smemAddress(&barriers[warp][stage]);
        if (lane == 0)
          asm volatile(
              "mbarrier.arrive.expect_tx.shared.b64 _, [%0], %1;" ::"r"(bar),
              "r"(2 * kTile * kRowBytes));
        __syncwarp();
        asm volatile("fence.proxy.async.shared::cta;");
        if (lane < kTile) {
          int token = min(tileToken(i) + lane, end - 1);
          size_t off = rowOffset(p, page, token % kPage, head);
          unsigned dst = smemAddress(kSlot + lane * kRowStride);
          asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::"
                       "complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(dst),
                       "l"(p.k + off), "r"(kRowBytes), "r"(bar)
                       : "memory");
          asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::"
                       "complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                           dst + kTileBytes),
                       "l"(p.v + off), "r"(kRowBytes), "r"(bar)
                       : "memory");
        }
        return;
      }
      // The tile's 16-byte pieces, eight a lane: by default each warp
      // instruction copies two whole rows (row lane / 16), K's and V's
      // instructions alternating; `halfRows` copies half rows of four rows
      // an instruction (lane / 8, as FlashInfer's swizzled tiles do);
      // `kThenV` issues every K copy of the tile before the V copies.
      auto copyPiece = [&](int c, bool isV) {
        int row, byte;
        if (p.halfRows) {
          row = lane / 8 + 4 * (c / 2);
          byte = lane % 8 * 16 + c % 2 * (kRowBytes / 2);
        } else {
          row = lane / 16 + 2 * c;
          byte = lane % 16 * 16;
        }
        int rowPage = __shfl_sync(~0u, page, row);
        int token = min(tileToken(i) + row, end - 1);
        size_t off = rowOffset(p, rowPage, token % kPage, head) + byte;
        unsigned dst = smemAddress(kSlot + row * kRowStride + byte);
        if (isV)
          cpAsync16(dst + kTileBytes, p.v + off, p.copy, policy);
        else
          cpAsync16(dst, p.k + off, p.copy, policy);
      };
      constexpr int kPieces = kTile * kRowBytes / (32 * 16);
      for (int c = 0; c < kPieces; ++c) {
        copyPiece(c, false);
        if (!p.kThenV)
          copyPiece(c, true);
      }
      for (int c = 0; p.kThenV && c < kPieces; ++c)
        copyPiece(c, true);
    }
    if (!bulk)
      asm volatile("cp.async.commit_group;");
  };

  int nextPage = 0;
  for (int s = 0; s + 1 < Stages; ++s) {
    int page = s < warpTiles ? loadPage(s) : 0;
    if (bulk)
      page = __shfl_sync(~0u, page, lane % 16);
    issue(s, page);
  }
  if (Stages - 1 < warpTiles)
    nextPage = loadPage(Stages - 1);
  for (int i = 0; i < warpTiles; ++i) {
    int ahead = i + Stages - 1;
    issue(ahead, nextPage);
    nextPage = ahead + 1 < warpTiles ? loadPage(ahead + 1) : 0;
    int stage = (used + i) % Stages;
    if (bulk) {
      unsigned bar = smemAddress(&barriers[warp][stage]);
      unsigned phase = ((used + i) / Stages) & 1, done = 0;
      while (!done)
        asm volatile("{\n .reg .pred p;\n"
                     " mbarrier.try_wait.parity.shared.b64 p, [%1], %2;\n"
                     " selp.u32 %0, 1, 0, p;\n}"
                     : "=r"(done)
                     : "r"(bar), "r"(phase)
                     : "memory");
    } else {
      asm volatile("cp.async.wait_group %0;" ::"n"(Stages - 1));
    }
    __syncwarp();
    const char *kSlot = ring + (stage * 2) * kTileBytes;
    touchTile(acc, kSlot, lane);
    touchTile(acc, kSlot + kTileBytes, lane);
    __syncwarp();
  }
  used += warpTiles;
}

template <int Stages, int Warps>
__device__ void initBarriers(const Params &p,
                             uint64_t (&barriers)[Warps][Stages]) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (p.copy == Copy::bulk && lane == 0) {
    for (int s = 0; s < Stages; ++s)
      asm volatile("mbarrier.init.shared.b64 [%0], 1;" ::"r"(
          smemAddress(&barriers[warp][s])));
    asm volatile("fence.mbarrier_init.release.cluster;");
  }
  __syncwarp();
}

// One CTA per KV head, sequence and split, as the decode kernel's grid.
template <int Stages, int Warps>
__global__ void __launch_bounds__(Warps * 32) pagedStream(Params p) {
  extern __shared__ __align__(16) char smem[];
  __shared__ __align__(8) uint64_t barriers[Warps][Stages];
  initBarriers(p, barriers);
  const int begin = blockIdx.z * p.chunkTokens;
  const int end = min(p.seqLen, begin + p.chunkTokens);
  uint4 acc = make_uint4(0, 0, 0, 0);
  int used = 0;
  const int head = p.seqMajorGrid ? blockIdx.y : blockIdx.x;
  const int seq = p.seqMajorGrid ? blockIdx.x : blockIdx.y;
  streamChunk<Stages, Warps>(p, head, seq, begin, end, smem, barriers, used,
                             acc);
  writeSink(p, linearBlock(), acc);
}

// Persistent CTAs: each takes units from p.counter until none is left.
template <int Stages, int Warps>
__global__ void __launch_bounds__(Warps * 32) pagedStreamDynamic(Params p) {
  extern __shared__ __align__(16) char smem[];
  __shared__ __align__(8) uint64_t barriers[Warps][Stages];
  __shared__ int unit;
  initBarriers(p, barriers);
  uint4 acc = make_uint4(0, 0, 0, 0);
  int used = 0;
  for (;;) {
    __syncthreads(); // every warp is done with the last unit's number
    if (threadIdx.x == 0)
      unit = atomicAdd(p.counter, 1u);
    __syncthreads();
    int u = unit;
    if (u >= p.numUnits)
      break;
    int head = u % kKvHeads, chunk = u / kKvHeads % p.unitsPerSeq,
        seq = u / kKvHeads / p.unitsPerSeq;
    int begin = chunk * p.chunkTokens;
    streamChunk<Stages, Warps>(p, head, seq, begin,
                               min(p.seqLen, begin + p.chunkTokens), smem,
                               barriers, used, acc);
  }
  writeSink(p, blockIdx.x, acc);
}

// FlashInfer's loop (its FA2 prefill kernel, which its tensor-core decode
// runs): the CTA's warps copy one tile of `TileTokens` keys together, K
// and V each single-buffered; K of tile i + 1 is copied while V of tile i
// is used and V of i + 1 while K of i + 1 is, so that a CTA has about one
// K or V tile in flight. Each warp instruction copies half rows of four
// rows (warp w rows 4w..4w+3 of each 16-row group).
//
// With `OwnRows`, each warp copies the rows it would use, TileTokens / Warps
// of them, two whole rows an instruction, instead; without `CtaSync` the
// warps then only wait for their own copies (__syncwarp), each streaming on
// its own as the per-warp rings do. `Padded` rows are 16 bytes longer in
// shared memory, as the kernel's are.
template <int TileTokens, int Warps, bool OwnRows = false, bool CtaSync = true,
          bool Padded = false>
__global__ void __launch_bounds__(Warps * 32) ctaTileStream(Params p) {
  extern __shared__ __align__(16) char smem[];
  constexpr int kSmemRow = Padded ? kRowStride : kRowBytes;
  constexpr int kTileBytesDense = TileTokens * kSmemRow;
  constexpr int kGroups = TileTokens / (4 * Warps);
  char *kTile = smem, *vTile = smem + kTileBytesDense;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int head = p.seqMajorGrid ? blockIdx.y : blockIdx.x;
  const int seq = p.seqMajorGrid ? blockIdx.x : blockIdx.y;
  const int begin = blockIdx.z * p.chunkTokens;
  const int end = min(p.seqLen, begin + p.chunkTokens);
  const int numTiles = (end - begin + TileTokens - 1) / TileTokens;

  // Either way a thread copies kGroups rows' worth, 2 x 16 bytes of each.
  auto rowOf = [&](int g, int half) {
    return OwnRows ? warp * (TileTokens / Warps) + 4 * g + 2 * half + lane / 16
                   : g * 4 * Warps + warp * 4 + lane / 8;
  };
  auto byteOf = [&](int half) {
    return OwnRows ? lane % 16 * 16 : lane % 8 * 16 + half * (kRowBytes / 2);
  };
  size_t offsets[kGroups][2];
  auto loadOffsets = [&](int t) {
    for (int g = 0; g < kGroups; ++g)
      for (int half = 0; half < 2; ++half) {
        int token = min(begin + t * TileTokens + rowOf(g, half), end - 1);
        int page = p.table[seq * p.pagesPerSeq + token / kPage];
        offsets[g][half] =
            rowOffset(p, page, token % kPage, head) + byteOf(half);
      }
  };
  auto issue = [&](const char *cache, char *tile) {
    for (int g = 0; g < kGroups; ++g)
      for (int half = 0; half < 2; ++half)
        cpAsync16(
            smemAddress(tile + rowOf(g, half) * kSmemRow + byteOf(half)),
            cache + offsets[g][half], p.copy, 0);
    asm volatile("cp.async.commit_group;");
  };
  auto sync = [] {
    if (CtaSync)
      __syncthreads();
    else
      __syncwarp();
  };
  // Reads the tile (the warp's rows, with OwnRows) 16 bytes a thread at a
  // time, in order.
  auto touch = [&](const char *tile, uint4 &acc) {
    const int first = OwnRows ? warp * (kTileBytesDense / Warps / 16) + lane
                              : int(threadIdx.x);
    const int step = OwnRows ? 32 : Warps * 32;
    const int last = OwnRows ? (warp + 1) * (kTileBytesDense / Warps / 16)
                             : kTileBytesDense / 16;
    for (int i = first; i < last; i += step) {
      uint4 x = reinterpret_cast<const uint4 *>(tile)[i];
      fold(acc, x);
    }
  };

  uint4 acc = make_uint4(0, 0, 0, 0);
  loadOffsets(0);
  issue(p.k, kTile);
  issue(p.v, vTile);
  for (int t = 0; t < numTiles; ++t) {
    bool more = t + 1 < numTiles;
    if (more)
      loadOffsets(t + 1);
    asm volatile("cp.async.wait_group 1;");
    sync();
    touch(kTile, acc);
    sync();
    if (more)
      issue(p.k, kTile);
    else
      asm volatile("cp.async.commit_group;");
    asm volatile("cp.async.wait_group 1;");
    sync();
    touch(vTile, acc);
    sync();
    if (more)
      issue(p.v, vTile);
  }
  asm volatile("cp.async.wait_group 0;");
  writeSink(p, linearBlock(), acc);
}

// The kernel's tiles and ring, shared by the CTA: a stage holds one
// 16-token tile (K and V) for each warp, as the per-warp rings do, but
// every warp copies part of every tile of the stage (copy c of each tile,
// two whole rows, by warp c mod Warps), and the warps meet at a CTA
// barrier before and after using a stage, as one warp does now.
template <int Stages, int Warps>
__global__ void __launch_bounds__(Warps * 32) ctaRingStream(Params p) {
  extern __shared__ __align__(16) char smem[];
  constexpr int kStageTokens = Warps * kTile;
  constexpr int kCopies = kTile / 2; // two whole rows a copy
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int head = blockIdx.x, seq = blockIdx.y;
  const int begin = blockIdx.z * p.chunkTokens;
  const int end = min(p.seqLen, begin + p.chunkTokens);
  const int numStages = (end - begin + kStageTokens - 1) / kStageTokens;
  auto slotTile = [&](int slot, int tile, int kv) {
    return smem + ((slot * Warps + tile) * 2 + kv) * kTileBytes;
  };
  // Lane l holds the page of tile l % Warps of the stage.
  auto loadPage = [&](int i) {
    int token = min(begin + i * kStageTokens + lane % Warps * kTile, end - 1);
    return p.table[seq * p.pagesPerSeq + token / kPage];
  };
  auto issue = [&](int i, int page) {
    if (i < numStages) {
      int slot = i % Stages;
      for (int tile = 0; tile < Warps; ++tile) {
        int tilePage = __shfl_sync(~0u, page, tile);
        for (int c = warp; c < kCopies; c += Warps) {
          int row = 2 * c + lane / 16, byte = lane % 16 * 16;
          int token = min(begin + i * kStageTokens + tile * kTile + row,
                          end - 1);
          size_t off = rowOffset(p, tilePage, token % kPage, head) + byte;
          unsigned dst = smemAddress(slotTile(slot, tile, 0) +
                                     row * kRowStride + byte);
          cpAsync16(dst, p.k + off, p.copy, 0);
          cpAsync16(dst + kTileBytes, p.v + off, p.copy, 0);
        }
      }
    }
    asm volatile("cp.async.commit_group;");
  };

  uint4 acc = make_uint4(0, 0, 0, 0);
  for (int s = 0; s + 1 < Stages; ++s)
    issue(s, loadPage(s));
  int nextPage = loadPage(Stages - 1);
  for (int i = 0; i < numStages; ++i) {
    int ahead = i + Stages - 1;
    issue(ahead, nextPage);
    nextPage = loadPage(ahead + 1);
    asm volatile("cp.async.wait_group %0;" ::"n"(Stages - 1));
    __syncthreads();
    const char *kSlot = slotTile(i % Stages, warp, 0);
    touchTile(acc, kSlot, lane);
    touchTile(acc, kSlot + kTileBytes, lane);
    __syncthreads();
  }
  writeSink(p, linearBlock(), acc);
}

// The kernel's per-warp rings with K and V copies decoupled: `Stages` K
// slots and `Stages` V slots a warp; K of tile i + Stages is issued as soon
// as K of tile i has been used (after Q*K^T), V of i + Stages after P*V.
// With one stage that is FlashInfer's order within each warp.
template <int Stages, int Warps>
__global__ void __launch_bounds__(Warps * 32) warpDecoupledStream(Params p) {
  extern __shared__ __align__(16) char smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int head = blockIdx.x, seq = blockIdx.y;
  const int begin = blockIdx.z * p.chunkTokens;
  const int end = min(p.seqLen, begin + p.chunkTokens);
  const int numTiles = (end - begin + kTile - 1) / kTile;
  const int warpTiles = (numTiles - warp + Warps - 1) / Warps;
  char *ring = smem + warp * Stages * 2 * kTileBytes;
  auto tileToken = [&](int i) { return begin + (i * Warps + warp) * kTile; };
  auto issue = [&](int i, int kv) {
    if (i < warpTiles) {
      int page = p.table[seq * p.pagesPerSeq +
                         min(tileToken(i), end - 1) / kPage];
      char *slot = ring + ((i % Stages) * 2 + kv) * kTileBytes;
      for (int c = 0; c < kTile / 2; ++c) {
        int row = lane / 16 + 2 * c, byte = lane % 16 * 16;
        int token = min(tileToken(i) + row, end - 1);
        size_t off = rowOffset(p, page, token % kPage, head) + byte;
        cpAsync16(smemAddress(slot + row * kRowStride + byte),
                  (kv ? p.v : p.k) + off, p.copy, 0);
      }
    }
    asm volatile("cp.async.commit_group;");
  };
  auto touch = [&](int i, int kv, uint4 &acc) {
    touchTile(acc, ring + ((i % Stages) * 2 + kv) * kTileBytes, lane);
  };
  uint4 acc = make_uint4(0, 0, 0, 0);
  for (int s = 0; s < Stages; ++s) {
    issue(s, 0);
    issue(s, 1);
  }
  for (int i = 0; i < warpTiles; ++i) {
    asm volatile("cp.async.wait_group %0;" ::"n"(2 * Stages - 1));
    __syncwarp();
    touch(i, 0, acc);
    __syncwarp();
    issue(i + Stages, 0);
    asm volatile("cp.async.wait_group %0;" ::"n"(2 * Stages - 1));
    __syncwarp();
    touch(i, 1, acc);
    __syncwarp();
    issue(i + Stages, 1);
  }
  writeSink(p, linearBlock(), acc);
}

// A plain streaming read of `words` 16-byte words: the read ceiling.
__global__ void readAll(const uint4 *data, size_t words, unsigned *sink) {
  uint4 acc = make_uint4(0, 0, 0, 0);
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < words;
       i += size_t(gridDim.x) * blockDim.x) {
    uint4 x = __ldcs(data + i);
    fold(acc, x);
  }
  sink[blockIdx.x * blockDim.x + threadIdx.x] = acc.x ^ acc.y ^ acc.z ^ acc.w;
}

struct Case {
  int batch, seqLen, splits;
};

struct Variant {
  const char *name;
  int stages, warps;
  Copy copy;
  bool hnd, warpContiguous;
  bool sequentialPages = false; // page table 0, 1, 2, ... instead of shuffled
  bool kThenV = false, halfRows = false; // see streamChunk's copies
  bool seqMajorGrid = false;
};

using Kernel = void (*)(Params);
Kernel kernelFor(int stages, int warps) {
#define KERNEL(S, W)                                                           \
  if (stages == S && warps == W)                                               \
    return pagedStream<S, W>;
  KERNEL(2, 4)
  KERNEL(3, 4) KERNEL(4, 4) KERNEL(6, 4) KERNEL(3, 8) KERNEL(2, 8) KERNEL(3, 2)
      KERNEL(6, 2)
#undef KERNEL
          std::fprintf(stderr, "no kernel for %d stages, %d warps\n", stages,
                       warps);
  std::exit(1);
}

// `kv_stream profile`: one launch of each variant of the first case,
// untimed, for Nsight Compute.
bool profileOnly = false;

/// µs per launch: the median of `reps` samples of ten launches back to
/// back on the default stream (one launch and 0 when profiling).
template <typename Launch>
float microsecondsPerLaunch(Launch launch, int reps) {
  if (profileOnly) {
    launch();
    CHECK(cudaDeviceSynchronize());
    return 0;
  }
  auto tenLaunches = [&] {
    for (int i = 0; i < 10; ++i)
      launch();
  };
  return medianMicroseconds(0, tenLaunches, reps) / 10;
}

int main(int argc, char **argv) {
  profileOnly = argc > 1 && std::string(argv[1]) == "profile";
  int reps = argc > 1 && !profileOnly ? std::atoi(argv[1]) : 30;
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("# %s, %d SMs\n", prop.name, prop.multiProcessorCount);

  const std::vector<Case> cases = {
      {32, 4096, 1}, {8, 8192, 4}, {1, 32768, 33}, {64, 8192, 1}};
  const std::vector<Variant> variants = {
      {"as the kernel (3 stages, 4 warps)", 3, 4, Copy::cpAsync, false, false},
      {"L2::128B prefetch", 3, 4, Copy::cpAsync128, false, false},
      {"L2::256B prefetch", 3, 4, Copy::cpAsync256, false, false},
      {"evict_first", 3, 4, Copy::cpAsyncEvictFirst, false, false},
      {"warp-contiguous tiles", 3, 4, Copy::cpAsync, false, true},
      {"HND layout", 3, 4, Copy::cpAsync, true, false},
      {"2 stages", 2, 4, Copy::cpAsync, false, false},
      {"4 stages", 4, 4, Copy::cpAsync, false, false},
      {"6 stages", 6, 4, Copy::cpAsync, false, false},
      {"8 warps, 3 stages", 3, 8, Copy::cpAsync, false, false},
      {"8 warps, 2 stages", 2, 8, Copy::cpAsync, false, false},
      {"2 warps, 3 stages", 3, 2, Copy::cpAsync, false, false},
      {"2 warps, 6 stages", 6, 2, Copy::cpAsync, false, false},
      {"bulk rows, 3 stages", 3, 4, Copy::bulk, false, false},
      {"bulk rows, 4 stages", 4, 4, Copy::bulk, false, false},
      {"bulk rows, 6 stages", 6, 4, Copy::bulk, false, false},
      {"L2::128B, 2 stages", 2, 4, Copy::cpAsync128, false, false},
      {"L2::128B, 4 stages", 4, 4, Copy::cpAsync128, false, false},
      {"L2::128B, 8 warps, 2 stages", 2, 8, Copy::cpAsync128, false, false},
      {"sequential pages", 3, 4, Copy::cpAsync, false, false, true},
      {"L2::128B, sequential pages", 3, 4, Copy::cpAsync128, false, false,
       true},
      {"L2::128B, K rows then V rows", 3, 4, Copy::cpAsync128, false, false,
       false, true},
      {"L2::128B, half rows (4 a warp)", 3, 4, Copy::cpAsync128, false, false,
       false, false, true},
      {"L2::128B, half rows, K then V", 3, 4, Copy::cpAsync128, false, false,
       false, true, true},
      {"L2::128B, sequence-major grid", 3, 4, Copy::cpAsync128, false, false,
       false, false, false, true},
      {"L2::128B, K then V, sequence-major grid", 3, 4, Copy::cpAsync128,
       false, false, false, true, false, true},
  };

  size_t maxPages = 0;
  for (const Case &c : cases)
    maxPages = std::max(maxPages, size_t(c.batch) * (c.seqLen / kPage));
  const size_t cacheBytes = maxPages * kPage * kKvHeads * kRowBytes;
  char *k, *v;
  unsigned *sink;
  int *table, *sequentialTable;
  CHECK(cudaMalloc(&k, cacheBytes));
  CHECK(cudaMalloc(&v, cacheBytes));
  CHECK(cudaMemset(k, 1, cacheBytes));
  CHECK(cudaMemset(v, 2, cacheBytes));
  CHECK(cudaMalloc(&sink, 64 << 20));
  unsigned *counter;
  CHECK(cudaMalloc(&counter, sizeof(unsigned)));
  CHECK(cudaMalloc(&table, maxPages * sizeof(int)));
  CHECK(cudaMalloc(&sequentialTable, maxPages * sizeof(int)));
  {
    std::vector<int> pages(maxPages);
    std::iota(pages.begin(), pages.end(), 0);
    CHECK(cudaMemcpy(sequentialTable, pages.data(), maxPages * sizeof(int),
                     cudaMemcpyHostToDevice));
  }

  // The ceiling: K and V read once, back to back.
  size_t words = 2 * cacheBytes / 16;
  float ceilingUs = microsecondsPerLaunch(
      [&] {
        readAll<<<prop.multiProcessorCount * 8, 512>>>(
            reinterpret_cast<const uint4 *>(k), cacheBytes / 16, sink);
        readAll<<<prop.multiProcessorCount * 8, 512>>>(
            reinterpret_cast<const uint4 *>(v), cacheBytes / 16, sink);
      },
      reps);
  double ceiling = words * 16 / (ceilingUs * 1e-6) / 1e12;
  std::printf("# read ceiling: %.3f TB/s (%.1f MB in %.1f µs)\n", ceiling,
              words * 16 / 1e6, ceilingUs);

  std::mt19937 rng(7);
  for (const Case &c : cases) {
    int pagesPerSeq = c.seqLen / kPage;
    std::vector<int> pages(size_t(c.batch) * pagesPerSeq);
    std::iota(pages.begin(), pages.end(), 0);
    std::shuffle(pages.begin(), pages.end(), rng);
    CHECK(cudaMemcpy(table, pages.data(), pages.size() * sizeof(int),
                     cudaMemcpyHostToDevice));
    int chunk = (c.seqLen + c.splits - 1) / c.splits;
    chunk = (chunk + kTile - 1) / kTile * kTile;
    int splits = (c.seqLen + chunk - 1) / chunk;
    double bytes = 2.0 * c.batch * c.seqLen * kKvHeads * kRowBytes;
    std::printf("\n## %d x %d, %d splits, %.0f MB\n", c.batch, c.seqLen, splits,
                bytes / 1e6);
    std::printf("| variant | µs | TB/s | of ceiling |\n|---|---|---|---|\n");
    // The case's cache, shuffled table and chunks; variants change the rest.
    auto caseParams = [&](int chunkTokens) {
      Params p;
      p.k = k;
      p.v = v;
      p.table = table;
      p.pagesPerSeq = pagesPerSeq;
      p.seqLen = c.seqLen;
      p.chunkTokens = chunkTokens;
      p.sink = sink;
      return p;
    };
    for (const Variant &var : variants) {
      Params p = caseParams(chunk);
      if (var.sequentialPages)
        p.table = sequentialTable;
      p.copy = var.copy;
      p.hnd = var.hnd;
      p.warpContiguous = var.warpContiguous;
      p.kThenV = var.kThenV;
      p.halfRows = var.halfRows;
      p.seqMajorGrid = var.seqMajorGrid;
      Kernel kernel = kernelFor(var.stages, var.warps);
      int smemBytes = var.warps * var.stages * 2 * kTileBytes;
      CHECK(cudaFuncSetAttribute(
          kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smemBytes));
      int perSM = 0;
      CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
          &perSM, kernel, var.warps * 32, smemBytes));
      dim3 grid = var.seqMajorGrid ? dim3(c.batch, kKvHeads, splits)
                                   : dim3(kKvHeads, c.batch, splits);
      float us = microsecondsPerLaunch(
          [&] { kernel<<<grid, var.warps * 32, smemBytes>>>(p); }, reps);
      double tbs = bytes / (us * 1e-6) / 1e12;
      std::printf("| %s (%d CTAs/SM) | %.1f | %.3f | %.1f%% |\n", var.name,
                  perSM, us, tbs, 100 * tbs / ceiling);
    }
    // FlashInfer's loop: CTA-wide tiles, K and V single-buffered.
    struct CtaVariant {
      const char *name;
      Kernel kernel;
      int tileTokens; // keys in shared memory
      bool seqMajorGrid;
      bool padded = false;
      int threads = 128;
    };
    const CtaVariant ctaVariants[] = {
        {"warp rings, K and V decoupled, 1 stage", warpDecoupledStream<1, 4>,
         64, false, true},
        {"warp rings, K and V decoupled, 2 stages", warpDecoupledStream<2, 4>,
         128, false, true},
        {"warp rings, K and V decoupled, 3 stages", warpDecoupledStream<3, 4>,
         192, false, true},
        {"CTA ring, 3 stages of 4 x 16 keys", ctaRingStream<3, 4>, 3 * 64,
         false, true},
        {"CTA ring, 2 stages of 4 x 16 keys", ctaRingStream<2, 4>, 2 * 64,
         false, true},
        {"CTA ring, 4 stages of 4 x 16 keys", ctaRingStream<4, 4>, 4 * 64,
         false, true},
        {"CTA ring, 2 stages of 8 x 16 keys (8 warps)", ctaRingStream<2, 8>,
         2 * 128, false, true, 256},
        {"CTA tiles of 64 keys", ctaTileStream<64, 4>, 64, false},
        {"CTA tiles of 128 keys, padded rows",
         ctaTileStream<128, 4, false, true, true>, 128, false, true},
        {"CTA tiles of 128 keys, own rows", ctaTileStream<128, 4, true>, 128,
         false},
        {"warp tiles of 32 keys (128 a CTA), own rows, warp sync",
         ctaTileStream<128, 4, true, false>, 128, false},
        {"warp tiles of 16 keys (64 a CTA), own rows, warp sync",
         ctaTileStream<64, 4, true, false>, 64, false},
        {"CTA tiles of 256 keys", ctaTileStream<256, 4>, 256, false},
        {"CTA tiles of 128 keys", ctaTileStream<128, 4>, 128, false},
        {"CTA tiles of 64 keys, sequence-major grid", ctaTileStream<64, 4>, 64,
         true},
        {"CTA tiles of 128 keys, sequence-major grid", ctaTileStream<128, 4>,
         128, true},
    };
    for (const CtaVariant &var : ctaVariants) {
      Params p = caseParams(chunk);
      p.seqMajorGrid = var.seqMajorGrid;
      // Rings pad their rows (kRowStride); the FlashInfer loop's are dense.
      const int smemBytes = 2 * var.tileTokens *
                            (var.padded ? kRowStride : kRowBytes);
      const int threads = var.threads;
      CHECK(cudaFuncSetAttribute(
          var.kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smemBytes));
      int perSM = 0;
      CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
          &perSM, var.kernel, threads, smemBytes));
      dim3 grid = var.seqMajorGrid ? dim3(c.batch, kKvHeads, splits)
                                   : dim3(kKvHeads, c.batch, splits);
      float us = microsecondsPerLaunch(
          [&] { var.kernel<<<grid, threads, smemBytes>>>(p); }, reps);
      double tbs = bytes / (us * 1e-6) / 1e12;
      std::printf("| %s (%d CTAs/SM) | %.1f | %.3f | %.1f%% |\n", var.name,
                  perSM, us, tbs, 100 * tbs / ceiling);
    }
    if (profileOnly)
      break;
    // The kernel's copies (3 stages, 4 warps, L2::128B) over units of
    // `unit` keys: a static grid of one CTA per unit, then persistent CTAs
    // taking units from the counter (its zeroing timed with each launch).
    constexpr int kStages = 3, kWarps = 4;
    const int smemBytes = kWarps * kStages * 2 * kTileBytes;
    Kernel dynamic = pagedStreamDynamic<kStages, kWarps>;
    CHECK(cudaFuncSetAttribute(
        dynamic, cudaFuncAttributeMaxDynamicSharedMemorySize, smemBytes));
    int perSM = 0;
    CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &perSM, dynamic, kWarps * 32, smemBytes));
    for (int unit : {c.seqLen, 2048, 1024, 512, 256}) {
      if (unit > c.seqLen || (unit == c.seqLen && c.splits > 1))
        continue;
      int unitsPerSeq = (c.seqLen + unit - 1) / unit;
      Params p = caseParams(unit);
      p.counter = counter;
      p.numUnits = c.batch * kKvHeads * unitsPerSeq;
      p.unitsPerSeq = unitsPerSeq;
      double tbs;
      Kernel fixed = pagedStream<kStages, kWarps>;
      float us = microsecondsPerLaunch(
          [&] {
            fixed<<<dim3(kKvHeads, c.batch, unitsPerSeq), kWarps * 32,
                    smemBytes>>>(p);
          },
          reps);
      tbs = bytes / (us * 1e-6) / 1e12;
      std::printf("| static, units of %d keys (%d CTAs) | %.1f | %.3f | "
                  "%.1f%% |\n",
                  unit, p.numUnits, us, tbs, 100 * tbs / ceiling);
      us = microsecondsPerLaunch(
          [&] {
            CHECK(cudaMemsetAsync(counter, 0, sizeof(unsigned)));
            dynamic<<<prop.multiProcessorCount * perSM, kWarps * 32,
                      smemBytes>>>(p);
          },
          reps);
      tbs = bytes / (us * 1e-6) / 1e12;
      std::printf("| dynamic, units of %d keys (%d CTAs, %d units) | %.1f | "
                  "%.3f | %.1f%% |\n",
                  unit, prop.multiProcessorCount * perSM, p.numUnits, us, tbs,
                  100 * tbs / ceiling);
    }
  }
  CHECK(cudaFree(counter));
  CHECK(cudaFree(k));
  CHECK(cudaFree(v));
  CHECK(cudaFree(sink));
  CHECK(cudaFree(table));
  CHECK(cudaFree(sequentialTable));
  return 0;
}
