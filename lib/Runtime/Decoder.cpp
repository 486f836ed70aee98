//===- Decoder.cpp - find, size and launch a decode -----------------------===//
//
// A Decoder is one manifest entry: create() finds it, the split-count
// model and the Spec's workspace layout size a launch, and decode() packs
// the kernels' parameters in the Spec's order and launches on the caller's
// stream. decode() allocates nothing and does not synchronise (unless the
// check mode is asked for), so a CUDA graph can capture it.
//
//===----------------------------------------------------------------------===//

#include "LaunchParams.h"
#include "Manifest.h"
#include "ModuleCache.h"
#include "Validation.h"

#include "PagedAttn/Spec/KernelABI.h"

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>

using namespace paged_attn;
using namespace paged_attn::cuda;
using namespace paged_attn::detail;

//===----------------------------------------------------------------------===//
// Creation
//===----------------------------------------------------------------------===//

Decoder::~Decoder() = default;

Status Decoder::create(std::shared_ptr<const KernelLibrary> library,
                       const KernelConfig &config,
                       std::unique_ptr<Decoder> *result) {
  if (!library)
    return invalid("no kernel library");
  // The op's rules first: a config that breaks one has no kernel anywhere.
  if (std::string error = config.validate(); !error.empty())
    return invalid(error);
  const KernelSpec *spec = library->find(config);
  if (!spec)
    return noKernelFor("kernel", config, library->configs());
  std::unique_ptr<Decoder> decoder(new Decoder);
  decoder->library_ = std::move(library);
  decoder->spec_ = spec;
  decoder->config_ = spec->config;
  *result = std::move(decoder);
  return Status::ok();
}

const char *Decoder::kernelKind() const {
  return spec_->tensorCores ? "tensor-cores" : "cuda-cores";
}

//===----------------------------------------------------------------------===//
// Split count and workspace
//===----------------------------------------------------------------------===//

/// The Spec's workspace for `batch` sequences split `numSplits` ways; none
/// when nothing is split (the decode kernel then writes out itself). An
/// error when its size does not fit in memory.
static std::string layOutWorkspace(const KernelConfig &config, int64_t batch,
                                   int64_t numSplits, SplitWorkspace *ws) {
  if (numSplits <= 1 || batch <= 0) {
    *ws = SplitWorkspace();
    return "";
  }
  return layOutSplitWorkspace(config, batch, numSplits, ws);
}

Status Decoder::workspaceSize(int64_t batch, int64_t numSplits,
                              size_t *bytes) const {
  if (Status s = checkBatch(batch); !s)
    return s;
  if (Status s = checkNumSplits(numSplits); !s)
    return s;
  SplitWorkspace ws;
  if (std::string error = layOutWorkspace(config_, batch, numSplits, &ws);
      !error.empty())
    return invalid(error);
  *bytes = ws.bytes;
  return Status::ok();
}

size_t Decoder::workspaceSize(int64_t batch, int numSplits) const {
  // Without a size to give, 0: decode() checks the same and fails with the
  // reason, where a wrapped number would have been taken for a real size.
  size_t bytes = 0;
  if (!workspaceSize(batch, int64_t(numSplits), &bytes))
    return 0;
  return bytes;
}

namespace {
/// The split-count model's inputs, clamped to what a launch can have so
/// that its arithmetic stays in range for any caller's numbers: at most
/// kMaxBatch sequences (decode() refuses more) of at most INT32_MAX tokens
/// (seq_lens are i32), and at most 2^16 SMs and CTAs per SM.
struct SplitModel {
  int64_t batch = 0, ctasPerSeq = 0, ctas = 0, maxSeqLen = 0, sms = 1,
          slots = 1, step = 1;
  /// The lengths the host knows (`batch` of them, each taken as at most
  /// maxSeqLen), or null when they are all taken to be maxSeqLen. Read in
  /// place: a launch allocates nothing on the host.
  const int32_t *lengths = nullptr;

  SplitModel(const KernelConfig &config, const KernelSpec &spec,
             int64_t batchIn, int64_t maxSeqLenIn, int64_t multiprocessors,
             int64_t perSM) {
    constexpr int64_t kMaxUnits = int64_t(1) << 16;
    batch = std::clamp<int64_t>(batchIn, 0, kMaxBatch);
    // At most kMaxBatch * num_heads (< 2^31, checked at load): no overflow.
    ctasPerSeq = config.numKVHeads * spec.ctasPerKVHead;
    ctas = batch * ctasPerSeq;
    maxSeqLen = std::clamp<int64_t>(maxSeqLenIn, 0, INT32_MAX);
    sms = std::clamp<int64_t>(multiprocessors, 1, kMaxUnits);
    slots = sms * std::clamp<int64_t>(perSM, 1, kMaxUnits);
    step = spec.tokensPerIteration;
  }

  /// Length `b` of the host's, in [0, maxSeqLen].
  int64_t length(int64_t b) const {
    return std::clamp<int64_t>(lengths[b], 0, maxSeqLen);
  }

  /// Plans for these lengths rather than maxSeqLen each: the longest of
  /// them bounds the chunks.
  void setLengths(const int32_t *seqLens) {
    lengths = seqLens;
    int64_t longest = 0;
    for (int64_t b = 0; b < batch; ++b)
      longest = std::max(longest, length(b));
    maxSeqLen = longest;
  }

  bool trivial() const { return ctas <= 0 || maxSeqLen <= 0; }

  /// The split counts worth considering: each chunk at least four loop
  /// iterations long, at most 256 chunks, and at most about `waves` waves
  /// of CTAs were every sequence maxSeqLen long.
  int64_t splitsUpTo(int64_t waves) const {
    int64_t byLength = maxSeqLen / (4 * step);
    int64_t byWaves = (waves * slots + ctas - 1) / ctas;
    return std::clamp<int64_t>(std::min(byLength, byWaves), 1, 256);
  }
  /// An even split's candidates: about four waves.
  int64_t maxUsefulSplits() const { return splitsUpTo(4); }
  /// A plan's candidates, and what maxWorkspaceSize sizes for: about 32
  /// waves, as a ragged batch's short sequences leave most of their chunks
  /// empty (such CTAs return at once) and its long ones want more. The
  /// workspace is then about 32 * slots partial rows, whatever the batch.
  int64_t maxPlannedSplits() const { return splitsUpTo(32); }

  /// The chunk length of `splits` chunks of the longest sequence.
  int64_t chunk(int64_t splits) const {
    return splitChunkLength(maxSeqLen, splits, 0, step);
  }

  /// The CTAs with keys to read when chunks are `chunk` keys long.
  int64_t busyCTAs(int64_t chunk) const {
    if (!lengths)
      return ctas * ((maxSeqLen + chunk - 1) / chunk);
    int64_t chunks = 0;
    for (int64_t b = 0; b < batch; ++b)
      chunks += (length(b) + chunk - 1) / chunk;
    return chunks * ctasPerSeq;
  }

  /// The time of chunks `splits` times shorter than the longest sequence:
  /// the waves of busy CTAs the machine runs (`slots` CTAs at a time) times
  /// the keys each CTA reads, plus a fixed cost per CTA worth one loop
  /// iteration. A plan for known lengths also counts the CTAs whose chunk
  /// is empty, one loop iteration each spread over the slots: without that
  /// it took 64 splits where 18 were 11% faster (bench/NOTES.md 41). In
  /// __int128: waves (< 2^56) times a chunk (< 2^32) may pass int64_t.
  __int128 cost(int64_t splits) const {
    int64_t c = chunk(splits);
    int64_t waves = (busyCTAs(c) + slots - 1) / slots;
    __int128 time = __int128(waves) * (c + step);
    if (lengths)
      time += (__int128(ctas) * splits * step + slots - 1) / slots;
    return time;
  }

  /// What the waves leave out once the grid streams at DRAM's pace: an
  /// SM's busy CTAs share its part of the bandwidth, so the most loaded
  /// SM's keys take at least their time, however many slots it has; and a
  /// split's partials and merge grid cost about two loop iterations
  /// (bench/NOTES.md 44).
  __int128 streamingCost(int64_t splits) const {
    int64_t c = chunk(splits);
    __int128 mostLoadedSM = __int128((busyCTAs(c) + sms - 1) / sms) * c;
    __int128 time = std::max(cost(splits), mostLoadedSM);
    return splits > 1 ? time + 2 * step : time;
  }

  /// The cheapest split count (the fewest on ties).
  int64_t bestSplits() const {
    if (trivial())
      return 1;
    // On H200 the best measured counts were the ones that fill exactly one
    // wave (bench/NOTES.md).
    int64_t best = 1;
    __int128 bestCost = cost(1);
    int64_t limit = lengths ? maxPlannedSplits() : maxUsefulSplits();
    for (int64_t splits = 2; splits <= limit; ++splits) {
      __int128 c = cost(splits);
      if (c < bestCost) {
        best = splits;
        bestCost = c;
      }
    }
    // The waves favour filling empty slots; where the unsplit grid already
    // keeps every SM streaming, that only adds the merge (28/4 and
    // head_dim 64 at 32 x 4k: 4-5% slower split two ways on H200).
    if (best > 1 && streamingCost(1) <= streamingCost(best))
      return 1;
    return best;
  }
};
} // namespace

int Decoder::chooseNumSplits(int64_t batch, int64_t maxSeqLen,
                             int multiprocessorCount,
                             int ctasPerMultiprocessor) const {
  SplitModel model(config_, *spec_, batch, maxSeqLen, multiprocessorCount,
                   ctasPerMultiprocessor);
  return static_cast<int>(model.bestSplits());
}

Decoder::SplitPlan Decoder::planSplits(int64_t batch, const int32_t *seqLens,
                                       int64_t maxSeqLen,
                                       int multiprocessorCount,
                                       int ctasPerMultiprocessor) const {
  SplitModel model(config_, *spec_, batch, maxSeqLen, multiprocessorCount,
                   ctasPerMultiprocessor);
  // The lengths only lower the longest, so the count stays within
  // maxPlannedSplits for maxSeqLen: maxWorkspaceSize's workspace holds it.
  model.setLengths(seqLens);
  SplitPlan plan;
  plan.numSplits = static_cast<int>(model.bestSplits());
  // Every sequence takes chunks of the longest one's length: its last
  // chunks are empty where it has fewer keys.
  if (plan.numSplits > 1)
    plan.splitChunk = static_cast<int>(model.chunk(plan.numSplits));
  return plan;
}

Status Decoder::maxWorkspaceSize(int64_t batch, int64_t maxSeqLen,
                                 size_t *bytes) const {
  if (Status s = checkBatch(batch); !s)
    return s;
  int sms = 0, perSM = 0;
  if (Status s = currentOccupancy(*spec_, &sms, &perSM); !s)
    return s;
  SplitModel model(config_, *spec_, batch, maxSeqLen, sms, perSM);
  int64_t bound = model.trivial() ? 1 : model.maxPlannedSplits();
  SplitWorkspace ws;
  if (std::string error = layOutWorkspace(config_, batch, bound, &ws);
      !error.empty())
    return invalid(error);
  *bytes = ws.bytes;
  return Status::ok();
}

Status Decoder::defaultNumSplits(int64_t batch, int64_t maxSeqLen,
                                 int *numSplits) const {
  if (Status s = checkBatch(batch); !s)
    return s;
  int sms = 0, perSM = 0;
  if (Status s = currentOccupancy(*spec_, &sms, &perSM); !s)
    return s;
  *numSplits = chooseNumSplits(batch, maxSeqLen, sms, perSM);
  return Status::ok();
}

//===----------------------------------------------------------------------===//
// decode
//===----------------------------------------------------------------------===//

namespace {
/// What the last decode() on this thread resolved: a repeated launch in the
/// same context skips the module cache's lock and lookups.
struct LaunchCache {
  uint64_t specId = 0;
  CUcontext ctx = nullptr;
  LoadedKernels kernels;
  int multiprocessors = 0;
  /// The split count chosen for the last (batch, max_seq_len).
  int64_t splitBatch = -1, splitMaxSeqLen = -1;
  int splits = 1;
};
thread_local LaunchCache lastLaunch;
} // namespace

/// Points `cache` at `spec`'s kernels and the SM count in the current
/// context, unless it already does.
static Status resolveLaunch(const Driver &d, const KernelSpec &spec,
                            LaunchCache &cache) {
  CUcontext current = nullptr;
  d.cuCtxGetCurrent(&current);
  if (current && cache.ctx == current && cache.specId == spec.id)
    return Status::ok();
  CUcontext ctx;
  CUdevice device;
  if (Status s = currentContext(d, &ctx, &device); !s)
    return s;
  LoadedKernels loaded;
  if (Status s = ModuleCache::get().lookup(d, ctx, spec, &loaded); !s)
    return s;
  cache.ctx = ctx;
  cache.specId = spec.id;
  cache.kernels = loaded;
  cache.multiprocessors = ModuleCache::get().multiprocessorCount(d, device);
  cache.splitBatch = -1;
  return Status::ok();
}

/// The automatic split count, chosen again only when (batch, max_seq_len)
/// differs from the last launch's on this thread.
static int automaticSplits(const Decoder &decoder, LaunchCache &cache,
                           int64_t batch, int64_t maxSeqLen) {
  if (cache.splitBatch != batch || cache.splitMaxSeqLen != maxSeqLen) {
    cache.splits = decoder.chooseNumSplits(
        batch, maxSeqLen, cache.multiprocessors, cache.kernels.decodeCTAsPerSM);
    cache.splitBatch = batch;
    cache.splitMaxSeqLen = maxSeqLen;
  }
  return cache.splits;
}

/// Checks the caller's workspace against the Spec's layout of it.
static Status checkWorkspace(const DecodeParams &p, const SplitWorkspace &ws,
                             int numSplits) {
  if (ws.bytes == 0)
    return Status::ok();
  if (!p.workspace || p.workspaceBytes < ws.bytes)
    return invalid("split-KV with " + std::to_string(numSplits) +
                   " splits needs a workspace of " + std::to_string(ws.bytes) +
                   " bytes, got " + std::to_string(p.workspaceBytes) +
                   (p.workspace ? "" : " (null)"));
  if (reinterpret_cast<uintptr_t>(p.workspace) % 256 != 0)
    return invalid("workspace must be 256-byte aligned");
  return Status::ok();
}

/// The values the decode and merge kernels take: the caller's tensors, the
/// workspace views (null when unsplit) and the scalars.
static void bindDecodeValues(const KernelSpec &spec, const DecodeParams &p,
                             const SplitWorkspace &ws,
                             const Decoder::SplitPlan &plan,
                             LaunchValues &values) {
  for (const BoundParam &bound : spec.decode.params)
    if (const Tensor *t = operandTensor(p, bound.value))
      values.setMemRef(bound.value, *t);
  char *base = ws.bytes ? static_cast<char *>(p.workspace) : nullptr;
  values.setMemRef(LaunchValue::PartialOut, base, int(std::size(ws.outSizes)),
                   ws.outSizes, ws.outStrides);
  values.setMemRef(LaunchValue::PartialLse,
                   base ? base + ws.lseOffset : nullptr,
                   int(std::size(ws.lseSizes)), ws.lseSizes, ws.lseStrides);
  float headDim = float(spec.config.headDim);
  values.setF32(LaunchValue::Scale,
                p.scale > 0 ? p.scale : 1.0f / std::sqrt(headDim));
  values.setInt(LaunchValue::NumSplits, plan.numSplits);
  values.setInt(LaunchValue::SplitChunk, plan.splitChunk);
  values.setInt(LaunchValue::Window, p.window);
  values.setF32(LaunchValue::SoftCap, p.softCap);
}

static Status launchFailed(const Driver &d, const std::string &kernel,
                           CUresult r) {
  return Status(StatusCode::CudaError,
                "launching " + kernel + ": " + describe(d, r));
}

/// A launch of `fn`; where `programmatic`, with programmatic stream
/// serialization: the grid may be scheduled while the one before it in the
/// stream drains, and waits for it on the device (griddepcontrol.wait).
/// Drivers before CUDA 12.0 lack cuLaunchKernelEx: there it is launched
/// plainly (the wait then returns at once).
static CUresult launchKernel(const Driver &d, CUfunction fn,
                             const std::array<unsigned, 3> &grid,
                             unsigned block, unsigned sharedBytes,
                             CUstream stream, void **extra, bool programmatic) {
  if (!programmatic || !d.cuLaunchKernelEx)
    return d.cuLaunchKernel(fn, grid[0], grid[1], grid[2], block, 1, 1,
                            sharedBytes, stream, nullptr, extra);
  CUlaunchAttribute attribute = {};
  attribute.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
  attribute.value.programmaticStreamSerializationAllowed = 1;
  CUlaunchConfig config = {};
  config.gridDimX = grid[0];
  config.gridDimY = grid[1];
  config.gridDimZ = grid[2];
  config.blockDimX = block;
  config.blockDimY = config.blockDimZ = 1;
  config.sharedMemBytes = sharedBytes;
  config.hStream = stream;
  config.attrs = &attribute;
  config.numAttrs = 1;
  return d.cuLaunchKernelEx(&config, fn, nullptr, extra);
}

/// Whether `ctas` decode CTAs spread evenly over the SMs would put as many
/// on the busiest SM as it holds (`perSM`). A grid scheduled early lands
/// wherever slots are free as the grid before it drains, up to `perSM` on
/// an SM: for such a grid no more than an even spread gives; a smaller one
/// may end up with several on one SM and none on another, and streams at
/// the busiest SM's pace (28/4 and head_dim 64 at 32 x 4k, unsplit: 2-5%
/// slower on H200, bench/NOTES.md 50).
static bool fillsEverySM(int64_t ctas, int multiprocessors, int perSM) {
  if (multiprocessors < 1 || perSM < 1)
    return false;
  return (ctas + multiprocessors - 1) / multiprocessors >= perSM;
}

/// Grid: (KV heads x CTAs per KV head, batch, splits). Programmatic where
/// the kernel waits for the grid before it (sm_90 and up) and the grid
/// fills every SM, so that its launch overlaps that grid's tail.
static Status launchDecode(const Driver &d, const KernelSpec &spec,
                           const LaunchCache &cache, const LaunchValues &values,
                           int64_t batch, int numSplits, CUstream stream) {
  ParamBuilder args;
  if (Status s = args.pack(spec.decode.name, spec.decode.params, values); !s)
    return s;
  std::array<unsigned, 3> grid = {
      unsigned(spec.config.numKVHeads * spec.ctasPerKVHead), unsigned(batch),
      unsigned(numSplits)};
  bool programmatic =
      spec.decodeProgrammaticLaunch &&
      fillsEverySM(int64_t(grid[0]) * grid[1] * grid[2], cache.multiprocessors,
                   cache.kernels.decodeCTAsPerSM);
  CUresult r =
      launchKernel(d, cache.kernels.decode, grid, unsigned(spec.decode.block),
                   unsigned(spec.decodeDynamicSharedBytes), stream,
                   args.extra(), programmatic);
  return r == CUDA_SUCCESS ? Status::ok()
                           : launchFailed(d, spec.decode.name, r);
}

/// Grid: (rows, batch): query heads, times the new queries of a
/// multi-token decode. With programmatic launch the merge grid is
/// scheduled while the decode grid finishes and waits for its results on
/// the device.
static Status launchMerge(const Driver &d, const KernelSpec &spec,
                          CUfunction fn, const LaunchValues &values,
                          int64_t batch, CUstream stream) {
  ParamBuilder args;
  if (Status s = args.pack(spec.merge.name, spec.merge.params, values); !s)
    return s;
  CUresult r = launchKernel(
      d, fn, {unsigned(spec.config.partialRows()), unsigned(batch), 1},
      unsigned(spec.merge.block), 0, stream, args.extra(),
      spec.mergeProgrammaticLaunch);
  return r == CUDA_SUCCESS ? Status::ok() : launchFailed(d, spec.merge.name, r);
}

Status Decoder::decode(const DecodeParams &p, void *streamPtr) const {
  int64_t batch = 0, maxSeqLen = 0;
  Status s = validate(p, &batch, &maxSeqLen);
  if (!s)
    return s;
  const Driver *d;
  if (!(s = requireDriver(&d)))
    return s;
  LaunchCache &cache = lastLaunch;
  if (!(s = resolveLaunch(*d, *spec_, cache)))
    return s;
  if (batch == 0)
    return Status::ok();
  CUstream stream = static_cast<CUstream>(streamPtr);
  if (p.checkPageTable && !(s = checkPageTable(p, stream, cache.ctx)))
    return s;

  // A window bounds the keys a sequence attends: split for those (the
  // workspace bound for maxSeqLen covers fewer keys).
  int64_t maxKeys =
      config_.variants.window ? std::min(maxSeqLen, p.window) : maxSeqLen;
  SplitPlan plan{p.numSplits, p.splitChunk};
  if (!plan.numSplits && p.hostSeqLens)
    plan = planSplits(batch, p.hostSeqLens, maxKeys, cache.multiprocessors,
                      cache.kernels.decodeCTAsPerSM);
  else if (!plan.numSplits)
    plan.numSplits = automaticSplits(*this, cache, batch, maxKeys);
  int numSplits = plan.numSplits;
  SplitWorkspace ws;
  if (std::string error = layOutWorkspace(config_, batch, numSplits, &ws);
      !error.empty())
    return invalid(error);
  if (!(s = checkWorkspace(p, ws, numSplits)))
    return s;
  LaunchValues values;
  bindDecodeValues(*spec_, p, ws, plan, values);
  if (!(s = launchDecode(*d, *spec_, cache, values, batch, numSplits, stream)))
    return s;
  if (numSplits == 1)
    return Status::ok();
  return launchMerge(*d, *spec_, cache.kernels.merge, values, batch, stream);
}
