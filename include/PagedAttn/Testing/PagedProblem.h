//===- PagedProblem.h - random paged decode inputs on the GPU ---*- C++ -*-===//
//
// Builds random decode inputs (shuffled block tables, ragged lengths,
// partial last pages), uploads them, runs a Decoder and compares with the
// float64 reference. Shared by paged-attn-run and the GPU tests.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_TESTING_PAGEDPROBLEM_H
#define PAGEDATTN_TESTING_PAGEDPROBLEM_H

#include "PagedAttn/Runtime/Runtime.h"
#include "PagedAttn/Testing/Reference.h"

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace paged_attn {
namespace testing {

/// Device memory owned by the caller of the driver loaded by the runtime.
class DeviceBuffer {
public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;
  DeviceBuffer(DeviceBuffer &&other) noexcept;
  DeviceBuffer &operator=(DeviceBuffer &&other) noexcept;

  Status allocate(size_t bytes);
  Status upload(const void *data, size_t bytes, size_t offset = 0);
  Status download(void *data, size_t bytes, size_t offset = 0) const;
  Status fill(uint8_t byte);
  void *data() const { return reinterpret_cast<void *>(ptr_); }
  size_t size() const { return bytes_; }

private:
  unsigned long long ptr_ = 0;
  size_t bytes_ = 0;
};

/// Makes the device 0 primary context current (for tools and tests that
/// allocate before the first decode).
Status initDevice();

/// Driver helpers for tools and tests.
Status synchronize();
Status createStream(void **stream);
Status destroyStream(void *stream);
Status synchronizeStream(void *stream);
Status beginCapture(void *stream);
/// Ends the capture on `stream` and replays the graph `replays` times,
/// each to completion; `afterReplay(i)`, when given, runs after replay i
/// (to check its result, or change the graph's inputs for the next one)
/// and stops the replays with its error.
Status
endCaptureAndLaunch(void *stream, int replays,
                    const std::function<Status(int)> &afterReplay = nullptr);

/// CUDA events for timing.
class EventTimer {
public:
  EventTimer();
  ~EventTimer();
  Status record(void *stream, bool end);
  /// Milliseconds between the start and end records (synchronises).
  Status elapsed(float *ms);

private:
  void *start_ = nullptr, *end_ = nullptr; // CUevent
};

struct ProblemShape {
  KernelConfig config;
  int64_t batch = 1;
  /// Sequence lengths; empty means draw `batch` lengths uniformly from
  /// [minSeqLen, maxSeqLen].
  std::vector<int32_t> seqLens;
  int64_t minSeqLen = 1, maxSeqLen = 1024;
  /// Spare pages added to the pool beyond those the sequences use.
  int64_t sparePages = 3;
  /// Pages shared between sequences (prefix sharing): every sequence's
  /// first page is the same physical page when set.
  bool sharePrefixPage = false;
  uint64_t seed = 1;
  /// The values of the config's variants: the window's length and the
  /// cap (the slopes and sinks are drawn: RandomProblemOptions).
  int64_t window = 0;
  double softCap = 0;
};

/// One problem on the host (float64 copies for the reference) and device.
class Problem {
public:
  /// Generates and uploads. Elements are uniform in [-1, 1). A quantised
  /// config's caches are uploaded as fp8 codes with their scales
  /// (quantizeCaches), and the reference reads the values the codes stand
  /// for.
  Status create(const ProblemShape &shape);

  const ReferenceProblem &reference() const { return ref_; }
  const ProblemShape &shape() const { return shape_; }
  /// Decode parameters pointing at the device buffers (out, workspace too).
  DecodeParams params() const;
  /// Bytes the kernel must move: K and V of the tokens held (in the
  /// caches' dtype) and their scales, q, out and the page-table entries
  /// used.
  double bytesMoved() const;
  int64_t maxSeqLen() const;

  /// Allocates a workspace large enough for `numSplits` (or the automatic
  /// choice when 0).
  Status prepareWorkspace(const Decoder &decoder, int numSplits);
  /// Overwrites out with NaNs so a kernel that skips a row is caught.
  Status poisonOutput();
  /// Downloads out and widens it to double.
  Status readOutput(std::vector<double> *out) const;
  /// Downloads the log-sum-exp (configs with one).
  Status readLse(std::vector<double> *lse) const;
  DeviceBuffer &blockTableBuffer() { return blockTable_; }
  DeviceBuffer &seqLensBuffer() { return seqLens_; }

private:
  ProblemShape shape_;
  ReferenceProblem ref_;
  DeviceBuffer q_, k_, v_, blockTable_, seqLens_, out_, workspace_;
  DeviceBuffer alibiSlopes_, sinks_, lse_, treeMask_;
  DeviceBuffer kScale_, vScale_; ///< a quantised config's scales (f32)
};

/// The error limit (relative L2) tests use for a dtype.
double toleranceFor(DType dtype);

/// The error limit (absolute) of the log-sum-exp.
constexpr double kLseTolerance = 2e-3;

struct CheckResult {
  double relError = 0, maxAbsError = 0;
  /// max |lse - reference| where both are finite; infinity where one is
  /// -inf and the other not (0 without a log-sum-exp).
  double lseError = 0;
  bool passed = false;
};

/// Runs decode once (out poisoned first) and compares with the reference.
Status runAndCheck(const Decoder &decoder, Problem &problem,
                   const DecodeParams &params, void *stream,
                   CheckResult *result);

} // namespace testing
} // namespace paged_attn

#endif // PAGEDATTN_TESTING_PAGEDPROBLEM_H
