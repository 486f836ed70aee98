//===- gpu-decode-test.cpp - decode on the GPU against float64 ----------===//
//
// gpu-decode-test --kernels DIR [--quick | --one-per-module]
//                 [--filter REGEX] [--jobs N]
//
// DIR is the output of test/gpu/matrix.py: one kernel library per set
// (auto, tensor-cores, cuda-cores, variants, multi-token, fp8 and their
// CUDA-core twins). Every config of every set runs unsplit
// and split three ways on ragged lengths, N cases at a time (each worker
// thread with its own stream); then the named cases (regressions, long
// ragged batches, graphs, threads, streams, the check mode) run on the auto
// set. --one-per-module keeps the first config of each module (one dtype
// and head_dim of one set): every head_dim once, for the sanitizers. Exits 77
// (ctest's skip code) when no CUDA driver or device is present, after saying
// so.
//
//===----------------------------------------------------------------------===//

#include "PagedAttn/Runtime/Runtime.h"
#include "PagedAttn/Testing/PagedProblem.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

using namespace paged_attn;
using namespace paged_attn::testing;

namespace {
std::mutex reportMutex;
int passed = 0, failed = 0;
std::shared_ptr<KernelLibrary> library; // the auto set
std::regex filter;
bool hasFilter = false;

void report(const std::string &name, bool ok, const std::string &detail) {
  std::lock_guard<std::mutex> lock(reportMutex);
  (ok ? passed : failed)++;
  std::printf("[%s] %s%s%s\n", ok ? "PASS" : "FAIL", name.c_str(),
              detail.empty() ? "" : ": ", detail.c_str());
  std::fflush(stdout);
}

bool selected(const std::string &name) {
  return !hasFilter || std::regex_search(name, filter);
}

std::unique_ptr<Decoder>
decoderFor(const std::shared_ptr<KernelLibrary> &lib,
           const KernelConfig &config, std::string *error) {
  std::unique_ptr<Decoder> decoder;
  Status s = Decoder::create(lib, config, &decoder);
  if (!s)
    *error = s.message();
  return decoder;
}

std::unique_ptr<Decoder> decoderFor(const KernelConfig &config,
                                    std::string *error) {
  return decoderFor(library, config, error);
}

/// How a case splits its sequences: a count (0: automatic) and a least
/// chunk length, or a plan from the host's lengths (the problem's own, or
/// `planLengths` where given).
struct SplitChoice {
  int numSplits = 1;
  int splitChunk = 0;
  bool planned = false;
  std::vector<int32_t> planLengths;

  SplitChoice(int numSplits = 1, int splitChunk = 0)
      : numSplits(numSplits), splitChunk(splitChunk) {}
  static SplitChoice plan(std::vector<int32_t> lengths = {}) {
    SplitChoice c(0);
    c.planned = true;
    c.planLengths = std::move(lengths);
    return c;
  }
  /// Points `params` at this choice; `problem` holds the lengths planned
  /// for unless planLengths are given.
  void apply(DecodeParams &params, const Problem &problem) const {
    params.numSplits = numSplits;
    params.splitChunk = splitChunk;
    if (planned)
      params.hostSeqLens = planLengths.empty()
                               ? problem.reference().seqLens.data()
                               : planLengths.data();
  }
};

/// Runs `shape` split as `split` says on `stream` and checks it; `kernel`,
/// when set, is the decode kernel the case must run.
void checkCase(const std::string &name,
               const std::shared_ptr<KernelLibrary> &lib,
               const ProblemShape &shape, const SplitChoice &split,
               void *stream, const char *kernel = nullptr, float scale = 0) {
  std::string error;
  auto decoder = decoderFor(lib, shape.config, &error);
  if (!decoder)
    return report(name, false, error);
  if (kernel && std::strcmp(decoder->kernelKind(), kernel) != 0)
    return report(name, false,
                  std::string("runs the ") + decoder->kernelKind() +
                      " kernel, expected " + kernel);
  Problem problem;
  Status s = problem.create(shape);
  if (s)
    s = problem.prepareWorkspace(*decoder, split.numSplits);
  if (!s)
    return report(name, false, s.message());
  DecodeParams params = problem.params();
  split.apply(params, problem);
  params.scale = scale;
  CheckResult result;
  if (!(s = runAndCheck(*decoder, problem, params, stream, &result)))
    return report(name, false, s.message());
  char detail[200];
  int n = std::snprintf(detail, sizeof(detail), "%s, rel err %.3g (limit %.3g)",
                        decoder->kernelKind(), result.relError,
                        toleranceFor(shape.config.dtype));
  if (shape.config.variants.lse)
    std::snprintf(detail + n, sizeof(detail) - n,
                  ", lse err %.3g (limit %.3g)", result.lseError,
                  kLseTolerance);
  report(name, result.passed, detail);
}

void checkCase(const std::string &name, const ProblemShape &shape,
               const SplitChoice &split, float scale = 0) {
  if (selected(name))
    checkCase(name, library, shape, split, nullptr, nullptr, scale);
}

KernelConfig makeConfig(DType dtype, int64_t headDim, int64_t page,
                        int64_t group, Layout layout, int64_t kvHeads = 2) {
  KernelConfig c;
  c.numKVHeads = kvHeads;
  c.numHeads = kvHeads * group;
  c.headDim = headDim;
  c.pageSize = page;
  c.dtype = dtype;
  c.layout = layout;
  return c;
}

/// Lengths that hit the edges of a page, a random one, and one long
/// enough for every warp to wrap its ring of K/V tiles.
std::vector<int32_t> edgeLengths(int64_t page, uint64_t seed) {
  std::vector<int32_t> lens = {0, 1, int32_t(page + 1), int32_t(page)};
  if (page > 1)
    lens.push_back(int32_t(page - 1));
  lens.push_back(int32_t(37 + seed % 1500));
  lens.push_back(int32_t(517 + seed % 701));
  return lens;
}

/// The windows a config runs with (none without the variant): one shorter
/// than most sequences and not a multiple of the page, which one sequence
/// (appended to `lens`) equals, and one longer than every sequence.
std::vector<std::pair<int64_t, std::string>>
windowsFor(const KernelConfig &c, uint64_t seed, std::vector<int32_t> &lens) {
  if (!c.variants.window)
    return {{0, ""}};
  int64_t shortWindow = 3 * c.pageSize + 1 + int64_t(seed % 29);
  lens.push_back(int32_t(shortWindow));
  return {{shortWindow, "/window" + std::to_string(shortWindow)},
          {4096, "/window4096"}};
}

/// One case of the matrix, run by a worker.
struct MatrixCase {
  std::string name;
  std::shared_ptr<KernelLibrary> lib;
  ProblemShape shape;
  SplitChoice split;
  const char *kernel;
};

/// Every config of every kernel set, unsplit, split three ways, and split
/// four ways in chunks of at least 400 keys (as a plan from the host's
/// lengths splits: most sequences leave chunks empty, the longest take the
/// even share; the plan itself has the ragged/ and graph/ cases). Cases
/// are ordered so that consecutive ones come from different PTX modules
/// (a module holds one dtype and head_dim), letting the workers' first
/// launches JIT-compile modules in parallel.
std::vector<MatrixCase> matrixCases(const std::string &root, bool quick,
                                    bool onePerModule) {
  const std::pair<const char *, const char *> sets[] = {
      {"auto", nullptr},
      {"tensor-cores", "tensor-cores"},
      {"cuda-cores", "cuda-cores"},
      {"variants", nullptr},
      {"variants-cuda-cores", "cuda-cores"},
      {"multi-token", nullptr},
      {"multi-token-cuda-cores", "cuda-cores"},
      {"fp8", nullptr},
      {"fp8-cuda-cores", "cuda-cores"}};
  std::vector<std::tuple<int, std::string, MatrixCase>> ordered;
  uint64_t seed = 1;
  for (auto [set, kernel] : sets) {
    std::shared_ptr<KernelLibrary> lib;
    Status s = KernelLibrary::loadDirectory(root + "/" + set, &lib);
    if (!s) {
      report(std::string(set) + "/load", false, s.message());
      continue;
    }
    if (std::strcmp(set, "auto") == 0)
      library = lib;
    std::vector<KernelConfig> configs = lib->configs();
    std::sort(configs.begin(), configs.end(),
              [](const KernelConfig &a, const KernelConfig &b) {
                return a.name() < b.name();
              });
    std::map<std::string, int> perModule;
    for (const KernelConfig &c : configs) {
      ++seed;
      if (quick && seed % 7 != 0)
        continue;
      // As matrix.py groups configs into modules: by q's and the caches'
      // dtypes and head_dim.
      std::string module = std::string(set) + "/" + dtypeName(c.dtype) +
                           dtypeName(c.cacheDType()) +
                           std::to_string(c.headDim);
      int rank = perModule[module]++;
      if (onePerModule && rank > 0)
        continue;
      ProblemShape shape;
      shape.config = c;
      shape.seqLens = edgeLengths(c.pageSize, seed);
      shape.seed = seed;
      // A cap that bends the logits (about +-1 before it) well into tanh.
      if (c.variants.softCap)
        shape.softCap = 0.3;
      std::string base = std::string(set) + "/" + c.name();
      for (auto [window, suffix] : windowsFor(c, seed, shape.seqLens)) {
        shape.window = window;
        const std::pair<const char *, SplitChoice> splits[] = {
            {"/unsplit", SplitChoice(1)},
            {"/split3", SplitChoice(3)},
            {"/split4-chunk400", SplitChoice(4, 400)}};
        for (const auto &[splitName, split] : splits) {
          std::string name = base + suffix + splitName;
          if (selected(name))
            ordered.push_back(
                {rank, module, MatrixCase{name, lib, shape, split, kernel}});
        }
      }
    }
  }
  std::stable_sort(ordered.begin(), ordered.end(), [](auto &a, auto &b) {
    return std::tie(std::get<0>(a), std::get<1>(a)) <
           std::tie(std::get<0>(b), std::get<1>(b));
  });
  std::vector<MatrixCase> cases;
  for (auto &entry : ordered)
    cases.push_back(std::move(std::get<2>(entry)));
  return cases;
}

/// Runs `cases` on `jobs` threads, each with its own stream.
void runMatrix(const std::vector<MatrixCase> &cases, int jobs) {
  std::atomic<size_t> next{0};
  auto worker = [&] {
    void *stream = nullptr;
    Status s = initDevice();
    if (s)
      s = createStream(&stream);
    for (size_t i; (i = next++) < cases.size();) {
      const MatrixCase &c = cases[i];
      if (!s) {
        report(c.name, false, s.message());
        continue;
      }
      checkCase(c.name, c.lib, c.shape, c.split, stream, c.kernel);
    }
    if (stream)
      destroyStream(stream);
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < std::max(1, jobs); ++t)
    threads.emplace_back(worker);
  for (auto &t : threads)
    t.join();
}

/// The configs issue 11 found wrong (the tensor-core kernel's copies for
/// head_dim 48, 80, 96 and 112), by name, on long ragged batches.
void regressionTests() {
  struct Regression {
    const char *name;
    KernelConfig config;
  } regressions[] = {
      {"d80-h16-kv2-p8-bf16", makeConfig(DType::BF16, 80, 8, 8, Layout::NHD)},
      {"d80-h8-kv2-p16-f16-hnd",
       makeConfig(DType::F16, 80, 16, 4, Layout::HND)},
      {"d80-mqa-h8-kv1-bf16",
       makeConfig(DType::BF16, 80, 16, 8, Layout::NHD, 1)},
      {"d48-h16-kv2-bf16", makeConfig(DType::BF16, 48, 16, 8, Layout::NHD)},
      {"d96-h16-kv2-f16", makeConfig(DType::F16, 96, 16, 8, Layout::NHD)},
      {"d112-h16-kv2-bf16-hnd",
       makeConfig(DType::BF16, 112, 16, 8, Layout::HND)},
  };
  uint64_t seed = 900;
  for (const Regression &r : regressions) {
    ProblemShape shape;
    shape.config = r.config;
    shape.seqLens = {0, 1, 15, 17, 4099, 2500, 777, 8000};
    shape.seed = ++seed;
    std::string name = std::string("regression/") + r.name;
    checkCase(name + "/unsplit", shape, 1);
    checkCase(name + "/split-auto", shape, 0);
    checkCase(name + "/planned", shape, SplitChoice::plan());
  }
}

void longRaggedTests() {
  KernelConfig c = makeConfig(DType::BF16, 128, 16, 4, Layout::NHD);
  ProblemShape shape;
  shape.config = c;
  shape.seqLens = {0, 1, 15, 17, 20000, 9999, 4096, 12345};
  shape.seed = 99;
  checkCase("ragged/0..20000/unsplit", shape, 1);
  checkCase("ragged/0..20000/split-auto", shape, 0);
  checkCase("ragged/0..20000/split-64", shape, 64);
  checkCase("ragged/0..20000/planned", shape, SplitChoice::plan());
  // A plan is correct for lengths other than its own: here each sequence's
  // length was planned for another's.
  std::vector<int32_t> reversed(shape.seqLens.rbegin(), shape.seqLens.rend());
  checkCase("ragged/0..20000/planned-for-other-lengths", shape,
            SplitChoice::plan(reversed));
  checkCase("ragged/0..20000/split8-chunk5000", shape, SplitChoice(8, 5000));
  shape.sharePrefixPage = true;
  checkCase("ragged/shared-prefix-page", shape, 0);
  checkCase("ragged/custom-scale", shape, 0, 0.02f);
  // One long sequence: the case split-KV exists for.
  shape.sharePrefixPage = false;
  shape.seqLens = {20000};
  checkCase("single/20000/split-auto", shape, 0);
}

/// The config of the named graph and stream cases (bf16, head_dim 128,
/// pages of 16, 4 query heads per KV head) and its decoder from the auto
/// set; null, with case `name` reported failed, where there is none.
std::unique_ptr<Decoder> namedCaseDecoder(const std::string &name,
                                          KernelConfig *config) {
  std::string error;
  *config = makeConfig(DType::BF16, 128, 16, 4, Layout::NHD);
  auto decoder = decoderFor(*config, &error);
  if (!decoder)
    report(name, false, error);
  return decoder;
}

void graphTest() {
  const std::string name = "graph/capture-and-replay";
  if (!selected(name))
    return;
  KernelConfig c;
  auto decoder = namedCaseDecoder(name, &c);
  if (!decoder)
    return;
  ProblemShape shape;
  shape.config = c;
  shape.seqLens = {100, 3000, 0, 1};
  Problem problem;
  void *stream = nullptr;
  Status s = problem.create(shape);
  if (s)
    s = problem.prepareWorkspace(*decoder, 4);
  if (s)
    s = createStream(&stream);
  if (s)
    s = problem.poisonOutput();
  DecodeParams params = problem.params();
  params.numSplits = 4;
  if (s)
    s = beginCapture(stream);
  if (s)
    s = decoder->decode(params, stream);
  if (s)
    s = endCaptureAndLaunch(stream, 3);
  std::vector<double> out;
  if (s)
    s = problem.readOutput(&out);
  if (stream)
    destroyStream(stream);
  if (!s)
    return report(name, false, s.message());
  double err = relativeError(out, referenceDecode(problem.reference()));
  report(name, err <= toleranceFor(c.dtype), "rel err " + std::to_string(err));
}

/// A graph captured with a split planned for one set of lengths, replayed
/// after seq_lens changed on the device (as a serving loop replays one
/// graph per batch size): each replay is checked against float64 for the
/// lengths it read. Lengths stay within each sequence's pages.
void graphReplayWithNewLengthsTest() {
  const std::string name = "graph/planned-replayed-with-new-lengths";
  if (!selected(name))
    return;
  KernelConfig c;
  auto decoder = namedCaseDecoder(name, &c);
  if (!decoder)
    return;
  ProblemShape shape;
  shape.config = c;
  shape.seqLens = {0, 1, 15, 17, 20000, 9999, 4096, 12345};
  shape.seed = 77;
  const std::vector<std::vector<int32_t>> lengths = {
      shape.seqLens,
      // The longest now the shortest, others to their last page's end.
      {0, 16, 3, 32, 7, 10000, 4096, 12352},
      {0, 1, 16, 1, 19999, 1, 2048, 6000}};
  Problem problem;
  void *stream = nullptr;
  Status s = problem.create(shape);
  if (s)
    s = problem.prepareWorkspace(*decoder, 0);
  if (s)
    s = createStream(&stream);
  DecodeParams params = problem.params();
  params.hostSeqLens = shape.seqLens.data();
  std::string errors;
  auto checkReplay = [&](int i) -> Status {
    std::vector<double> out;
    if (Status st = problem.readOutput(&out); !st)
      return st;
    ReferenceProblem ref = problem.reference();
    ref.seqLens = lengths[i];
    double err = relativeError(out, referenceDecode(ref));
    errors += (i ? ", " : "") + std::to_string(err);
    if (err > toleranceFor(c.dtype))
      return Status(StatusCode::InvalidArgument, "replay " + std::to_string(i) +
                                                     ": rel err " +
                                                     std::to_string(err));
    if (i + 1 == int(lengths.size()))
      return Status::ok();
    // Poison out, so that rows a replay skips are caught, and give the
    // next replay its lengths.
    if (Status st = problem.poisonOutput(); !st)
      return st;
    return problem.seqLensBuffer().upload(lengths[i + 1].data(),
                                          lengths[i + 1].size() * 4);
  };
  if (s)
    s = problem.poisonOutput();
  if (s)
    s = beginCapture(stream);
  if (s)
    s = decoder->decode(params, stream);
  if (s)
    s = endCaptureAndLaunch(stream, int(lengths.size()), checkReplay);
  if (stream)
    destroyStream(stream);
  report(name, bool(s), s ? "rel errs " + errors : s.message());
}

/// Three decodes on one stream, each reading the one before's output as
/// its query and writing over the same workspace, with nothing between
/// them on the host; eagerly, or captured in a graph and replayed twice.
/// Their grids fill every SM, so where the kernels wait on griddepcontrol
/// each decode is launched programmatically, scheduled while the decode
/// before it drains (or once the merge before it completes), and the merge
/// while its decode runs: neither may read what the grid before it writes
/// (the query, the partials) before that grid completes, nor a decode
/// write the workspace a merge still reads. The outputs start as NaNs, so
/// a query read early shows; each stage is checked against float64 on the
/// query the GPU gave it, with a scale large enough for the query to
/// matter.
void chainedDecodesTest(const std::string &name, int numSplits, bool graph) {
  if (!selected(name))
    return;
  KernelConfig c;
  auto decoder = namedCaseDecoder(name, &c);
  if (!decoder)
    return;
  ProblemShape shape;
  shape.config = c;
  shape.batch = 160;
  shape.maxSeqLen = 600;
  shape.seed = 300 + numSplits;
  Problem problem;
  void *stream = nullptr;
  Status s = problem.create(shape);
  if (s)
    s = problem.prepareWorkspace(*decoder, numSplits);
  DecodeParams params = problem.params();
  params.numSplits = numSplits;
  const size_t elements = size_t(params.out.numElements());
  const size_t bytes = elements * dtypeBytes(c.dtype);
  DeviceBuffer between[2];
  for (DeviceBuffer &buffer : between)
    if (s)
      s = buffer.allocate(bytes);
  auto poison = [&]() -> Status {
    for (DeviceBuffer &buffer : between)
      if (Status st = buffer.fill(0xff); !st)
        return st;
    return problem.poisonOutput();
  };
  const float chainedScale = 2.0f;
  std::string errors;
  // Each stage against float64 on its own query, then NaNs again.
  auto check = [&](int) -> Status {
    ReferenceProblem ref = problem.reference();
    for (int i = 0; i < 3; ++i) {
      std::vector<double> out;
      if (i < 2) {
        std::vector<uint8_t> raw(bytes);
        if (Status st = between[i].download(raw.data(), bytes); !st)
          return st;
        out = widenFromDType(c.dtype, raw.data(), elements);
      } else if (Status st = problem.readOutput(&out); !st) {
        return st;
      }
      double err = relativeError(out, referenceDecode(ref));
      errors += (errors.empty() ? "" : ", ") + std::to_string(err);
      if (!(err <= toleranceFor(c.dtype)))
        return Status(StatusCode::InvalidArgument,
                      "decode " + std::to_string(i) + ": rel err " +
                          std::to_string(err));
      ref.q = out;
      ref.scale = chainedScale;
    }
    return poison();
  };
  if (s)
    s = poison();
  if (s)
    s = createStream(&stream);
  if (s && graph)
    s = beginCapture(stream);
  Tensor outs[3] = {params.out, params.out, params.out};
  outs[0].data = between[0].data();
  outs[1].data = between[1].data();
  for (int i = 0; i < 3 && s; ++i) {
    params.out = outs[i];
    s = decoder->decode(params, stream);
    params.q = outs[i];
    params.scale = chainedScale;
  }
  if (s && graph)
    s = endCaptureAndLaunch(stream, 2, check);
  else if (s && (s = synchronizeStream(stream)))
    s = check(0);
  if (stream)
    destroyStream(stream);
  report(name, bool(s), s ? "rel errs " + errors : s.message());
}

void concurrencyTests() {
  const std::string name = "threads/4-threads-own-streams";
  if (selected(name)) {
    KernelConfig c = makeConfig(DType::F16, 128, 16, 8, Layout::HND);
    std::atomic<int> bad{0};
    std::vector<std::string> errors(4);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&, t] {
        std::string error;
        auto decoder = decoderFor(c, &error);
        Problem problem;
        ProblemShape shape;
        shape.config = c;
        shape.batch = 5;
        shape.maxSeqLen = 3000;
        shape.seed = 1000 + t;
        void *stream = nullptr;
        // Contexts are per thread: make one current before allocating.
        Status s = decoder ? initDevice() : Status(StatusCode::NotFound, error);
        if (s)
          s = problem.create(shape);
        if (s)
          s = problem.prepareWorkspace(*decoder, 0);
        if (s)
          s = createStream(&stream);
        for (int i = 0; s && i < 20; ++i) {
          CheckResult result;
          s = runAndCheck(*decoder, problem, problem.params(), stream, &result);
          if (s && !result.passed) {
            s = Status(StatusCode::InvalidArgument,
                       "rel err " + std::to_string(result.relError));
          }
        }
        if (!s) {
          errors[t] = s.message();
          ++bad;
        }
        if (stream)
          destroyStream(stream);
      });
    for (auto &t : threads)
      t.join();
    std::string detail;
    for (auto &e : errors)
      if (!e.empty())
        detail += e + "; ";
    report(name, bad == 0, detail);
  }

  const std::string twoStreams = "streams/two-streams-interleaved";
  if (selected(twoStreams)) {
    std::string error;
    KernelConfig c = makeConfig(DType::BF16, 64, 16, 4, Layout::NHD);
    auto decoder = decoderFor(c, &error);
    if (!decoder)
      return report(twoStreams, false, error);
    Problem a, b;
    ProblemShape shape;
    shape.config = c;
    shape.batch = 6;
    shape.maxSeqLen = 5000;
    void *s1 = nullptr, *s2 = nullptr;
    Status s = a.create(shape);
    shape.seed = 7;
    if (s)
      s = b.create(shape);
    if (s)
      s = a.prepareWorkspace(*decoder, 2);
    if (s)
      s = b.prepareWorkspace(*decoder, 5);
    if (s)
      s = createStream(&s1);
    if (s)
      s = createStream(&s2);
    if (s)
      s = a.poisonOutput();
    if (s)
      s = b.poisonOutput();
    DecodeParams pa = a.params(), pb = b.params();
    pa.numSplits = 2;
    pb.numSplits = 5;
    for (int i = 0; s && i < 10; ++i) {
      s = decoder->decode(pa, s1);
      if (s)
        s = decoder->decode(pb, s2);
    }
    if (s)
      s = synchronizeStream(s1);
    if (s)
      s = synchronizeStream(s2);
    std::vector<double> oa, ob;
    if (s)
      s = a.readOutput(&oa);
    if (s)
      s = b.readOutput(&ob);
    if (s1)
      destroyStream(s1);
    if (s2)
      destroyStream(s2);
    if (!s)
      return report(twoStreams, false, s.message());
    double ea = relativeError(oa, referenceDecode(a.reference()));
    double eb = relativeError(ob, referenceDecode(b.reference()));
    report(twoStreams,
           ea <= toleranceFor(c.dtype) && eb <= toleranceFor(c.dtype),
           "rel err " + std::to_string(ea) + ", " + std::to_string(eb));
  }
}

void checkModeTests() {
  KernelConfig c = makeConfig(DType::BF16, 128, 16, 4, Layout::NHD);
  std::string error;
  auto decoder = decoderFor(c, &error);
  auto expectBad = [&](const std::string &name, int32_t row, int32_t col,
                       int32_t value, bool seqLen, const char *expected) {
    if (!selected(name))
      return;
    if (!decoder)
      return report(name, false, error);
    Problem problem;
    ProblemShape shape;
    shape.config = c;
    shape.seqLens = {40, 100, 33};
    Status s = problem.create(shape);
    if (s && seqLen)
      s = problem.seqLensBuffer().upload(&value, 4, size_t(row) * 4);
    if (s && !seqLen)
      s = problem.blockTableBuffer().upload(
          &value, 4, (size_t(row) * problem.reference().maxPages + col) * 4);
    if (!s)
      return report(name, false, s.message());
    DecodeParams params = problem.params();
    params.numSplits = 1;
    params.maxSeqLen = -1;
    params.checkPageTable = true;
    s = decoder->decode(params, nullptr);
    bool ok = s.code() == StatusCode::BadPageTable &&
              s.message().find(expected) != std::string::npos;
    report(name, ok, s.message());
  };
  expectBad("check/bad-block-table-entry", 1, 5, 100000, false,
            "block_table[1][5] = 100000");
  expectBad("check/negative-block-table-entry", 2, 0, -3, false,
            "block_table[2][0] = -3");
  expectBad("check/seq-len-beyond-capacity", 0, 0, 5000, true,
            "seq_lens[0] = 5000");

  const std::string clean = "check/clean-table-passes";
  if (selected(clean) && decoder) {
    ProblemShape shape;
    shape.config = c;
    shape.seqLens = {40, 100, 33};
    Problem problem;
    Status s = problem.create(shape);
    DecodeParams params = problem.params();
    params.numSplits = 1;
    params.checkPageTable = true;
    CheckResult result;
    if (s)
      s = runAndCheck(*decoder, problem, params, nullptr, &result);
    report(clean, s.isOk() && result.passed, s.message());
  }
}
} // namespace

int main(int argc, char **argv) {
  std::string kernels;
  bool quick = false, onePerModule = false;
  int jobs = int(std::min(16u, std::max(1u, std::thread::hardware_concurrency())));
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--kernels" && i + 1 < argc) {
      kernels = argv[++i];
    } else if (a == "--filter" && i + 1 < argc) {
      try {
        filter = std::regex(argv[++i]);
      } catch (const std::regex_error &e) {
        std::fprintf(stderr, "gpu-decode-test: bad --filter: %s\n", e.what());
        return 2;
      }
      hasFilter = true;
    } else if (a == "--jobs" && i + 1 < argc) {
      jobs = std::atoi(argv[++i]);
    } else if (a == "--quick") {
      quick = true;
    } else if (a == "--one-per-module") {
      onePerModule = true;
    } else {
      std::fprintf(stderr, "usage: gpu-decode-test --kernels DIR [--quick | "
                           "--one-per-module] [--filter REGEX] [--jobs N]\n");
      return 2;
    }
  }
  std::string why;
  if (!hasDriver(&why)) {
    std::printf("SKIPPED: GPU tests need a CUDA driver: %s\n", why.c_str());
    return 77;
  }
  Status s = initDevice();
  if (!s) {
    std::printf("SKIPPED: GPU tests need a CUDA device: %s\n",
                s.message().c_str());
    return 77;
  }
  std::string device;
  int sms = 0;
  getDeviceInfo(0, &device, &sms);
  std::printf("device: %s (%d SMs); %d worker threads\n", device.c_str(), sms,
              jobs);
  auto start = std::chrono::steady_clock::now();
  std::vector<MatrixCase> cases = matrixCases(kernels, quick, onePerModule);
  if (!library) {
    std::fprintf(stderr, "gpu-decode-test: error: no auto kernel set in '%s'\n",
                 kernels.c_str());
    return 1;
  }
  runMatrix(cases, jobs);
  regressionTests();
  longRaggedTests();
  graphTest();
  graphReplayWithNewLengthsTest();
  chainedDecodesTest("streams/chained-decodes/unsplit", 1, false);
  chainedDecodesTest("streams/chained-decodes/split3", 3, false);
  chainedDecodesTest("graph/chained-decodes/split3", 3, true);
  concurrencyTests();
  checkModeTests();
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  std::printf("gpu-decode-test: %zu matrix cases, %.1f s\n%d passed, %d "
              "failed\n",
              cases.size(), seconds, passed, failed);
  return failed ? 1 : 0;
}
