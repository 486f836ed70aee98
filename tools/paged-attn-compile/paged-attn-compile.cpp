//===- paged-attn-compile.cpp - decode kernels to PTX + manifest ----------===//
//
// paged-attn-compile [input.mlir] [--num-heads=N ...] -o NAME
// writes NAME.ptx and NAME.json. Configs come from the decode ops of the
// input file, or from the flags when no input is given. Errors print one
// line and exit non-zero; no output file is left behind.
//
//===----------------------------------------------------------------------===//

#include "PagedAttn/Conversion/PagedAttnToGPU/SelectDecodeKernel.h"
#include "PagedAttn/InitAll.h"
#include "PagedAttn/Pipelines/Pipelines.h"
#include "PagedAttn/Spec/TargetInfo.h"
#include "PagedAttn/Target/KernelCompiler.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "llvm/ADT/StringMap.h"
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
using namespace llvm;
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
static cl::opt<int64_t>
    queryLen("query-len", cl::init(1),
             cl::desc("New query tokens per sequence (L, 1 to 16): a "
                      "multi-token decode of q [batch, L, heads, head_dim]"),
             cl::cat(category));
static cl::opt<std::string> dtype("dtype", cl::init("bf16"),
                                  cl::desc("f16, bf16 or f32"),
                                  cl::cat(category));
static cl::opt<std::string> layout("layout", cl::init("nhd"),
                                   cl::desc("KV cache layout: nhd or hnd"),
                                   cl::cat(category));
static cl::opt<std::string> chip("chip", cl::init("sm_90"),
                                 cl::desc(getChipOptionHelp()),
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
static cl::opt<std::string>
    opName("op", cl::init("decode"),
           cl::desc("The op of the flag-given config: decode, merge (the "
                    "paged_attn.merge kernel of --num-heads, --head-dim, "
                    "--dtype) or append (the paged_attn.append kernel of "
                    "--num-kv-heads, --head-dim, --page-size, --dtype, "
                    "--layout, --kv-dtype, --kv-scale)"),
           cl::cat(category));
static cl::list<std::string>
    variants("variants", cl::CommaSeparated,
             cl::desc("Attention variants of the flag-given config: window, "
                      "soft_cap, alibi_slopes, sinks, lse (comma-separated); "
                      "a merge takes sinks and lse"),
             cl::cat(category));
static cl::opt<std::string>
    kvDType("kv-dtype", cl::init(""),
            cl::desc("Quantised KV caches of the flag-given decode: f8e4m3fn "
                     "or f8e5m2 (with --kv-scale; q f16 or bf16)"),
            cl::cat(category));
static cl::opt<std::string>
    kvScale("kv-scale", cl::init(""),
            cl::desc("Granularity of the quantised caches' f32 scales: "
                     "tensor, head or token (with --kv-dtype)"),
            cl::cat(category));
static cl::opt<bool> printTime("time", cl::init(false),
                               cl::desc("Print the compile time"),
                               cl::cat(category));

static int fail(const llvm::Twine &message) {
  llvm::errs() << "paged-attn-compile: error: " << message << "\n";
  return 1;
}

/// Moves the arguments this tool does not declare out of `args`: they are
/// options of paged-attn-select-decode-kernel (tensor-cores, kv-stages,
/// ...), returned as its option text ("kv-stages=2"). `--name value` is
/// taken as one option where `name=value` is one.
static std::string takeKernelOptions(SmallVectorImpl<const char *> &args) {
  auto &declared = cl::getRegisteredOptions();
  std::string text;
  SmallVector<const char *> kept = {args.front()};
  for (size_t i = 1; i < args.size(); ++i) {
    StringRef arg = args[i];
    StringRef name = arg.drop_while([](char c) { return c == '-'; });
    if (!arg.starts_with("-") || name.empty() ||
        declared.count(name.split('=').first)) {
      kept.push_back(args[i]);
      continue;
    }
    std::string option = name.str();
    if (!name.contains('=') && i + 1 < args.size() &&
        !StringRef(args[i + 1]).starts_with("-")) {
      std::string withValue = option + "=" + args[i + 1];
      if (std::holds_alternative<DecodeKernelOptions>(
              parseDecodeKernelOptionText(withValue))) {
        option = withValue;
        ++i;
      }
    }
    text += (text.empty() ? "" : " ") + option;
  }
  args.assign(kept.begin(), kept.end());
  return text;
}

/// `contents` in a new temporary file next to `path`, for keep(path).
static Expected<sys::fs::TempFile> writeTemporary(StringRef path,
                                                  StringRef contents) {
  Expected<sys::fs::TempFile> file =
      sys::fs::TempFile::create(path + ".tmp-%%%%%%");
  if (!file)
    return createStringError("cannot write '" + path +
                             "': " + toString(file.takeError()));
  raw_fd_ostream os(file->FD, /*shouldClose=*/false);
  os << contents;
  os.flush();
  if (std::error_code ec = os.error()) {
    // Cleared, or the stream's destructor reports it as a fatal error.
    os.clear_error();
    consumeError(file->discard());
    return createStringError("cannot write '" + path + "': " + ec.message());
  }
  return file;
}

/// Whether NAME (of NAME.ptx and NAME.json) names a file.
static bool isFileName(StringRef name) {
  StringRef last = sys::path::filename(name);
  return !name.empty() && !name.ends_with("/") && last != "." && last != ".." &&
         !sys::fs::is_directory(name);
}

/// The decodes, merges and appends of --input's ops; failure (reported) when it
/// cannot be read or holds none.
static FailureOr<KernelSet> kernelSetFromFile(MLIRContext &ctx,
                                              const std::string &firstError,
                                              int64_t warps) {
  if (!variants.empty() || opName != "decode" || !kvDType.empty() ||
      !kvScale.empty()) {
    fail("--op, --variants, --kv-dtype and --kv-scale describe the config "
         "the flags give; the ops of '" +
         inputFile + "' say their own");
    return failure();
  }
  llvm::SourceMgr sourceMgr;
  OwningOpRef<ModuleOp> input =
      parseSourceFile<ModuleOp>(inputFile, sourceMgr, ParserConfig(&ctx));
  if (!input) {
    fail(firstError.empty() ? "cannot read '" + inputFile + "'"
                            : llvm::Twine(firstError));
    return failure();
  }
  KernelSet set = collectKernelSet(*input);
  if (set.empty()) {
    fail("'" + inputFile + "' holds no paged_attn.decode, merge or append op");
    return failure();
  }
  for (DecodeSpec &spec : set.decodes)
    spec.numWarps = warps;
  return set;
}

/// --kv-dtype and --kv-scale into `quant`: both (a quantised cache) or
/// neither (none).
static LogicalResult
kvQuantFromFlags(std::optional<::paged_attn::KVQuant> *quant) {
  quant->reset();
  if (kvDType.empty() && kvScale.empty())
    return success();
  if (kvDType.empty() || kvScale.empty()) {
    fail("--kv-dtype and --kv-scale go together: a quantised cache needs "
         "both, got only " +
         Twine(kvDType.empty() ? "--kv-scale" : "--kv-dtype"));
    return failure();
  }
  std::optional<::paged_attn::DType> cacheType =
      ::paged_attn::parseDType(kvDType);
  if (!cacheType || !::paged_attn::isQuantizedCacheDType(*cacheType)) {
    fail("--kv-dtype must be f8e4m3fn or f8e5m2, got '" + kvDType + "'");
    return failure();
  }
  std::optional<::paged_attn::KVScaleKind> kind =
      ::paged_attn::parseKVScaleKind(kvScale);
  if (!kind) {
    fail("--kv-scale must be tensor, head or token, got '" + kvScale + "'");
    return failure();
  }
  *quant = ::paged_attn::KVQuant{*cacheType, *kind};
  return success();
}

/// The one append the flags describe (its caches' sizes, dtypes, layout).
static FailureOr<KernelSet>
appendFromFlags(::paged_attn::DType dataType,
                std::optional<::paged_attn::KVQuant> kvQuant) {
  if (!variants.empty()) {
    fail("--variants: an append has none");
    return failure();
  }
  std::optional<::paged_attn::Layout> kvLayout =
      ::paged_attn::parseLayout(layout);
  if (!kvLayout) {
    fail("--layout must be nhd or hnd, got '" + layout + "'");
    return failure();
  }
  ::paged_attn::AppendSpec spec;
  spec.numKVHeads = numKVHeads;
  spec.headDim = headDim;
  spec.pageSize = pageSize;
  spec.dtype = dataType;
  spec.layout = *kvLayout;
  spec.kvQuant = kvQuant;
  if (std::string error = spec.validate(); !error.empty()) {
    fail("append " + spec.name() + ": " + error);
    return failure();
  }
  KernelSet set;
  set.appends.push_back(spec);
  return set;
}

/// The one decode, merge or append the flags describe.
static FailureOr<KernelSet> kernelSetFromFlags(int64_t warps) {
  std::optional<::paged_attn::DType> dataType = ::paged_attn::parseDType(dtype);
  if (!dataType || !::paged_attn::isDataDType(*dataType)) {
    fail("--dtype must be f16, bf16 or f32, got '" + dtype + "'");
    return failure();
  }
  std::optional<::paged_attn::KVQuant> kvQuant;
  if (failed(kvQuantFromFlags(&kvQuant)))
    return failure();
  KernelSet set;
  if (opName == "merge") {
    if (kvQuant) {
      fail("--kv-dtype and --kv-scale describe a decode's caches; a merge "
           "has none");
      return failure();
    }
    DecodeVariants wanted;
    for (const std::string &name : variants)
      if (!wanted.enable(name) || wanted.window || wanted.softCap ||
          wanted.alibi) {
        fail("--variants: a merge takes sinks and lse, got '" + name + "'");
        return failure();
      }
    set.merges.push_back(::paged_attn::MergeSpec::forOp(
        numHeads, headDim, *dataType, wanted.sinks, wanted.lse));
    return set;
  }
  if (opName == "append")
    return appendFromFlags(*dataType, kvQuant);
  if (opName != "decode") {
    fail("--op must be decode, merge or append, got '" + opName + "'");
    return failure();
  }
  std::optional<::paged_attn::Layout> kvLayout =
      ::paged_attn::parseLayout(layout);
  if (!kvLayout) {
    fail("--layout must be nhd or hnd, got '" + layout + "'");
    return failure();
  }
  DecodeSpec spec;
  spec.numHeads = numHeads;
  spec.numKVHeads = numKVHeads;
  spec.headDim = headDim;
  spec.pageSize = pageSize;
  spec.dtype = *dataType;
  spec.layout = *kvLayout;
  spec.numWarps = warps;
  spec.queryLen = queryLen;
  spec.kvQuant = kvQuant;
  for (const std::string &name : variants)
    if (!spec.variants.enable(name)) {
      fail("--variants: unknown variant '" + name +
           "' (the variants: " + DecodeVariants::keysDoc() + ")");
      return failure();
    }
  set.decodes.push_back(spec);
  return set;
}

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::HideUnrelatedOptions(category);
  SmallVector<const char *> args(argv, argv + argc);
  std::string kernelOptionText = takeKernelOptions(args);
  cl::ParseCommandLineOptions(
      args.size(), args.data(),
      "PagedAttn decode kernels to PTX and manifest\n\n"
      "Also takes the options of paged-attn-select-decode-kernel "
      "(--tensor-cores, --kv-stages, --l2-prefetch, --prefetch-page-table, "
      "--tokens-per-lane-group, --max-heads-per-cta, --min-ctas-per-sm; "
      "paged-attn-opt --help describes them). Chips: " +
          ::paged_attn::supportedChipList() + ".\n");
  if (outputName.empty())
    return fail("no output name: pass -o NAME");
  if (!isFileName(outputName))
    return fail("-o " + outputName +
                ": NAME must name a file (NAME.ptx and NAME.json are "
                "written), not a directory");

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

  auto parsed = parseDecodeKernelOptionText(
      "num-warps=" + std::to_string(numWarps) + " " + kernelOptionText, "--");
  if (auto *error = std::get_if<std::string>(&parsed))
    return fail(*error);
  const DecodeKernelOptions &kernelOptions =
      std::get<DecodeKernelOptions>(parsed);

  FailureOr<KernelSet> set =
      inputFile.empty()
          ? kernelSetFromFlags(kernelOptions.numWarps)
          : kernelSetFromFile(ctx, firstError, kernelOptions.numWarps);
  if (failed(set))
    return 1;
  KernelCompileOptions options;
  options.chip = chip;
  options.features = features;
  options.optLevel = optLevel;
  options.kernels = kernelOptions;
  std::string ptxPath = outputName + ".ptx";
  std::string jsonPath = outputName + ".json";
  // Renames do not replace directories: refuse before writing either file.
  for (const std::string &path : {ptxPath, jsonPath})
    if (sys::fs::is_directory(path))
      return fail("cannot write '" + path + "': it is a directory");
  auto start = std::chrono::steady_clock::now();
  FailureOr<CompiledKernels> compiled =
      compileKernels(&ctx, *set, options, llvm::sys::path::filename(ptxPath));
  if (failed(compiled))
    return fail(firstError.empty() ? "compilation failed"
                                   : llvm::Twine(firstError));
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();

  // Both files are written to temporaries and renamed into place only when
  // both are complete: a failure leaves the previous outputs as they were.
  Expected<sys::fs::TempFile> ptxFile = writeTemporary(ptxPath, compiled->ptx);
  if (!ptxFile)
    return fail(toString(ptxFile.takeError()));
  std::string manifest =
      llvm::formatv("{0:2}", compiled->manifest).str() + "\n";
  Expected<sys::fs::TempFile> jsonFile = writeTemporary(jsonPath, manifest);
  if (!jsonFile) {
    consumeError(ptxFile->discard());
    return fail(toString(jsonFile.takeError()));
  }
  if (Error e = ptxFile->keep(ptxPath)) {
    consumeError(jsonFile->discard());
    return fail("cannot write '" + ptxPath + "': " + toString(std::move(e)));
  }
  if (Error e = jsonFile->keep(jsonPath))
    return fail("cannot write '" + jsonPath + "': " + toString(std::move(e)));
  if (printTime)
    llvm::outs() << llvm::formatv("compiled {0} config(s) in {1:F3} s\n",
                                  set->decodes.size() + set->merges.size() +
                                      set->appends.size(),
                                  seconds);
  return 0;
}
