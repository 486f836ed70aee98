//===- paged-attn-run.cpp - run, check and time paged decode --------------===//
//
// Builds random paged inputs (shuffled block table, ragged lengths), runs
// the decode kernel, compares with the float64 CPU reference and times it
// with CUDA events against a read-bandwidth ceiling measured in the same
// process. Kernels come from --kernels (a manifest or a directory of them)
// or, when the compiler is built in, are compiled for the flags.
//
//===----------------------------------------------------------------------===//

#include "PagedAttn/Runtime/Runtime.h"
#include "PagedAttn/Spec/TargetInfo.h"
#include "PagedAttn/Testing/PagedProblem.h"

#include "../../lib/Runtime/CudaDriver.h"

#ifdef PAGED_ATTN_HAVE_COMPILER
#include "PagedAttn/InitAll.h"
#include "PagedAttn/Target/KernelCompiler.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"
#endif

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <sys/stat.h>
#include <vector>

using namespace paged_attn;
using namespace paged_attn::testing;

namespace {
struct Options {
  KernelConfig config;
  int64_t batch = 8, seqLen = 4096;
  bool ragged = false;
  int numSplits = 0;
  int warmup = 10, iters = 100;
  uint64_t seed = 1;
  /// Empty: the device's chip (see defaultChip).
  std::string kernels, chip;
  bool checkOnly = false, json = false, checkPageTable = false;
  bool hostOverhead = false;
  /// Whether a flag of the config (--num-heads, ..., --num-warps) was
  /// given: without one, a kernel library of one config decides it.
  bool configGiven = false;
};

void usage() {
  std::fprintf(
      stderr,
      "usage: paged-attn-run [options]\n"
      "  --num-heads N --num-kv-heads N --head-dim N --page-size N\n"
      "  --dtype f16|bf16|f32 --layout nhd|hnd --num-warps N\n"
      "  --kv-dtype f8e4m3fn|f8e5m2 --kv-scale tensor|head|token\n"
      "                             fp8 caches (both flags; q f16 or bf16)\n"
      "  --batch N --seq-len N      sequences and their length\n"
      "  --ragged                   lengths uniform in [1, 2*seq-len]\n"
      "  --num-splits N             0: automatic\n"
      "  --kernels PATH             manifest or directory of manifests;\n"
      "                             without config flags, the config of a\n"
      "                             library that holds only one\n"
      "  --chip CHIP                when compiling in-process: %s\n"
      "                             (default: device 0's, else sm_90)\n"
      "  --warmup N --iters N --seed N\n"
      "  --check-only --json --check-page-table\n"
      "  --host-overhead            time the host side of decode() calls\n",
      supportedChipList().c_str());
}

/// The integer `s` spells, if it is one int64_t holds.
bool parseInt(const char *s, int64_t *out) {
  char *end = nullptr;
  errno = 0;
  long long v = std::strtoll(s, &end, 10);
  if (!s[0] || *end || errno == ERANGE)
    return false;
  *out = v;
  return true;
}

/// The range of each integer option: the grid's limits for the batch and
/// the split count, and bounds past which a run would only fail later
/// (or take days) for the others. The config's sizes have the op's own
/// rules too, checked when the config is.
struct IntOption {
  const char *name;
  int64_t lo, hi;
};
constexpr IntOption kIntOptions[] = {
    {"--num-heads", 1, 65535}, {"--num-kv-heads", 1, 65535},
    {"--head-dim", 1, 65535},  {"--page-size", 1, 65535},
    {"--num-warps", 1, 32},    {"--batch", 1, 65535},
    {"--seq-len", 0, 1 << 24}, {"--num-splits", 0, 65535},
    {"--warmup", 0, 1000000},  {"--iters", 1, 1000000},
    {"--seed", 0, INT64_MAX},
};

/// The flags that choose the config.
bool isConfigFlag(const std::string &flag) {
  for (const char *name :
       {"--num-heads", "--num-kv-heads", "--head-dim", "--page-size",
        "--num-warps", "--dtype", "--layout", "--kv-dtype", "--kv-scale"})
    if (flag == name)
      return true;
  return false;
}

/// Returns 0 on success, 2 on a usage error (message printed).
int parseArgs(int argc, char **argv, Options &o) {
  // --kv-dtype and --kv-scale, which make o.config.kvQuant together.
  std::optional<DType> kvDType;
  std::optional<KVScaleKind> kvScale;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char **v) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "paged-attn-run: error: %s needs a value\n",
                     a.c_str());
        return false;
      }
      *v = argv[++i];
      return true;
    };
    auto intValue = [&](int64_t *out) {
      const char *v;
      if (!value(&v))
        return false;
      const IntOption *option = nullptr;
      for (const IntOption &known : kIntOptions)
        if (a == known.name)
          option = &known;
      int64_t n = 0;
      if (!parseInt(v, &n) || n < option->lo || n > option->hi) {
        std::fprintf(stderr,
                     "paged-attn-run: error: %s must be an integer in "
                     "[%lld, %lld], got '%s'\n",
                     a.c_str(), (long long)option->lo, (long long)option->hi,
                     v);
        return false;
      }
      *out = n;
      return true;
    };
    o.configGiven |= isConfigFlag(a);
    int64_t n = 0;
    const char *v = nullptr;
    if (a == "--num-heads") {
      if (!intValue(&o.config.numHeads))
        return 2;
    } else if (a == "--num-kv-heads") {
      if (!intValue(&o.config.numKVHeads))
        return 2;
    } else if (a == "--head-dim") {
      if (!intValue(&o.config.headDim))
        return 2;
    } else if (a == "--page-size") {
      if (!intValue(&o.config.pageSize))
        return 2;
    } else if (a == "--num-warps") {
      if (!intValue(&o.config.numWarps))
        return 2;
    } else if (a == "--batch") {
      if (!intValue(&o.batch))
        return 2;
    } else if (a == "--seq-len") {
      if (!intValue(&o.seqLen))
        return 2;
    } else if (a == "--num-splits") {
      if (!intValue(&n))
        return 2;
      o.numSplits = int(n);
    } else if (a == "--warmup") {
      if (!intValue(&n))
        return 2;
      o.warmup = int(n);
    } else if (a == "--iters") {
      if (!intValue(&n))
        return 2;
      o.iters = int(n);
    } else if (a == "--seed") {
      if (!intValue(&n))
        return 2;
      o.seed = uint64_t(n);
    } else if (a == "--dtype") {
      if (!value(&v))
        return 2;
      std::optional<DType> dtype = parseDType(v);
      if (!dtype || !isDataDType(*dtype)) {
        std::fprintf(stderr,
                     "paged-attn-run: error: --dtype must be f16, bf16 or "
                     "f32, got '%s'\n",
                     v);
        return 2;
      }
      o.config.dtype = *dtype;
    } else if (a == "--layout") {
      if (!value(&v))
        return 2;
      std::optional<Layout> layout = parseLayout(v);
      if (!layout) {
        std::fprintf(stderr,
                     "paged-attn-run: error: --layout must be nhd or hnd, got "
                     "'%s'\n",
                     v);
        return 2;
      }
      o.config.layout = *layout;
    } else if (a == "--kv-dtype") {
      if (!value(&v))
        return 2;
      kvDType = parseDType(v);
      if (!kvDType || !isQuantizedCacheDType(*kvDType)) {
        std::fprintf(stderr,
                     "paged-attn-run: error: --kv-dtype must be f8e4m3fn or "
                     "f8e5m2, got '%s'\n",
                     v);
        return 2;
      }
    } else if (a == "--kv-scale") {
      if (!value(&v))
        return 2;
      kvScale = parseKVScaleKind(v);
      if (!kvScale) {
        std::fprintf(stderr,
                     "paged-attn-run: error: --kv-scale must be tensor, head "
                     "or token, got '%s'\n",
                     v);
        return 2;
      }
    } else if (a == "--kernels") {
      if (!value(&v))
        return 2;
      o.kernels = v;
    } else if (a == "--chip") {
      if (!value(&v))
        return 2;
      o.chip = v;
    } else if (a == "--ragged") {
      o.ragged = true;
    } else if (a == "--check-only") {
      o.checkOnly = true;
    } else if (a == "--json") {
      o.json = true;
    } else if (a == "--check-page-table") {
      o.checkPageTable = true;
    } else if (a == "--host-overhead") {
      o.hostOverhead = true;
    } else if (a == "--help" || a == "-h") {
      usage();
      std::exit(0);
    } else {
      std::fprintf(stderr, "paged-attn-run: error: unknown option '%s'\n",
                   a.c_str());
      usage();
      return 2;
    }
  }
  if (bool(kvDType) != bool(kvScale)) {
    std::fprintf(stderr,
                 "paged-attn-run: error: --kv-dtype and --kv-scale go "
                 "together: a quantised cache needs both, got only %s\n",
                 kvDType ? "--kv-dtype" : "--kv-scale");
    return 2;
  }
  if (kvDType)
    o.config.kvQuant = KVQuant{*kvDType, *kvScale};
  return 0;
}

int fail(const Status &s) {
  std::fprintf(stderr, "paged-attn-run: error: %s\n", s.message().c_str());
  return s.code() == StatusCode::NoDriver ? 3 : 1;
}

#ifdef PAGED_ATTN_HAVE_COMPILER
/// The chip to compile for without --chip: device 0's, as TargetInfo names
/// it, so that the PTX loads there; sm_90 without a device, or for one the
/// kernels are not built for.
std::string defaultChip() {
  using namespace paged_attn::cuda;
  const Driver *d = getDriver(nullptr);
  CUdevice device;
  int major = 0, minor = 0;
  if (d && d->cuDeviceGet(&device, 0) == CUDA_SUCCESS &&
      d->cuDeviceGetAttribute(&major,
                              CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                              device) == CUDA_SUCCESS &&
      d->cuDeviceGetAttribute(&minor,
                              CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                              device) == CUDA_SUCCESS)
    if (const TargetInfo *target = targetForComputeCapability(major, minor))
      return target->chip;
  return "sm_90";
}
#endif

bool endsWith(const std::string &s, const char *suffix) {
  size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

/// Loads --kernels: a directory of manifests, or a manifest. PTX is told
/// apart, for the manifest next to it is what names its kernels.
Status loadKernelPath(const std::string &path,
                      std::shared_ptr<KernelLibrary> *lib) {
  if (endsWith(path, ".ptx"))
    return Status(StatusCode::InvalidArgument,
                  "--kernels takes a manifest (.json) or a directory of "
                  "them, and '" +
                      path +
                      "' is PTX: pass the manifest (.json) next to it, '" +
                      path.substr(0, path.size() - 4) + ".json'");
  // A path that is not there is taken for a directory unless it is named
  // like a manifest, so that either message names what was meant.
  struct stat info;
  bool exists = stat(path.c_str(), &info) == 0;
  if (exists ? S_ISDIR(info.st_mode) : !endsWith(path, ".json"))
    return KernelLibrary::loadDirectory(path, lib);
  return KernelLibrary::load(path, lib);
}

/// Loads the kernels for o.config: from --kernels, or compiled in-process.
Status loadKernels(const Options &o, std::shared_ptr<KernelLibrary> *lib) {
  if (!o.kernels.empty())
    return loadKernelPath(o.kernels, lib);
#ifdef PAGED_ATTN_HAVE_COMPILER
  mlir::DialectRegistry registry;
  mlir::paged_attn::registerAllDialects(registry);
  mlir::MLIRContext ctx(registry);
  ctx.loadAllAvailableDialects();
  std::string firstError;
  mlir::ScopedDiagnosticHandler handler(&ctx, [&](mlir::Diagnostic &diag) {
    if (firstError.empty())
      firstError = diag.str();
    return mlir::success();
  });
  mlir::paged_attn::KernelCompileOptions options;
  options.chip = o.chip.empty() ? defaultChip() : o.chip;
  options.kernels.numWarps = o.config.numWarps;
  auto compiled = mlir::paged_attn::compileDecodeKernels(&ctx, {o.config},
                                                         options, "kernels.ptx");
  if (mlir::failed(compiled))
    return Status(StatusCode::InvalidArgument,
                  "cannot compile the kernel: " + firstError);
  llvm::SmallString<128> dir;
  if (llvm::sys::fs::createUniqueDirectory("paged-attn-run", dir))
    return Status(StatusCode::NotFound, "cannot create a temporary directory");
  std::string ptxPath = (dir + "/kernels.ptx").str();
  std::string jsonPath = (dir + "/kernels.json").str();
  {
    std::error_code ec;
    llvm::raw_fd_ostream ptx(ptxPath, ec), json(jsonPath, ec);
    ptx << compiled->ptx;
    json << llvm::formatv("{0}", compiled->manifest);
  }
  Status s = KernelLibrary::load(jsonPath, lib);
  llvm::sys::fs::remove(ptxPath);
  llvm::sys::fs::remove(jsonPath);
  llvm::sys::fs::remove(dir);
  return s;
#else
  return Status(StatusCode::InvalidArgument,
                "this build has no compiler: pass --kernels with kernels "
                "compiled by paged-attn-compile");
#endif
}

/// The decoder for o.config, which a library of one config decides when
/// no config flag was given.
Status createDecoder(const std::shared_ptr<KernelLibrary> &library, Options &o,
                     std::unique_ptr<Decoder> *decoder) {
  std::vector<KernelConfig> configs = library->configs();
  if (!o.kernels.empty() && !o.configGiven && configs.size() == 1)
    o.config = configs[0];
  Status s = Decoder::create(library, o.config, decoder);
  if (s.code() != StatusCode::NotFound || o.kernels.empty())
    return s;
  return Status(s.code(), s.message() +
                              "; choose one with --num-heads, "
                              "--num-kv-heads, --head-dim, --page-size, "
                              "--dtype, --layout, --num-warps, --kv-dtype "
                              "and --kv-scale");
}

/// A streaming read (read_ceiling.ptx, embedded at build time): the
/// bandwidth ceiling decode is measured against.
const char *kReadCeilingPTX =
#include "read_ceiling.ptx.inc"
    ;

/// Measures the read ceiling in TB/s over a buffer larger than L2.
Status measureReadCeiling(double *tbps) {
  using namespace paged_attn::cuda;
  std::string why;
  const Driver *d = getDriver(&why);
  if (!d)
    return Status(StatusCode::NoDriver, why);
  CUmodule module;
  CUfunction fn;
  CUresult r =
      d->cuModuleLoadDataEx(&module, kReadCeilingPTX, 0, nullptr, nullptr);
  if (r != CUDA_SUCCESS ||
      (r = d->cuModuleGetFunction(&fn, module, "read_ceiling")) != CUDA_SUCCESS)
    return Status(StatusCode::CudaError,
                  "read-ceiling kernel: " + describe(*d, r));
  const size_t bytes = size_t(1) << 30;
  DeviceBuffer src, dst;
  Status s = src.allocate(bytes);
  if (!s || !(s = dst.allocate(64)) || !(s = src.fill(1)))
    return s;
  unsigned long long srcPtr = reinterpret_cast<unsigned long long>(src.data());
  unsigned long long dstPtr = reinterpret_cast<unsigned long long>(dst.data());
  unsigned long long n64 = bytes / 64;
  void *args[] = {&srcPtr, &n64, &dstPtr};
  int sms = 1;
  std::string name;
  getDeviceInfo(0, &name, &sms);
  std::vector<float> times;
  for (int i = 0; i < 20; ++i) {
    EventTimer timer;
    timer.record(nullptr, false);
    r = d->cuLaunchKernel(fn, unsigned(sms * 8), 1, 1, 256, 1, 1, 0, nullptr,
                          args, nullptr);
    if (r != CUDA_SUCCESS)
      return Status(StatusCode::CudaError,
                    "read-ceiling launch: " + describe(*d, r));
    timer.record(nullptr, true);
    float ms = 0;
    if (!(s = timer.elapsed(&ms)))
      return s;
    if (i >= 3)
      times.push_back(ms);
  }
  d->cuModuleUnload(module);
  std::sort(times.begin(), times.end());
  *tbps = double(bytes) / (times[times.size() / 2] * 1e-3) / 1e12;
  return Status::ok();
}
} // namespace

int main(int argc, char **argv) {
  Options o;
  o.config.numHeads = 32;
  o.config.numKVHeads = 8;
  o.config.headDim = 128;
  o.config.pageSize = 16;
  o.config.dtype = DType::BF16;
  if (int rc = parseArgs(argc, argv, o))
    return rc;

  std::shared_ptr<KernelLibrary> library;
  Status s = loadKernels(o, &library);
  if (!s)
    return fail(s);
  std::unique_ptr<Decoder> decoder;
  if (!(s = createDecoder(library, o, &decoder)))
    return fail(s);
  if (!(s = initDevice()))
    return fail(s);
  std::string device;
  int sms = 0;
  if (!(s = getDeviceInfo(0, &device, &sms)))
    return fail(s);

  ProblemShape shape;
  shape.config = o.config;
  shape.batch = o.batch;
  shape.seed = o.seed;
  if (o.ragged) {
    shape.minSeqLen = 1;
    shape.maxSeqLen = std::max<int64_t>(1, 2 * o.seqLen);
  } else {
    shape.seqLens.assign(o.batch, int32_t(o.seqLen));
  }

  // Correctness on the first input set.
  Problem first;
  if (!(s = first.create(shape)) ||
      !(s = first.prepareWorkspace(*decoder, o.numSplits)))
    return fail(s);
  DecodeParams params = first.params();
  params.numSplits = o.numSplits;
  params.checkPageTable = o.checkPageTable;
  CheckResult check;
  if (!(s = runAndCheck(*decoder, first, params, nullptr, &check)))
    return fail(s);
  int splits = o.numSplits;
  if (!splits &&
      !(s = decoder->defaultNumSplits(shape.batch, first.maxSeqLen(), &splits)))
    return fail(s);
  double tolerance = toleranceFor(o.config.dtype);
  if (!o.json)
    std::printf("%s on %s: batch %lld, max seq len %lld, %d split(s)\n"
                "check: rel err %.3g (limit %.3g), max abs err %.3g: %s\n",
                o.config.name().c_str(), device.c_str(), (long long)shape.batch,
                (long long)first.maxSeqLen(), splits, check.relError, tolerance,
                check.maxAbsError, check.passed ? "PASS" : "FAIL");
  if (o.checkOnly || !check.passed) {
    if (o.json)
      std::printf("{\"config\": \"%s\", \"device\": \"%s\", \"rel_error\": "
                  "%.6g, \"passed\": %s}\n",
                  o.config.name().c_str(), device.c_str(), check.relError,
                  check.passed ? "true" : "false");
    return check.passed ? 0 : 1;
  }

  if (o.hostOverhead) {
    // Host time per decode() call: many back-to-back launches of a problem
    // small enough that the GPU keeps up, timed on the CPU.
    const int calls = 5000;
    for (int i = 0; i < 100; ++i)
      if (!(s = decoder->decode(params, nullptr)))
        return fail(s);
    if (!(s = synchronize()))
      return fail(s);
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i)
      if (!(s = decoder->decode(params, nullptr)))
        return fail(s);
    double us = std::chrono::duration<double, std::micro>(
                    std::chrono::steady_clock::now() - start)
                    .count() /
                calls;
    if (!(s = synchronize()))
      return fail(s);
    if (o.json)
      std::printf("{\"config\": \"%s\", \"device\": \"%s\", "
                  "\"host_us_per_call\": %.3f, \"calls\": %d, "
                  "\"num_splits\": %d}\n",
                  o.config.name().c_str(), device.c_str(), us, calls, splits);
    else
      std::printf("host overhead: %.2f us per decode() call (%d calls, %d "
                  "split(s))\n",
                  us, calls, splits);
    return 0;
  }

  // Timing: rotate among input sets whose KV together exceeds L2 several
  // times over, so the numbers measure HBM and not the cache.
  // Every set has the same lengths, so each launch moves the same bytes.
  shape.seqLens = first.reference().seqLens;
  double kvBytes = first.bytesMoved();
  int sets =
      int(std::clamp(std::ceil(300e6 / std::max(kvBytes, 1.0)), 1.0, 16.0));
  std::vector<Problem> problems(sets);
  std::vector<DecodeParams> setParams;
  problems[0] = std::move(first);
  for (int i = 0; i < sets; ++i) {
    if (i > 0) {
      ProblemShape si = shape;
      si.seed = o.seed + i;
      if (!(s = problems[i].create(si)) ||
          !(s = problems[i].prepareWorkspace(*decoder, o.numSplits)))
        return fail(s);
    }
    DecodeParams pi = problems[i].params();
    pi.numSplits = o.numSplits;
    setParams.push_back(pi);
  }
  for (int i = 0; i < o.warmup; ++i)
    if (!(s = decoder->decode(setParams[i % sets], nullptr)))
      return fail(s);
  std::vector<float> times;
  for (int i = 0; i < o.iters; ++i) {
    EventTimer timer;
    timer.record(nullptr, false);
    if (!(s = decoder->decode(setParams[i % sets], nullptr)))
      return fail(s);
    timer.record(nullptr, true);
    float ms = 0;
    if (!(s = timer.elapsed(&ms)))
      return fail(s);
    times.push_back(ms);
  }
  std::sort(times.begin(), times.end());
  double medianUs = times[times.size() / 2] * 1e3;
  double tbps = problems[0].bytesMoved() / (medianUs * 1e-6) / 1e12;
  double ceiling = 0;
  if (!(s = measureReadCeiling(&ceiling)))
    return fail(s);
  if (o.json) {
    std::printf("{\"config\": \"%s\", \"device\": \"%s\", \"batch\": %lld, "
                "\"max_seq_len\": %lld, \"ragged\": %s, \"num_splits\": %d, "
                "\"rel_error\": %.6g, \"passed\": true, \"median_us\": %.3f, "
                "\"min_us\": %.3f, \"bytes\": %.0f, \"tbps\": %.4f, "
                "\"read_ceiling_tbps\": %.4f, \"fraction_of_ceiling\": %.4f, "
                "\"input_sets\": %d, \"iters\": %d}\n",
                o.config.name().c_str(), device.c_str(), (long long)shape.batch,
                (long long)problems[0].maxSeqLen(), o.ragged ? "true" : "false",
                splits, check.relError, medianUs, times.front() * 1e3,
                problems[0].bytesMoved(), tbps, ceiling, tbps / ceiling, sets,
                o.iters);
  } else {
    std::printf("time: median %.2f us (min %.2f) over %d runs, %d input "
                "set(s)\n"
                "bandwidth: %.3f TB/s of %.1f MB; read ceiling %.3f TB/s "
                "(%.1f%%)\n",
                medianUs, times.front() * 1e3, o.iters, sets, tbps,
                problems[0].bytesMoved() / 1e6, ceiling,
                100.0 * tbps / ceiling);
  }
  return 0;
}
