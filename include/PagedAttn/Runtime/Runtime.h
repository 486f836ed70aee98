//===- Runtime.h - load and launch paged decode kernels ---------*- C++ -*-===//
//
// Loads PTX compiled by paged-attn-compile together with its manifest and
// launches decode (and paged_attn.merge and paged_attn.append) on the
// caller's CUDA stream. Depends only on the CUDA
// driver, loaded at run time: without one, every call that needs the GPU
// returns StatusCode::NoDriver and everything else still works.
//
// decode() allocates nothing and does not synchronise, so a CUDA graph can
// capture it; split-KV scratch comes from a caller-provided workspace.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_RUNTIME_RUNTIME_H
#define PAGEDATTN_RUNTIME_RUNTIME_H

#include "PagedAttn/Spec/AppendSpec.h"
#include "PagedAttn/Spec/DecodeSpec.h"
#include "PagedAttn/Spec/KernelABI.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace paged_attn {

enum class StatusCode {
  Ok = 0,
  InvalidArgument = 1, ///< a bad pointer, shape, dtype, layout or option
  NotFound = 2,        ///< no kernel for the config, or a missing file
  NoDriver = 3,        ///< no CUDA driver on this machine
  CudaError = 4,       ///< the driver reported an error (JIT log included)
  BadPageTable = 5,    ///< the check mode found a bad block_table/seq_lens
  ParseError = 6,      ///< a malformed manifest
};

class Status {
public:
  Status() = default;
  Status(StatusCode code, std::string message)
      : code_(code), message_(std::move(message)) {}
  static Status ok() { return Status(); }
  bool isOk() const { return code_ == StatusCode::Ok; }
  explicit operator bool() const { return isOk(); }
  StatusCode code() const { return code_; }
  const std::string &message() const { return message_; }

private:
  StatusCode code_ = StatusCode::Ok;
  std::string message_;
};

/// A strided view of device memory. Sizes and strides are in elements.
struct Tensor {
  void *data = nullptr;
  DType dtype = DType::F32;
  int rank = 0;
  int64_t sizes[4] = {0, 0, 0, 0};
  int64_t strides[4] = {0, 0, 0, 0};

  /// A row-major (contiguous) view. More than four sizes, or sizes whose
  /// product overflows int64_t, give rank -1: a view every call refuses.
  static Tensor contiguous(void *data, DType dtype,
                           std::initializer_list<int64_t> sizes);
  /// The product of the sizes; -1 when it overflows int64_t.
  int64_t numElements() const;
};

/// What a kernel pair is specialised on: the decode's spec (its name, as in
/// manifests, and its validate(), the op's rules).
using KernelConfig = DecodeSpec;

/// A multi-token decode (KernelConfig::queryLen L > 1, or a tree mask)
/// takes q and out of [batch, L, num_heads, head_dim] and lse of [batch, L,
/// num_heads]; seq_lens count the L new tokens, already in the cache.
struct DecodeParams {
  Tensor q;           ///< [batch, num_heads, head_dim]
  /// nhd: [pages, page, kv_heads, head_dim]; hnd: [pages, kv_heads, page,
  /// head_dim]; of KernelConfig::cacheDType() (q's, or kvQuant's fp8).
  Tensor kCache;
  Tensor vCache;      ///< same shape and dtype as kCache
  Tensor blockTable;  ///< [batch, max_pages] i32
  Tensor seqLens;     ///< [batch] i32
  Tensor out;         ///< [batch, num_heads, head_dim]
  float scale = 0.0f; ///< 0: 1/sqrt(head_dim)
  /// An upper bound of seq_lens, used to pick the split count; -1 means
  /// the page table's capacity (max_pages * page).
  int64_t maxSeqLen = -1;
  /// Chunks per sequence; 0 picks one from the grid and the SM count.
  int numSplits = 0;
  /// With numSplits given, the fewest keys a chunk takes (rounded up to the
  /// kernel's loop iterations; PagedAttn/Spec/KernelABI.h's
  /// splitChunkLength): a sequence of fewer than numSplits * splitChunk
  /// keys leaves its last chunks empty. 0 splits each sequence evenly.
  /// Must be 0 when numSplits is 0 (the plan then chooses it).
  int splitChunk = 0;
  /// seq_lens as the host knows them ([batch] i32 in host memory), or
  /// null. With them an automatic split is planned for these lengths: one
  /// chunk length for the whole batch, so that a ragged batch's long
  /// sequences take more CTAs than its short ones, where an even split
  /// gives each the same count and the longest decides the time. Only the
  /// balance depends on them: the launch is correct for any seq_lens on
  /// the device (a CUDA graph captured with a plan may be replayed after
  /// the lengths change). Read during decode() only.
  const int32_t *hostSeqLens = nullptr;
  void *workspace = nullptr; ///< device memory, see Decoder::workspaceSize
  size_t workspaceBytes = 0;
  /// Validate block_table and seq_lens on the device first and fail with
  /// StatusCode::BadPageTable naming the first bad entry. Synchronises the
  /// stream and allocates; for debugging, not for graphs.
  bool checkPageTable = false;

  /// The values of the config's variants (KernelConfig::variants says
  /// which it has; a value for a variant it lacks is an error, so that a
  /// window or a cap is never silently ignored). See the op's
  /// documentation for their semantics.
  int64_t window = 0;   ///< keys seq_len - window <= t < seq_len; >= 1
  float softCap = 0.0f; ///< s <- c * tanh(s / c); finite, > 0
  Tensor alibiSlopes;   ///< [num_heads] f32
  Tensor sinks;         ///< [num_heads] f32
  Tensor lse;           ///< [batch, num_heads] f32, written (natural log)
  /// [batch, L, L] i8: new query i sees new token j <= i where nonzero.
  Tensor treeMask;

  /// The scales of a quantised config's caches (KernelConfig::kvQuant;
  /// given exactly when it has one, as a variant's values are): element x
  /// of k_cache stands for x * k_scale, of v_cache for x * v_scale. f32 of
  /// KernelConfig::kvScaleShape, any strides: per tensor rank 0 ([]); per
  /// head [kv_heads]; per token the cache's shape without head_dim (nhd
  /// [pages, page, kv_heads], hnd [pages, kv_heads, page]), read through
  /// the page table as the cache is.
  Tensor kScale;
  Tensor vScale; ///< the same shape as kScale
};

struct KernelSpec;
struct MergeKernelSpec;
struct AppendKernelSpec;
class KernelLibrary;

/// A decode kernel pair for one config, bound to the PTX that holds it.
/// Thread-safe: decode() may run concurrently from several threads.
class Decoder {
public:
  /// Finds `config` in `library` (see KernelLibrary).
  static Status create(std::shared_ptr<const KernelLibrary> library,
                       const KernelConfig &config,
                       std::unique_ptr<Decoder> *result);
  ~Decoder();

  const KernelConfig &config() const { return config_; }
  /// Which decode kernel the config was compiled to: "tensor-cores" or
  /// "cuda-cores".
  const char *kernelKind() const;

  /// Bytes of workspace decode() needs for `batch` sequences split
  /// `numSplits` ways, laid out as the Spec's layOutSplitWorkspace says: 0
  /// when numSplits is at most 1. InvalidArgument, saying why, for a batch
  /// or numSplits outside [0, 65535] (decode() takes no more) and for a
  /// workspace larger than size_t holds.
  Status workspaceSize(int64_t batch, int64_t numSplits, size_t *bytes) const;
  /// The same as a bare size: 0 where the Status overload fails (no size
  /// would be right; decode() then fails with InvalidArgument saying why).
  size_t workspaceSize(int64_t batch, int numSplits) const;
  /// A workspace size that covers every split count decode() may choose
  /// for `batch` sequences of at most `maxSeqLen` tokens on the current
  /// device (an upper bound: the choice is not monotone in the length).
  /// InvalidArgument for a batch outside [0, 65535].
  Status maxWorkspaceSize(int64_t batch, int64_t maxSeqLen,
                          size_t *bytes) const;
  /// The split count decode() uses when DecodeParams::numSplits is 0, on a
  /// device with `multiprocessorCount` SMs that each hold
  /// `ctasPerMultiprocessor` decode CTAs at once.
  int chooseNumSplits(int64_t batch, int64_t maxSeqLen, int multiprocessorCount,
                      int ctasPerMultiprocessor) const;
  /// chooseNumSplits for the current device and this decoder's kernel;
  /// InvalidArgument for a batch outside [0, 65535].
  Status defaultNumSplits(int64_t batch, int64_t maxSeqLen,
                          int *numSplits) const;
  /// A split count and chunk length (DecodeParams::numSplits, splitChunk)
  /// for sequences of `seqLens` keys (`batch` of them, host memory, each
  /// taken as at most `maxSeqLen`), as decode() plans them from
  /// DecodeParams::hostSeqLens; splitChunk is 0 when numSplits is 1. For
  /// equal lengths this is close to chooseNumSplits's count (the plan also
  /// charges each CTA of the grid and looks at more counts).
  struct SplitPlan {
    int numSplits = 1;
    int splitChunk = 0;
  };
  SplitPlan planSplits(int64_t batch, const int32_t *seqLens, int64_t maxSeqLen,
                       int multiprocessorCount,
                       int ctasPerMultiprocessor) const;

  /// Launches on `stream` (a CUstream; null is the legacy default stream)
  /// in the current CUDA context, or the device 0 primary context when
  /// none is current.
  Status decode(const DecodeParams &params, void *stream) const;

private:
  Decoder() = default;
  Status validate(const DecodeParams &params, int64_t *batch,
                  int64_t *maxSeqLen) const;
  Status checkPageTable(const DecodeParams &params, void *stream,
                        void *context) const;

  std::shared_ptr<const KernelLibrary> library_;
  const KernelSpec *spec_ = nullptr;
  KernelConfig config_;
};

/// What a merge kernel is specialised on: paged_attn.merge's spec
/// (MergeSpec::forOp: partials of the result's dtype, natural
/// log-sum-exps).
using MergeConfig = MergeSpec;

/// paged_attn.merge: N partial results of one attention, each with the
/// natural log-sum-exp of its logits, combined into one (the op's
/// documentation gives the semantics). Partials with lse = -inf are empty
/// and add nothing.
struct MergeParams {
  Tensor partialOut; ///< [N, batch, num_heads, head_dim], the config's dtype
  Tensor partialLse; ///< [N, batch, num_heads] f32
  Tensor out;        ///< [batch, num_heads, head_dim], written
  Tensor sinks;      ///< [num_heads] f32, where the config has sinks
  Tensor lse;        ///< [batch, num_heads] f32, written where the config
                     ///< has a log-sum-exp output
};

/// A merge kernel for one config, bound to the PTX that holds it.
/// Thread-safe; allocates nothing and does not synchronise.
class Merger {
public:
  /// Finds `config` in `library` (its "merges"), after the op's rules.
  static Status create(std::shared_ptr<const KernelLibrary> library,
                       const MergeConfig &config,
                       std::unique_ptr<Merger> *result);
  ~Merger();

  const MergeConfig &config() const { return config_; }

  /// Launches on `stream` in the current CUDA context (as Decoder::decode).
  /// N may be 0 (every result is empty: out 0, lse -inf) and the batch 0
  /// (nothing is launched).
  Status merge(const MergeParams &params, void *stream) const;

private:
  Merger() = default;

  std::shared_ptr<const KernelLibrary> library_;
  const MergeKernelSpec *spec_ = nullptr;
  MergeConfig config_;
};

/// What an append kernel is specialised on: paged_attn.append's spec (the
/// caches of the decode it fills: AppendSpec::forDecode).
using AppendConfig = AppendSpec;

/// paged_attn.append: T new tokens' K and V rows written into the paged
/// caches at the slots slot_mapping gives (page = slot / page_size, offset
/// = slot % page_size), quantised where the caches are fp8. A slot that is
/// negative (padding) or past the pool (num_pages * page_size or more) is
/// skipped. The op's documentation gives the semantics, rounding included.
/// Empty tensors (T or the pool 0) may have null pointers.
struct AppendParams {
  Tensor k;           ///< [T, num_kv_heads, head_dim], the config's dtype
  Tensor v;           ///< the same shape and dtype as k
  Tensor slotMapping; ///< [T] i64
  /// Written. nhd: [pages, page, kv_heads, head_dim]; hnd: [pages,
  /// kv_heads, page, head_dim]; of AppendConfig::cacheDType() (k's, or
  /// kvQuant's fp8). k_cache and v_cache are distinct memory.
  Tensor kCache;
  Tensor vCache; ///< same shape and dtype as kCache, written
  /// The scales of a quantised config's caches (given exactly when it has
  /// one), f32 of AppendConfig::kvScaleShape, any strides, as a decode of
  /// these caches takes them: per tensor [] and per head [kv_heads], read
  /// (a code is x * (1 / scale) rounded to the format); per token the cache's
  /// shape without head_dim (nhd [pages, page, kv_heads], hnd [pages, kv_heads,
  /// page]), written: each new row's scale, max |x| / the format's largest
  /// finite value (at least 2^-126).
  Tensor kScale;
  Tensor vScale; ///< the same shape as kScale
};

/// An append kernel for one config, bound to the PTX that holds it.
/// Thread-safe; allocates nothing and does not synchronise, so a CUDA graph
/// can capture append().
class Appender {
public:
  /// Finds `config` in `library` (its "appends"), after the op's rules.
  static Status create(std::shared_ptr<const KernelLibrary> library,
                       const AppendConfig &config,
                       std::unique_ptr<Appender> *result);
  ~Appender();

  const AppendConfig &config() const { return config_; }

  /// Launches on `stream` in the current CUDA context (as Decoder::decode).
  /// T may be 0: nothing is launched.
  Status append(const AppendParams &params, void *stream) const;

private:
  Appender() = default;

  std::shared_ptr<const KernelLibrary> library_;
  const AppendKernelSpec *spec_ = nullptr;
  AppendConfig config_;
};

/// PTX plus its manifest, as written by paged-attn-compile.
class KernelLibrary {
public:
  /// Reads NAME.json and the PTX it names (relative to the manifest).
  static Status load(const std::string &manifestPath,
                     std::shared_ptr<KernelLibrary> *result);
  /// Loads every manifest (*.json) in `directory`.
  static Status loadDirectory(const std::string &directory,
                              std::shared_ptr<KernelLibrary> *result);
  ~KernelLibrary();

  /// Configs this library holds kernels for.
  std::vector<KernelConfig> configs() const;
  const KernelSpec *find(const KernelConfig &config) const;
  /// Merge configs this library holds kernels for.
  std::vector<MergeConfig> mergeConfigs() const;
  const MergeKernelSpec *findMerge(const MergeConfig &config) const;
  /// Append configs this library holds kernels for.
  std::vector<AppendConfig> appendConfigs() const;
  const AppendKernelSpec *findAppend(const AppendConfig &config) const;

private:
  friend class Decoder;
  friend class Merger;
  friend class Appender;
  KernelLibrary();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Whether a usable CUDA driver is present, and if not, why.
bool hasDriver(std::string *whyNot = nullptr);

/// Name and SM count of device `ordinal`.
Status getDeviceInfo(int ordinal, std::string *name, int *multiprocessors);

} // namespace paged_attn

#endif // PAGEDATTN_RUNTIME_RUNTIME_H
