//===- paged-attn-fuzz.cpp - fuzz the parser, verifier and lowerings ------===//
//
// Runs the inputs given on the command line (files, or directories of
// *.mlir files) and then generated ones through the parser, the verifier
// and both lowerings, surviving crashes and hangs to report them all:
//
//   paged-attn-fuzz test/fuzz/corpus --seed=1 --max-time=60 \
//       --known-failures=test/fuzz/known-failures.txt --artifacts=out
//   paged-attn-fuzz --no-fork out/crash-0123456789abcdef.mlir
//   paged-attn-fuzz --print-input=1234 --seed=1
//
//===----------------------------------------------------------------------===//

#include "Generator.h"
#include "Supervisor.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

using namespace llvm;

static cl::OptionCategory category("paged-attn-fuzz options");
static cl::list<std::string> inputs(cl::Positional,
                                    cl::desc("[inputs or directories]"),
                                    cl::cat(category));
static cl::opt<uint64_t> seed("seed", cl::init(1),
                              cl::desc("Seed of the generated inputs"),
                              cl::cat(category));
static cl::opt<uint64_t>
    generate("generate", cl::init(0),
             cl::desc("Generated inputs to run after the given ones (0 with "
                      "--max-time: until the time is up)"),
             cl::cat(category));
static cl::opt<double> maxTime("max-time", cl::init(0),
                               cl::desc("Stop after this many seconds"),
                               cl::cat(category));
static cl::opt<double> timeout("timeout", cl::init(10),
                               cl::desc("Seconds one input may take"),
                               cl::cat(category));
static cl::opt<uint64_t>
    rssLimit("rss-limit-mb", cl::init(4096),
             cl::desc("Resident memory one input may grow to (0: no limit)"),
             cl::cat(category));
static cl::opt<double>
    ptxFraction("ptx-fraction", cl::init(0.05),
                cl::desc("Share of inputs lowered all the way to PTX"),
                cl::cat(category));
static cl::opt<std::string>
    artifacts("artifacts", cl::init("."),
              cl::desc("Directory for failing inputs and their reports"),
              cl::cat(category));
static cl::opt<std::string>
    knownFailures("known-failures", cl::init(""),
                  cl::desc("File of known failures (KnownFailures.h)"),
                  cl::cat(category));
static cl::opt<bool>
    runKnown("run-known", cl::init(false),
             cl::desc("Also run the inputs 'input:' entries skip"),
             cl::cat(category));
static cl::opt<bool>
    noFork("no-fork", cl::init(false),
           cl::desc("Run in this process: the first crash ends the run"),
           cl::cat(category));
static cl::opt<bool> verbose("verbose", cl::init(false),
                             cl::desc("Print each input's outcome"),
                             cl::cat(category));
static cl::opt<int64_t>
    printInput("print-input", cl::init(-1),
               cl::desc("Print generated input N of --seed and exit"),
               cl::cat(category));

/// Appends `path` (a file, or a directory's *.mlir files in name order).
static bool addInputs(const std::string &path,
                      paged_attn_fuzz::FuzzOptions &options) {
  std::vector<std::string> files;
  if (sys::fs::is_directory(path)) {
    std::error_code ec;
    for (sys::fs::directory_iterator it(path, ec), end; it != end && !ec;
         it.increment(ec))
      if (StringRef(it->path()).ends_with(".mlir"))
        files.push_back(it->path());
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(path);
  }
  for (const std::string &file : files) {
    auto buffer = MemoryBuffer::getFile(file);
    if (!buffer) {
      std::fprintf(stderr, "paged-attn-fuzz: cannot read %s\n", file.c_str());
      return false;
    }
    options.corpus.push_back((*buffer)->getBuffer().str());
    options.corpusNames.push_back(file);
  }
  return true;
}

int main(int argc, char **argv) {
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(
      argc, argv, "Fuzzes the paged_attn parser, verifier and lowerings\n");
  // Crash reports name functions when LLVM finds its symbolizer.
  std::string symbolizer =
      std::string(LLVM_TOOLS_BINARY_DIR) + "/llvm-symbolizer";
  if (sys::fs::can_execute(symbolizer))
    setenv("LLVM_SYMBOLIZER_PATH", symbolizer.c_str(), /*overwrite=*/0);
  paged_attn_fuzz::FuzzOptions options;
  for (const std::string &path : inputs)
    if (!addInputs(path, options))
      return 2;
  if (printInput >= 0) {
    std::fputs(paged_attn_fuzz::generateInput(seed, uint64_t(printInput),
                                              options.corpus)
                   .c_str(),
               stdout);
    return 0;
  }
  options.seed = seed;
  options.generate = generate;
  options.maxSeconds = maxTime;
  options.timeoutSeconds = timeout;
  options.rssLimitMB = rssLimit;
  options.ptxFraction = ptxFraction;
  options.artifactDir = artifacts;
  options.knownFailuresPath = knownFailures;
  options.runKnown = runKnown;
  options.fork = !noFork;
  options.verbose = verbose;
  return paged_attn_fuzz::runFuzzer(options);
}
