//===- Harness.h - one input through all stages -----------------*- C++ -*-===//
//
// Parses an input, verifies it, prints and re-parses it, and lowers what
// verifies with `paged-attn-to-cpu` and with the GPU pipeline (to NVVM; to
// PTX when asked). A rejection with an error diagnostic is a good outcome;
// what the harness reports as a finding is a pass that breaks the IR, a
// pass that fails without saying why, a module that does not survive its
// own printing, and a launch with constant sizes no GPU accepts (the
// verifier let through an op that cannot run). Crashes and hangs are the
// caller's (Supervisor.h).
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_TEST_FUZZ_HARNESS_H
#define PAGEDATTN_TEST_FUZZ_HARNESS_H

#include "llvm/ADT/StringRef.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace mlir {
class MLIRContext;
class DialectRegistry;
} // namespace mlir

namespace paged_attn_fuzz {

/// Where an input is; a crash report names the stage it died in.
enum class Stage {
  Idle,
  Parse,
  Verify,
  RoundTrip,
  CpuPipeline,
  GpuPipeline,
  PtxPipeline,
};
const char *stageName(Stage stage);

/// A bug found without a crash.
struct Finding {
  Stage stage;
  /// invalid-ir, silent-failure, round-trip or invalid-launch.
  std::string kind;
  std::string message;
};

struct Outcome {
  bool parsed = false, verified = false, hasDecode = false;
  bool optionsRejected = false;
  bool cpuLowered = false, gpuLowered = false, ptxLowered = false;
  bool ranPtx = false;
  std::vector<Finding> findings;
  /// The last error diagnostic, for --verbose.
  std::string lastError;
};

class Harness {
public:
  Harness();
  ~Harness();

  /// Runs `input`. `options` is a paged-attn-to-ptx option string for the
  /// GPU pipelines; `runPtx` asks for the whole pipeline down to PTX.
  Outcome run(llvm::StringRef input, llvm::StringRef options, bool runPtx);

  /// Called as each stage starts.
  std::function<void(Stage)> onStage;

private:
  void resetContextIfLarge();

  std::unique_ptr<mlir::DialectRegistry> registry;
  std::unique_ptr<mlir::MLIRContext> context;
  unsigned inputsOnContext = 0;
};

/// The options on an input's `// fuzz: OPTIONS` first line ("" if none).
std::string optionsOf(llvm::StringRef input);

} // namespace paged_attn_fuzz

#endif // PAGEDATTN_TEST_FUZZ_HARNESS_H
