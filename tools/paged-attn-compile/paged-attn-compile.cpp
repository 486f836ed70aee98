//===- paged-attn-compile.cpp - decode kernels to PTX + manifest ----------===//
//
// paged-attn-compile [input.mlir] [--num-heads=N ...] -o NAME
// writes NAME.ptx and NAME.json. Configs come from the decode ops of the
// input file, or from the flags when no input is given. Errors print one
// line and exit non-zero; no output file is left behind.
//
//===----------------------------------------------------------------------===//

#include "PagedAttn/InitAll.h"
#include "PagedAttn/Target/KernelCompiler.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <optional>

using namespace mlir;
using namespace mlir::paged_attn;
namespace cl = llvm::cl;

static cl::OptionCategory category("paged-attn-compile options");
static cl::opt<std::string> inputFile(cl::Positional, cl::init(""),
                                      cl::desc("[input.mlir]"),
                                      cl::cat(category));
static cl::opt<std::string>
    outputName("o", cl::desc("Output base name: writes NAME.ptx, NAME.json"),
               cl::value_desc("NAME"), cl::cat(category));
static cl::opt<int64_t> numHeads("num-heads", cl::init(32),
                                 cl::desc("Query heads"), cl::cat(category));
static cl::opt<int64_t> numKVHeads("num-kv-heads", cl::init(8),
                                   cl::desc("KV heads"), cl::cat(category));
static cl::opt<int64_t> headDim("head-dim", cl::init(128),
                                cl::desc("Head dimension"), cl::cat(category));
static cl::opt<int64_t> pageSize("page-size", cl::init(16),
                                 cl::desc("Tokens per page"),
                                 cl::cat(category));
static cl::opt<std::string> dtype("dtype", cl::init("bf16"),
                                  cl::desc("f16, bf16 or f32"),
                                  cl::cat(category));
static cl::opt<std::string> layout("layout", cl::init("nhd"),
                                   cl::desc("KV cache layout: nhd or hnd"),
                                   cl::cat(category));
static cl::opt<std::string> chip("chip", cl::init("sm_90"),
                                 cl::desc("sm_80, sm_86, sm_89, sm_90, sm_90a"),
                                 cl::cat(category));
static cl::opt<std::string>
    features("features", cl::init(""),
             cl::desc("PTX features (default: the lowest the chip needs)"),
             cl::cat(category));
static cl::opt<int> optLevel("opt-level", cl::init(3),
                             cl::desc("LLVM optimization level"),
                             cl::cat(category));
static cl::opt<int64_t> numWarps("num-warps", cl::init(4),
                                 cl::desc("Warps per decode CTA"),
                                 cl::cat(category));
static cl::opt<int64_t> tokensPerLaneGroup(
    "tokens-per-lane-group", cl::init(0),
    cl::desc("Tokens a lane group loads per loop iteration (0: auto)"),
    cl::cat(category));
static cl::opt<int64_t>
    maxHeadsPerCTA("max-heads-per-cta", cl::init(0),
                   cl::desc("Most query heads one CTA serves (0: auto)"),
                   cl::cat(category));
static cl::opt<int64_t> minCTAsPerSM(
    "min-ctas-per-sm", cl::init(0),
    cl::desc("CTAs per SM ptxas must fit the decode kernel to (0: no limit)"),
    cl::cat(category));
static cl::opt<std::string> prefetchPageTable(
    "prefetch-page-table", cl::init("auto"),
    cl::desc("Load the next iteration's page-table entries early: auto, on "
             "or off"),
    cl::cat(category));
static cl::opt<std::string> tensorCores(
    "tensor-cores", cl::init("auto"),
    cl::desc("Decode with mma.sync over the query group: auto, on or off"),
    cl::cat(category));
static cl::opt<int64_t>
    kvStages("kv-stages", cl::init(3),
             cl::desc("Shared-memory K/V tiles per warp of the tensor-core "
                      "kernel (2 to 4)"),
             cl::cat(category));
static cl::opt<int64_t>
    l2Prefetch("l2-prefetch", cl::init(128),
               cl::desc("Bytes the tensor-core kernel's cp.async copies ask "
                        "L2 to fetch around each request: 0, 64, 128 or 256"),
               cl::cat(category));
static cl::opt<bool> printTime("time", cl::init(false),
                               cl::desc("Print the compile time"),
                               cl::cat(category));

static int fail(const llvm::Twine &message) {
  llvm::errs() << "paged-attn-compile: error: " << message << "\n";
  return 1;
}

static std::optional<Type> parseDType(MLIRContext &ctx, StringRef name) {
  if (name == "f16")
    return Float16Type::get(&ctx);
  if (name == "bf16")
    return BFloat16Type::get(&ctx);
  if (name == "f32")
    return Float32Type::get(&ctx);
  return std::nullopt;
}

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(argc, argv,
                              "PagedAttn decode kernels to PTX and manifest\n");
  if (outputName.empty())
    return fail("no output name: pass -o NAME");

  DialectRegistry registry;
  registerAllDialects(registry);
  MLIRContext ctx(registry);
  ctx.loadAllAvailableDialects();

  // Diagnostics become one line each: the first error, with its location
  // when it has one.
  std::string firstError;
  ScopedDiagnosticHandler handler(&ctx, [&](Diagnostic &diag) {
    if (diag.getSeverity() == DiagnosticSeverity::Error && firstError.empty()) {
      llvm::raw_string_ostream os(firstError);
      if (auto fileLoc = dyn_cast<FileLineColLoc>(diag.getLocation()))
        os << fileLoc.getFilename().getValue() << ":" << fileLoc.getLine()
           << ":" << fileLoc.getColumn() << ": ";
      os << diag.str();
    }
    return success();
  });

  DecodeKernelOptionStrings strings;
  strings.numWarps = numWarps;
  strings.tokensPerLaneGroup = tokensPerLaneGroup;
  strings.maxHeadsPerCTA = maxHeadsPerCTA;
  strings.prefetchPageTable = prefetchPageTable;
  strings.minCTAsPerSM = minCTAsPerSM;
  strings.tensorCores = tensorCores;
  strings.kvStages = kvStages;
  strings.l2PrefetchBytes = l2Prefetch;
  auto parsed = parseDecodeKernelOptions(strings, "--");
  if (auto *error = std::get_if<std::string>(&parsed))
    return fail(*error);
  const DecodeKernelOptions &kernelOptions =
      std::get<DecodeKernelOptions>(parsed);

  SmallVector<DecodeKernelConfig> configs;
  if (!inputFile.empty()) {
    llvm::SourceMgr sourceMgr;
    std::string errorMessage;
    OwningOpRef<ModuleOp> input =
        parseSourceFile<ModuleOp>(inputFile, sourceMgr, ParserConfig(&ctx));
    if (!input)
      return fail(firstError.empty() ? "cannot read '" + inputFile + "'"
                                     : llvm::Twine(firstError));
    configs = collectDecodeConfigs(*input, kernelOptions);
    if (configs.empty())
      return fail("'" + inputFile + "' holds no paged_attn.decode op");
  } else {
    std::optional<Type> elemType = parseDType(ctx, dtype);
    if (!elemType)
      return fail("--dtype must be f16, bf16 or f32, got '" + dtype + "'");
    std::optional<KVLayout> kvLayout = symbolizeKVLayout(layout);
    if (!kvLayout)
      return fail("--layout must be nhd or hnd, got '" + layout + "'");
    DecodeKernelConfig config;
    config.numHeads = numHeads;
    config.numKVHeads = numKVHeads;
    config.headDim = headDim;
    config.pageSize = pageSize;
    config.elementType = *elemType;
    config.layout = *kvLayout;
    config.setOptions(kernelOptions);
    configs.push_back(config);
  }

  KernelCompileOptions options;
  options.chip = chip;
  options.features = features;
  options.optLevel = optLevel;
  std::string ptxPath = outputName + ".ptx";
  std::string jsonPath = outputName + ".json";
  auto start = std::chrono::steady_clock::now();
  FailureOr<CompiledKernels> compiled = compileDecodeKernels(
      &ctx, configs, options, llvm::sys::path::filename(ptxPath));
  if (failed(compiled))
    return fail(firstError.empty() ? "compilation failed"
                                   : llvm::Twine(firstError));
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();

  // Both files are written to temporaries and only kept when both succeed.
  std::error_code ec;
  llvm::ToolOutputFile ptxFile(ptxPath, ec, llvm::sys::fs::OF_None);
  if (ec)
    return fail("cannot write '" + ptxPath + "': " + ec.message());
  llvm::ToolOutputFile jsonFile(jsonPath, ec, llvm::sys::fs::OF_Text);
  if (ec)
    return fail("cannot write '" + jsonPath + "': " + ec.message());
  ptxFile.os() << compiled->ptx;
  jsonFile.os() << llvm::formatv("{0:2}", compiled->manifest) << "\n";
  ptxFile.os().flush();
  jsonFile.os().flush();
  if (ptxFile.os().has_error() || jsonFile.os().has_error())
    return fail("write error on '" + outputName + ".*'");
  ptxFile.keep();
  jsonFile.keep();
  if (printTime)
    llvm::outs() << llvm::formatv("compiled {0} config(s) in {1:F3} s\n",
                                  configs.size(), seconds);
  return 0;
}
