//===- Harness.cpp - one fuzz input through parser, verifier, lowerings ---===//

#include "Harness.h"

#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttn.h"
#include "PagedAttn/InitAll.h"
#include "PagedAttn/Pipelines/Pipelines.h"
#include "PagedAttn/Spec/TargetInfo.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/OwningOpRef.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassInstrumentation.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;
using namespace paged_attn_fuzz;

const char *paged_attn_fuzz::stageName(Stage stage) {
  switch (stage) {
  case Stage::Idle:
    return "idle";
  case Stage::Parse:
    return "parse";
  case Stage::Verify:
    return "verify";
  case Stage::RoundTrip:
    return "round-trip";
  case Stage::CpuPipeline:
    return "paged-attn-to-cpu";
  case Stage::GpuPipeline:
    return "paged-attn-to-ptx{emit-binary=false}";
  case Stage::PtxPipeline:
    return "paged-attn-to-ptx";
  }
  return "?";
}

std::string paged_attn_fuzz::optionsOf(llvm::StringRef input) {
  llvm::StringRef first = input.split('\n').first.trim();
  if (!first.consume_front("// fuzz:"))
    return "";
  return first.trim().str();
}

namespace {

/// Error diagnostics of the current input, kept rather than printed.
struct DiagnosticLog {
  unsigned errors = 0;
  std::string last;
};

/// Reports a pass that fails without an error diagnostic, and one after
/// which the IR does not verify (the pass manager's verifier turns that into
/// a failure of the pass; a pass that fails leaves valid IR behind).
class PassChecker : public PassInstrumentation {
public:
  PassChecker(Stage stage, DiagnosticLog &log, std::vector<Finding> &findings)
      : stage(stage), log(log), findings(findings) {}

  void runBeforePass(Pass *, Operation *) override {
    errorsBefore.push_back(log.errors);
  }
  void runAfterPass(Pass *, Operation *) override { errorsBefore.pop_back(); }
  void runAfterPassFailed(Pass *pass, Operation *op) override {
    unsigned before = errorsBefore.back();
    errorsBefore.pop_back();
    // Adaptors (nested pipelines) fail when a pass in them does.
    if (pass->getArgument().empty() || reported)
      return;
    std::string name = pass->getArgument().str();
    if (failed(verify(op))) {
      findings.push_back(
          {stage, "invalid-ir", "after " + name + ": " + log.last});
      reported = true;
    } else if (log.errors == before) {
      findings.push_back({stage, "silent-failure",
                          name + " failed without an error diagnostic"});
      reported = true;
    }
  }

private:
  Stage stage;
  DiagnosticLog &log;
  std::vector<Finding> &findings;
  std::vector<unsigned> errorsBefore;
  bool reported = false;
};

std::string print(Operation *op, bool generic) {
  std::string text;
  llvm::raw_string_ostream os(text);
  OpPrintingFlags flags;
  if (generic)
    flags.printGenericOpForm();
  op->print(os, flags);
  return text;
}

OwningOpRef<ModuleOp> parse(MLIRContext *context, llvm::StringRef text,
                            bool verify) {
  ParserConfig config(context, verify);
  return parseSourceString<ModuleOp>(text, config, "fuzz-input");
}

/// A module must print as text that parses back, verifies and prints the
/// same, in both the custom and the generic form.
void checkRoundTrip(MLIRContext *context, ModuleOp module, DiagnosticLog &log,
                    std::vector<Finding> &findings) {
  auto fail = [&](const std::string &what) {
    findings.push_back({Stage::RoundTrip, "round-trip", what});
  };
  std::string custom = print(module, /*generic=*/false);
  OwningOpRef<ModuleOp> again = parse(context, custom, /*verify=*/true);
  if (!again)
    return fail("the printed module does not parse: " + log.last);
  if (print(*again, false) != custom)
    return fail("printing is not stable");
  if (!parse(context, print(module, /*generic=*/true), /*verify=*/true))
    fail("the generic form does not parse: " + log.last);
}

bool runPipeline(MLIRContext *context, ModuleOp module, Stage stage,
                 llvm::function_ref<void(OpPassManager &)> build,
                 DiagnosticLog &log, std::vector<Finding> &findings) {
  PassManager pm(context, ModuleOp::getOperationName());
  build(pm);
  pm.addInstrumentation(std::make_unique<PassChecker>(stage, log, findings));
  return succeeded(pm.run(module));
}

/// The shared memory a CTA may use on the chip `options` name (sm_90 by
/// default), from the chip table.
int64_t sharedMemoryLimit(llvm::StringRef options) {
  llvm::StringRef chip = "sm_90";
  for (llvm::StringRef option : llvm::split(options, ' '))
    if (option.consume_front("chip="))
      chip = option;
  const ::paged_attn::TargetInfo *target = ::paged_attn::lookupTarget(chip);
  return target ? target->sharedMemoryPerBlockOptIn : 0;
}

/// A launch the lowering emits with constant sizes that a GPU refuses: the
/// verifier accepted an op that cannot run.
void checkLaunches(MLIRContext *context, ModuleOp module, Stage stage,
                   int64_t sharedMemoryLimit, std::vector<Finding> &findings) {
  // Static sizes reach the launch through memref.dim and arithmetic.
  PassManager pm(context, ModuleOp::getOperationName());
  pm.addPass(createCanonicalizerPass());
  if (failed(pm.run(module)))
    return;
  auto constant = [](Value v) -> std::optional<int64_t> {
    APInt c;
    if (v && matchPattern(v, m_ConstantInt(&c)))
      return c.getSExtValue();
    return std::nullopt;
  };
  module.walk([&](gpu::LaunchFuncOp launch) {
    std::string kernel = launch.getKernelName().str();
    auto fail = [&](const std::string &what) {
      findings.push_back({stage, "invalid-launch", kernel + ": " + what});
      return WalkResult::interrupt();
    };
    gpu::KernelDim3 grid = launch.getGridSizeOperandValues();
    gpu::KernelDim3 block = launch.getBlockSizeOperandValues();
    const std::pair<Value, int64_t> gridDims[] = {
        {grid.x, INT32_MAX}, {grid.y, 65535}, {grid.z, 65535}};
    const char *names = "xyz";
    for (int i = 0; i < 3; ++i)
      if (auto c = constant(gridDims[i].first);
          c && (*c < 1 || *c > gridDims[i].second))
        return fail(std::string("grid ") + names[i] + " is " +
                    std::to_string(*c));
    int64_t threads = 1;
    for (Value v : {block.x, block.y, block.z})
      if (auto c = constant(v))
        threads = *c < 1 ? -1 : threads * std::min<int64_t>(*c, 1 << 20);
    if (threads < 1 || threads > 1024)
      return fail("the block has " + std::to_string(threads) + " threads");
    if (auto c = constant(launch.getDynamicSharedMemorySize());
        c && sharedMemoryLimit > 0 && *c > sharedMemoryLimit)
      return fail(std::to_string(*c) + " bytes of dynamic shared memory, " +
                  "the chip allows " + std::to_string(sharedMemoryLimit));
    return WalkResult::advance();
  });
}

} // namespace

Harness::Harness() : registry(std::make_unique<DialectRegistry>()) {
  mlir::paged_attn::registerAllDialects(*registry);
  // The GPU pipeline is parsed from its textual form, as users spell it.
  static bool passesRegistered = (mlir::paged_attn::registerAllPasses(), true);
  (void)passesRegistered;
  resetContextIfLarge();
}

Harness::~Harness() = default;

/// Types and attributes of every input stay uniqued in the context: start a
/// fresh one now and then.
void Harness::resetContextIfLarge() {
  if (context && inputsOnContext < 256)
    return;
  context = std::make_unique<MLIRContext>(*registry,
                                          MLIRContext::Threading::DISABLED);
  inputsOnContext = 0;
}

Outcome Harness::run(llvm::StringRef input, llvm::StringRef options,
                     bool runPtx) {
  resetContextIfLarge();
  ++inputsOnContext;
  Outcome outcome;
  DiagnosticLog log;
  ScopedDiagnosticHandler handler(context.get(), [&](Diagnostic &d) {
    if (d.getSeverity() == DiagnosticSeverity::Error) {
      ++log.errors;
      log.last = d.str();
    }
    return success();
  });
  auto enter = [&](Stage stage) {
    if (onStage)
      onStage(stage);
  };

  enter(Stage::Parse);
  OwningOpRef<ModuleOp> module = parse(context.get(), input, /*verify=*/false);
  outcome.parsed = bool(module);
  if (module) {
    enter(Stage::Verify);
    outcome.verified = succeeded(verify(*module));
  }
  if (!outcome.verified) {
    outcome.lastError = log.last;
    enter(Stage::Idle);
    return outcome;
  }
  module->walk([&](mlir::paged_attn::DecodeOp) { outcome.hasDecode = true; });

  enter(Stage::RoundTrip);
  checkRoundTrip(context.get(), *module, log, outcome.findings);

  enter(Stage::CpuPipeline);
  OwningOpRef<ModuleOp> cpu = module->clone();
  outcome.cpuLowered = runPipeline(
      context.get(), *cpu, Stage::CpuPipeline,
      [](OpPassManager &pm) {
        mlir::paged_attn::buildPagedAttnToCPUPipeline(pm);
      },
      log, outcome.findings);

  // The pipeline as a user spells it: its own options and the kernel
  // options it forwards to the selection pass.
  std::string pipelineText = "builtin.module(paged-attn-to-ptx{" +
                             options.str() + " emit-binary=" +
                             (runPtx ? "true" : "false") + "})";
  std::string parseError;
  llvm::raw_string_ostream parseErrors(parseError);
  FailureOr<OpPassManager> parsed =
      parsePassPipeline(pipelineText, parseErrors);
  if (failed(parsed)) {
    outcome.optionsRejected = true;
    outcome.lastError = parseError;
    enter(Stage::Idle);
    return outcome;
  }
  outcome.ranPtx = runPtx;
  Stage gpuStage = runPtx ? Stage::PtxPipeline : Stage::GpuPipeline;
  enter(gpuStage);
  OwningOpRef<ModuleOp> gpu = module->clone();
  bool lowered = runPipeline(
      context.get(), *gpu, gpuStage,
      [&](OpPassManager &pm) { pm = *parsed; },
      log, outcome.findings);
  (runPtx ? outcome.ptxLowered : outcome.gpuLowered) = lowered;
  if (lowered)
    checkLaunches(context.get(), *gpu, gpuStage, sharedMemoryLimit(options),
                  outcome.findings);
  outcome.lastError = log.last;
  enter(Stage::Idle);
  return outcome;
}
