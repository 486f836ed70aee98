// split_merge.cu - what the split-KV merge costs, as a second grid or in
// the decode grid's last CTA?
//
// A probe, not part of the library (bench/NOTES.md 45). A split decode
// writes one normalised partial row and a log-sum-exp per (head, split) and
// merges them afterwards. The library merges in a second grid, launched
// programmatically so that it is resident while the decode grid drains
// (NOTES 15), and starts merging when the whole decode grid has finished.
// The alternatives: let whichever CTA of a (sequence, KV head) finishes
// last merge the partials itself, counted by an atomic counter in the
// workspace that the last CTA resets (so it stays zero from one call to the
// next once zeroed) or that a memset zeroes before every call (a workspace
// the caller hands in holds garbage); or keep the programmatic merge grid
// but let each merge CTA wait only for its own row's splits, counted the
// same way, rather than for the whole decode grid.
//
// The decode kernel here streams the paged cache as the tensor-core kernel
// does (one CTA of four warps per KV head, sequence and split; each warp
// copies 16-token tiles of K and V into its own three-stage shared-memory
// ring with cp.async and the L2::128B hint; shuffled page table, NHD
// layout, bf16, head_dim 128, page 16) and folds the data into a checksum
// instead of attending, then writes its group's partial rows. The merge
// does the real arithmetic on them. Variants, timed back to back with the
// same data:
//   partials only   no merge at all (the floor);
//   grid            a merge grid launched after the decode grid;
//   grid + PDL      the same, launched programmatically (the library's);
//   last CTA        the last CTA of a (sequence, KV head) merges;
//   last CTA + memset  the same, with the counters zeroed by a memset
//                   before every call;
//   grid + PDL, row counters  the merge grid launched programmatically,
//                   each CTA polling its row's counter instead of waiting
//                   for the decode grid.
//
// Build and run on the GPU machine:
//   nvcc -O3 -std=c++17 -arch=sm_90a -o split_merge bench/probes/split_merge.cu
//   ./split_merge
#include "probe.cuh"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

constexpr int kHeadDim = 128, kPage = 16, kTile = 16, kWarps = 4,
              kStages = 3, kThreads = kWarps * 32;
constexpr int kRowBytes = kHeadDim * 2;
constexpr int kRowStride = kRowBytes + 16; // padded shared-memory row
constexpr int kTileBytes = kTile * kRowStride;
constexpr int kSmemBytes = kWarps * kStages * 2 * kTileBytes;
constexpr int kColumns = kHeadDim / 4; // float4 columns of a partial row

enum class Merge { none, grid, gridPdl, lastCta, lastCtaMemset, rowCounters };
const char *mergeName(Merge m) {
  switch (m) {
  case Merge::none:
    return "partials only";
  case Merge::grid:
    return "grid";
  case Merge::gridPdl:
    return "grid + PDL";
  case Merge::lastCta:
    return "last CTA";
  case Merge::lastCtaMemset:
    return "last CTA + memset";
  case Merge::rowCounters:
    return "grid + PDL, row counters";
  }
  return "?";
}

struct Params {
  const char *k, *v;
  const int *table;
  int kvHeads, group, pagesPerSeq, seqLen, numSplits, chunk;
  float *partialOut; // [batch, heads, splits, head_dim]
  float *partialLse; // [batch, heads, splits], base 2
  __nv_bfloat16 *out; // [batch, heads, head_dim]
  unsigned *counters;    // [batch, kvHeads]
  unsigned *rowCounters; // [batch, heads]
  bool lastCtaMerges, countRows;
};

__device__ __forceinline__ void cpAsync16(unsigned dst, const void *src) {
  asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16;" ::"r"(dst),
               "l"(src));
}

// Tokens [begin, end) of (head, seq) through each warp's ring, tile
// w + kWarps * i to warp w; returns the lane's checksum of what arrived.
__device__ float streamChunk(const Params &p, int head, int seq, int begin,
                             int end, char *smem) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int numTiles = (end - begin + kTile - 1) / kTile;
  const int warpTiles = (numTiles - warp + kWarps - 1) / kWarps;
  char *ring = smem + warp * kStages * 2 * kTileBytes;
  auto tileToken = [&](int i) { return begin + (i * kWarps + warp) * kTile; };
  auto issue = [&](int i) {
    if (i < warpTiles) {
      int token0 = tileToken(i);
      int page = p.table[seq * p.pagesPerSeq + min(token0, end - 1) / kPage];
      char *slot = ring + (i % kStages) * 2 * kTileBytes;
      for (int c = 0; c < kTile / 2; ++c) {
        int row = lane / 16 + 2 * c;
        int token = min(token0 + row, end - 1);
        size_t off =
            ((size_t(page) * kPage + token % kPage) * p.kvHeads + head) *
                kRowBytes +
            lane % 16 * 16;
        unsigned dst = smemAddress(slot + row * kRowStride + lane % 16 * 16);
        cpAsync16(dst, p.k + off);
        cpAsync16(dst + kTileBytes, p.v + off);
      }
    }
    asm volatile("cp.async.commit_group;");
  };
  for (int s = 0; s + 1 < kStages; ++s)
    issue(s);
  float acc = 0.f;
  for (int i = 0; i < warpTiles; ++i) {
    issue(i + kStages - 1);
    asm volatile("cp.async.wait_group %0;" ::"n"(kStages - 1));
    __syncwarp();
    const char *slot = ring + (i % kStages) * 2 * kTileBytes;
    float2 kv = *reinterpret_cast<const float2 *>(slot + lane * 8);
    acc += kv.x + kv.y;
    __syncwarp();
  }
  asm volatile("cp.async.wait_all;");
  return acc;
}

// Folds partials first, first + step, ... (below last) of row `row` of
// sequence `seq`, float4 column `col`, into (max, sum, acc) with an online
// max. (Loading eight partials before folding them was slower for both
// merges: bench/NOTES.md 45.)
__device__ void foldPartials(const Params &p, int seq, int row, int col,
                             int first, int last, int step, float &max,
                             float &sum, float4 &acc) {
  const int heads = p.kvHeads * p.group;
  const size_t rowBase = (size_t(seq) * heads + row) * p.numSplits;
  for (int s = first; s < last; s += step) {
    // .cg: another SM wrote these in this launch; L1 may hold stale lines.
    float lse = __ldcg(p.partialLse + rowBase + s);
    float4 part = __ldcg(reinterpret_cast<const float4 *>(
                             p.partialOut + (rowBase + s) * kHeadDim) +
                         col);
    float newMax = fmaxf(max, lse);
    float ref = newMax == -INFINITY ? 0.f : newMax;
    float old = exp2f(max - ref), w = exp2f(lse - ref);
    sum = sum * old + w;
    acc.x = acc.x * old + w * part.x;
    acc.y = acc.y * old + w * part.y;
    acc.z = acc.z * old + w * part.z;
    acc.w = acc.w * old + w * part.w;
    max = newMax;
  }
}

__device__ void writeOut(const Params &p, int seq, int row, int col,
                         float sum, float4 acc) {
  float inv = sum > 0.f ? 1.f / sum : 0.f;
  __nv_bfloat16 *dst =
      p.out + (size_t(seq) * p.kvHeads * p.group + row) * kHeadDim + col * 4;
  dst[0] = __float2bfloat16(acc.x * inv);
  dst[1] = __float2bfloat16(acc.y * inv);
  dst[2] = __float2bfloat16(acc.z * inv);
  dst[3] = __float2bfloat16(acc.w * inv);
}

// grid (kvHeads, batch, numSplits), kThreads threads.
__global__ void __launch_bounds__(kThreads) decodeSplit(Params p) {
  extern __shared__ __align__(16) char smem[];
  __shared__ bool isLast;
  asm volatile("griddepcontrol.launch_dependents;");
  const int head = blockIdx.x, seq = blockIdx.y, split = blockIdx.z;
  const int begin = min(split * p.chunk, p.seqLen);
  const int end = min(begin + p.chunk, p.seqLen);
  float acc = begin < end ? streamChunk(p, head, seq, begin, end, smem) : 0.f;

  // The group's partial rows: each thread a float4 column of a row.
  const int heads = p.kvHeads * p.group;
  for (int item = threadIdx.x; item < p.group * kColumns; item += kThreads) {
    int row = head * p.group + item / kColumns, col = item % kColumns;
    size_t rowSplit = (size_t(seq) * heads + row) * p.numSplits + split;
    float x = acc * 1e-30f + float(split % 7) * 0.125f;
    reinterpret_cast<float4 *>(p.partialOut + rowSplit * kHeadDim)[col] =
        make_float4(x, x + 1.f, x + 2.f, x + 3.f);
    if (col == 0)
      p.partialLse[rowSplit] = float(split % 5) - 2.f;
  }
  if (p.countRows) {
    __threadfence();
    __syncthreads();
    if (threadIdx.x < p.group)
      atomicAdd(p.rowCounters + seq * heads + head * p.group + threadIdx.x,
                1u);
  }
  if (!p.lastCtaMerges)
    return;
  // Every writer's stores before the counter (threadFenceReduction's
  // pattern); the last to count merges and resets the counter.
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned *counter = p.counters + seq * p.kvHeads + head;
    isLast = atomicAdd(counter, 1u) == unsigned(p.numSplits - 1);
    if (isLast)
      *counter = 0;
  }
  __syncthreads();
  if (!isLast)
    return;
  __threadfence();
  for (int item = threadIdx.x; item < p.group * kColumns; item += kThreads) {
    int row = head * p.group + item / kColumns, col = item % kColumns;
    float max = -INFINITY, sum = 0.f;
    float4 m = make_float4(0.f, 0.f, 0.f, 0.f);
    foldPartials(p, seq, row, col, 0, p.numSplits, 1, max, sum, m);
    writeOut(p, seq, row, col, sum, m);
  }
}

// grid (heads, batch), kThreads threads: kColumns column threads times
// kThreads / kColumns split lanes, summed through shared memory (the
// library's split-lanes mapping, folded online).
__global__ void __launch_bounds__(kThreads) mergeGrid(Params p) {
  constexpr int kLanes = kThreads / kColumns;
  __shared__ float laneMax[kLanes][kColumns], laneSum[kLanes][kColumns];
  __shared__ float4 laneAcc[kLanes][kColumns];
  const int row = blockIdx.x, seq = blockIdx.y;
  if (p.countRows) {
    // Every decode CTA is resident or done once a programmatic launch lets
    // this grid start, so the wait ends.
    if (threadIdx.x == 0) {
      unsigned *counter = p.rowCounters + seq * gridDim.x + row;
      unsigned seen;
      do
        asm volatile("ld.acquire.gpu.global.u32 %0, [%1];"
                     : "=r"(seen)
                     : "l"(counter)
                     : "memory");
      while (seen != unsigned(p.numSplits));
      *counter = 0;
    }
    __syncthreads();
  } else {
    asm volatile("griddepcontrol.wait;" ::: "memory");
  }
  const int col = threadIdx.x % kColumns, lane = threadIdx.x / kColumns;
  float max = -INFINITY, sum = 0.f;
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  foldPartials(p, seq, row, col, lane, p.numSplits, kLanes, max, sum, acc);
  laneMax[lane][col] = max;
  laneSum[lane][col] = sum;
  laneAcc[lane][col] = acc;
  __syncthreads();
  if (lane != 0)
    return;
  float m = -INFINITY;
  for (int l = 0; l < kLanes; ++l)
    m = fmaxf(m, laneMax[l][col]);
  float ref = m == -INFINITY ? 0.f : m, total = 0.f;
  float4 a = make_float4(0.f, 0.f, 0.f, 0.f);
  for (int l = 0; l < kLanes; ++l) {
    float w = exp2f(laneMax[l][col] - ref);
    total += w * laneSum[l][col];
    a.x += w * laneAcc[l][col].x;
    a.y += w * laneAcc[l][col].y;
    a.z += w * laneAcc[l][col].z;
    a.w += w * laneAcc[l][col].w;
  }
  writeOut(p, seq, row, col, total, a);
}

struct Case {
  const char *name;
  int batch, seqLen, kvHeads, group, numSplits;
};

int main() {
  // The runtime's split counts for these shapes on an H200 (NOTES 44).
  const Case cases[] = {
      {"B=1 S=32768 32/8", 1, 32768, 8, 4, 33},
      {"B=1 S=32768 32/8, 16 splits", 1, 32768, 8, 4, 16},
      {"B=1 S=131072 32/8", 1, 131072, 8, 4, 33},
      {"B=8 S=8192 32/8", 8, 8192, 8, 4, 4},
      {"B=64 S=4096 32/1", 64, 4096, 1, 32, 4},
      {"B=32 S=4096 28/4, 2 splits", 32, 4096, 4, 7, 2},
  };
  constexpr int kSets = 2, kCalls = 10, kReps = 15;
  CHECK(cudaFuncSetAttribute(decodeSplit,
                             cudaFuncAttributeMaxDynamicSharedMemorySize,
                             kSmemBytes));
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("# %s; %d calls back to back per sample, median of %d, two "
              "input sets alternating; µs per call (eager / CUDA graph)\n",
              prop.name, kCalls, kReps);
  std::printf("%-30s %-20s %9s %9s %s\n", "case", "merge", "eager", "graph",
              "max |out - grid's|");
  std::mt19937 rng(0);
  cudaStream_t stream;
  CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (const Case &c : cases) {
    const int pagesPerSeq = (c.seqLen + kPage - 1) / kPage;
    const int pages = c.batch * pagesPerSeq;
    const size_t kvBytes = size_t(pages) * kPage * c.kvHeads * kRowBytes;
    const int heads = c.kvHeads * c.group;
    const int step = kTile * kWarps;
    const int chunk =
        ((c.seqLen + c.numSplits - 1) / c.numSplits + step - 1) / step * step;
    char *kv[kSets][2];
    int *table[kSets];
    for (int s = 0; s < kSets; ++s) {
      for (char *&buf : kv[s]) {
        CHECK(cudaMalloc(&buf, kvBytes));
        CHECK(cudaMemset(buf, 0x3c, kvBytes));
      }
      std::vector<int> order(pages);
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      CHECK(cudaMalloc(&table[s], pages * sizeof(int)));
      CHECK(cudaMemcpy(table[s], order.data(), pages * sizeof(int),
                       cudaMemcpyHostToDevice));
    }
    float *partialOut, *partialLse;
    __nv_bfloat16 *out;
    unsigned *counters, *rowCounters;
    const size_t rows = size_t(c.batch) * heads;
    CHECK(cudaMalloc(&partialOut,
                     rows * c.numSplits * kHeadDim * sizeof(float)));
    CHECK(cudaMalloc(&partialLse, rows * c.numSplits * sizeof(float)));
    CHECK(cudaMalloc(&out, rows * kHeadDim * sizeof(__nv_bfloat16)));
    const size_t counterBytes = size_t(c.batch) * c.kvHeads * sizeof(unsigned);
    CHECK(cudaMalloc(&counters, counterBytes));
    CHECK(cudaMemset(counters, 0, counterBytes));
    CHECK(cudaMalloc(&rowCounters, rows * sizeof(unsigned)));
    CHECK(cudaMemset(rowCounters, 0, rows * sizeof(unsigned)));
    std::vector<__nv_bfloat16> reference(rows * kHeadDim),
        result(rows * kHeadDim);

    auto call = [&](Merge m, int set) {
      Params p;
      p.k = kv[set][0];
      p.v = kv[set][1];
      p.table = table[set];
      p.kvHeads = c.kvHeads;
      p.group = c.group;
      p.pagesPerSeq = pagesPerSeq;
      p.seqLen = c.seqLen;
      p.numSplits = c.numSplits;
      p.chunk = chunk;
      p.partialOut = partialOut;
      p.partialLse = partialLse;
      p.out = out;
      p.counters = counters;
      p.rowCounters = rowCounters;
      p.lastCtaMerges = m == Merge::lastCta || m == Merge::lastCtaMemset;
      p.countRows = m == Merge::rowCounters;
      if (m == Merge::lastCtaMemset)
        CHECK(cudaMemsetAsync(counters, 0, counterBytes, stream));
      decodeSplit<<<dim3(c.kvHeads, c.batch, c.numSplits), kThreads,
                    kSmemBytes, stream>>>(p);
      if (m == Merge::grid)
        mergeGrid<<<dim3(heads, c.batch), kThreads, 0, stream>>>(p);
      if (m == Merge::gridPdl || m == Merge::rowCounters) {
        cudaLaunchConfig_t config = {};
        config.gridDim = dim3(heads, c.batch);
        config.blockDim = dim3(kThreads);
        config.stream = stream;
        cudaLaunchAttribute attr;
        attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr.val.programmaticStreamSerializationAllowed = 1;
        config.attrs = &attr;
        config.numAttrs = 1;
        CHECK(cudaLaunchKernelEx(&config, mergeGrid, p));
      }
    };
    auto calls = [&](Merge m) {
      for (int i = 0; i < kCalls; ++i)
        call(m, i % kSets);
    };
    const Merge merges[] = {Merge::none, Merge::grid, Merge::gridPdl,
                            Merge::lastCta, Merge::lastCtaMemset,
                            Merge::rowCounters};
    for (Merge m : merges) {
      calls(m);
      CHECK(cudaStreamSynchronize(stream));
      CHECK(cudaGetLastError());
      if (m != Merge::none) {
        CHECK(cudaMemcpy(result.data(), out,
                         result.size() * sizeof(__nv_bfloat16),
                         cudaMemcpyDeviceToHost));
        if (m == Merge::grid)
          reference = result;
      }
      float eager =
          medianMicroseconds(stream, [&] { calls(m); }, kReps) / kCalls;
      cudaGraph_t graph;
      cudaGraphExec_t exec;
      CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
      calls(m);
      CHECK(cudaStreamEndCapture(stream, &graph));
      CHECK(cudaGraphInstantiate(&exec, graph, 0));
      float replayed =
          medianMicroseconds(
              stream, [&] { CHECK(cudaGraphLaunch(exec, stream)); }, kReps) /
          kCalls;
      CHECK(cudaGraphExecDestroy(exec));
      CHECK(cudaGraphDestroy(graph));
      float maxDiff = 0.f;
      for (size_t i = 0; m != Merge::none && i < result.size(); ++i)
        maxDiff = std::max(maxDiff, std::fabs(__bfloat162float(result[i]) -
                                              __bfloat162float(reference[i])));
      std::printf("%-30s %-20s %9.1f %9.1f %.3g\n", c.name, mergeName(m),
                  eager, replayed, maxDiff);
    }
    for (int s = 0; s < kSets; ++s) {
      CHECK(cudaFree(kv[s][0]));
      CHECK(cudaFree(kv[s][1]));
      CHECK(cudaFree(table[s]));
    }
    CHECK(cudaFree(partialOut));
    CHECK(cudaFree(partialLse));
    CHECK(cudaFree(out));
    CHECK(cudaFree(counters));
    CHECK(cudaFree(rowCounters));
  }
  CHECK(cudaStreamDestroy(stream));
  return 0;
}
