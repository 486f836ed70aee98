//===- Supervisor.h - run fuzz inputs, survive their crashes ----*- C++ -*-===//
//
// Inputs run in process, in a worker: a watchdog thread aborts the worker
// when an input runs past its time or memory limit, and the crash handler
// leaves the input behind. The supervisor (the parent process) records the
// failure, checks it against the known failures, and starts a new worker at
// the next input, so that one run reports every failure it meets. Without
// fork the first crash ends the run (and leaves the input in a file).
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_TEST_FUZZ_SUPERVISOR_H
#define PAGEDATTN_TEST_FUZZ_SUPERVISOR_H

#include <cstdint>
#include <string>
#include <vector>

namespace paged_attn_fuzz {

struct FuzzOptions {
  /// Inputs run first, in order, and the seeds for mutation.
  std::vector<std::string> corpus, corpusNames;
  uint64_t seed = 1;
  /// Generated inputs after the corpus (the run may stop earlier).
  uint64_t generate = 0;
  double maxSeconds = 0;      ///< 0: no limit
  double timeoutSeconds = 10; ///< per input
  uint64_t rssLimitMB = 4096;
  /// Share of verified inputs lowered all the way to PTX.
  double ptxFraction = 0.05;
  std::string artifactDir = ".";
  std::string knownFailuresPath;
  /// Run inputs that `input:` entries would skip.
  bool runKnown = false;
  bool fork = true;
  /// Print each input's outcome.
  bool verbose = false;
};

/// Runs the inputs and prints a summary; returns 0 when every failure was a
/// known one.
int runFuzzer(const FuzzOptions &options);

} // namespace paged_attn_fuzz

#endif // PAGEDATTN_TEST_FUZZ_SUPERVISOR_H
