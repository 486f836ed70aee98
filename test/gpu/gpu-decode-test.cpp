//===- gpu-decode-test.cpp - decode on the GPU against float64 ----------===//
//
// gpu-decode-test --kernels DIR [--quick] [--filter SUBSTRING]
//
// DIR holds manifests compiled for the matrix (test/gpu/gen_matrix.py and
// paged-attn-compile). Exits 77 (ctest's skip code) when no CUDA driver or
// device is present, after saying so.
//
//===----------------------------------------------------------------------===//

#include "PagedAttn/Runtime/Runtime.h"
#include "PagedAttn/Testing/PagedProblem.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

using namespace paged_attn;
using namespace paged_attn::testing;

namespace {
int passed = 0, failed = 0;
std::shared_ptr<KernelLibrary> library;
std::string filter;

void report(const std::string &name, bool ok, const std::string &detail) {
  (ok ? passed : failed)++;
  std::printf("[%s] %s%s%s\n", ok ? "PASS" : "FAIL", name.c_str(),
              detail.empty() ? "" : ": ", detail.c_str());
  std::fflush(stdout);
}

bool selected(const std::string &name) {
  return filter.empty() || name.find(filter) != std::string::npos;
}

std::unique_ptr<Decoder> decoderFor(const KernelConfig &config,
                                    std::string *error) {
  std::unique_ptr<Decoder> decoder;
  Status s = Decoder::create(library, config, &decoder);
  if (!s)
    *error = s.message();
  return decoder;
}

/// Runs `shape` with the given split count and checks it.
void checkCase(const std::string &name, const ProblemShape &shape,
               int numSplits, float scale = 0) {
  if (!selected(name))
    return;
  std::string error;
  auto decoder = decoderFor(shape.config, &error);
  if (!decoder)
    return report(name, false, error);
  Problem problem;
  Status s = problem.create(shape);
  if (s)
    s = problem.prepareWorkspace(*decoder, numSplits);
  if (!s)
    return report(name, false, s.message());
  DecodeParams params = problem.params();
  params.numSplits = numSplits;
  params.scale = scale;
  CheckResult result;
  if (!(s = runAndCheck(*decoder, problem, params, nullptr, &result)))
    return report(name, false, s.message());
  char detail[128];
  std::snprintf(detail, sizeof(detail), "rel err %.3g (limit %.3g)",
                result.relError, toleranceFor(shape.config.dtype));
  report(name, result.passed, detail);
}

KernelConfig makeConfig(DType dtype, int64_t headDim, int64_t page,
                        int64_t group, Layout layout) {
  KernelConfig c;
  c.numKVHeads = 2;
  c.numHeads = 2 * group;
  c.headDim = headDim;
  c.pageSize = page;
  c.dtype = dtype;
  c.layout = layout;
  return c;
}

/// Lengths that hit the edges of a page, plus a random one.
std::vector<int32_t> edgeLengths(int64_t page, uint64_t seed) {
  std::vector<int32_t> lens = {0, 1, int32_t(page + 1), int32_t(page)};
  if (page > 1)
    lens.push_back(int32_t(page - 1));
  lens.push_back(int32_t(37 + seed % 1500));
  return lens;
}

void matrixTests(bool quick) {
  const DType dtypes[] = {DType::F16, DType::BF16, DType::F32};
  const int64_t dims[] = {64, 128, 256};
  const int64_t pages[] = {1, 16, 128};
  const int64_t groups[] = {1, 4, 8};
  const Layout layouts[] = {Layout::NHD, Layout::HND};
  uint64_t seed = 1;
  for (DType dtype : dtypes)
    for (int64_t d : dims)
      for (int64_t page : pages)
        for (int64_t g : groups)
          for (Layout layout : layouts) {
            ++seed;
            if (quick && seed % 9 != 0)
              continue;
            KernelConfig c = makeConfig(dtype, d, page, g, layout);
            ProblemShape shape;
            shape.config = c;
            shape.seqLens = edgeLengths(page, seed);
            shape.seed = seed;
            checkCase("matrix/" + c.name() + "/unsplit", shape, 1);
            checkCase("matrix/" + c.name() + "/split3", shape, 3);
          }
}

/// Groups the tensor-core kernel lays out differently: 2 (below its auto
/// threshold), 7 (a partial 8-head block) and 16 (two head blocks).
void groupTests() {
  uint64_t seed = 500;
  for (DType dtype : {DType::F16, DType::BF16})
    for (int64_t d : {64, 128})
      for (int64_t g : {2, 7, 16})
        for (Layout layout : {Layout::NHD, Layout::HND}) {
          KernelConfig c = makeConfig(dtype, d, 16, g, layout);
          ProblemShape shape;
          shape.config = c;
          shape.seqLens = edgeLengths(16, ++seed);
          shape.seqLens.push_back(2053);
          shape.seed = seed;
          checkCase("groups/" + c.name() + "/unsplit", shape, 1);
          checkCase("groups/" + c.name() + "/split5", shape, 5);
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
  shape.sharePrefixPage = true;
  checkCase("ragged/shared-prefix-page", shape, 0);
  checkCase("ragged/custom-scale", shape, 0, 0.02f);
  // One long sequence: the case split-KV exists for.
  shape.sharePrefixPage = false;
  shape.seqLens = {20000};
  checkCase("single/20000/split-auto", shape, 0);
}

void graphTest() {
  const std::string name = "graph/capture-and-replay";
  if (!selected(name))
    return;
  std::string error;
  KernelConfig c = makeConfig(DType::BF16, 128, 16, 4, Layout::NHD);
  auto decoder = decoderFor(c, &error);
  if (!decoder)
    return report(name, false, error);
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
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--kernels" && i + 1 < argc)
      kernels = argv[++i];
    else if (a == "--filter" && i + 1 < argc)
      filter = argv[++i];
    else if (a == "--quick")
      quick = true;
    else {
      std::fprintf(stderr, "usage: gpu-decode-test --kernels DIR [--quick] "
                           "[--filter SUBSTRING]\n");
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
  if (!(s = KernelLibrary::loadDirectory(kernels, &library))) {
    std::fprintf(stderr, "gpu-decode-test: error: %s\n", s.message().c_str());
    return 1;
  }
  std::string device;
  int sms = 0;
  getDeviceInfo(0, &device, &sms);
  std::printf("device: %s (%d SMs)\n", device.c_str(), sms);
  auto start = std::chrono::steady_clock::now();
  matrixTests(quick);
  if (!quick)
    groupTests();
  longRaggedTests();
  graphTest();
  concurrencyTests();
  checkModeTests();
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  std::printf("gpu-decode-test: %.1f s\n%d passed, %d failed\n", seconds,
              passed, failed);
  return failed ? 1 : 0;
}
