//===- StandinDriverTest.cpp - launch paths against a stand-in driver -----===//
//
// Runs the runtime's C++ and C APIs against the stand-in CUDA driver
// (test/standin-driver), which PAGED_ATTN_CUDA_DRIVER makes the runtime load
// in place of libcuda.so.1. Kernels compiled in the build are loaded and
// "launched": the stand-in checks each launch against an H100's limits and
// the PTX and records it, so these tests see the grids, blocks, shared
// memory and parameter buffers the runtime asks for, and what the runtime
// makes of the driver's errors. Nothing computes: results are not checked.
//
//===----------------------------------------------------------------------===//

#include "StandinDriver.h"
#include "PagedAttn/Spec/Json.h"

#include "CApiTensors.h"
#include "PagedAttn-c/Runtime.h"
#include "PagedAttn/Runtime/Runtime.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <unistd.h>

using namespace paged_attn;

namespace {

/// The stand-in's inspection API and the driver calls the tests make
/// themselves, from the instance the runtime loaded.
struct Standin {
  decltype(&paged_attn_standin_launch_count) launchCount;
  decltype(&paged_attn_standin_get_launch) getLaunch;
  decltype(&paged_attn_standin_clear_launches) clearLaunches;
  decltype(&paged_attn_standin_get_device) getDevice;
  decltype(&paged_attn_standin_set_device) setDevice;
  decltype(&paged_attn_standin_opted_in_shared) optedInShared;
  decltype(&paged_attn_standin_live_allocations) liveAllocations;
  decltype(&paged_attn_standin_fail_next) failNext;
  decltype(&paged_attn_standin_fail_after) failAfter;
  int (*memAlloc)(unsigned long long *, size_t);
  int (*memFree)(unsigned long long);
  int (*streamCreate)(void **, unsigned);
  int (*streamDestroy)(void *);
  int (*beginCapture)(void *, int);
  int (*endCapture)(void *, void **);
  int (*instantiate)(void **, void *, unsigned long long);
  int (*graphLaunch)(void *, void *);
  int (*graphExecDestroy)(void *);
  int (*graphDestroy)(void *);
  int (*moduleLoad)(void **, const void *, unsigned, int *, void **);
  int (*moduleUnload)(void *);
  int (*getFunction)(void **, void *, const char *);
  int (*funcSetAttribute)(void *, int, int);
  int (*launchKernel)(void *, unsigned, unsigned, unsigned, unsigned, unsigned,
                      unsigned, unsigned, void *, void **, void **);

  std::vector<paged_attn_standin_launch> launches() const {
    std::vector<paged_attn_standin_launch> result(launchCount());
    for (size_t i = 0; i < result.size(); ++i)
      getLaunch(i, &result[i]);
    return result;
  }
};

/// What a manifest says about one kernel pair.
struct ManifestKernel {
  std::string decode, merge, check;
  unsigned decodeBlock = 0, mergeBlock = 0, checkBlock = 0;
  int64_t ctasPerKVHead = 0, dynamicShared = 0;
  bool programmaticDecode = false, programmaticMerge = false;
};

std::string readText(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void writeText(const std::filesystem::path &path, const std::string &text) {
  std::ofstream(path, std::ios::binary) << text;
}

ManifestKernel readManifest(const std::string &path) {
  json::Value root;
  std::string error;
  EXPECT_TRUE(json::parse(readText(path), root, error)) << error;
  ManifestKernel k;
  const json::Value *kernels = root.get("kernels");
  if (!kernels || kernels->array.empty())
    return k;
  const json::Value &entry = kernels->array[0];
  auto block = [](const json::Value *kernel) {
    return unsigned(kernel->get("block")->array[0].number);
  };
  const json::Value *decode = entry.get("decode");
  const json::Value *merge = entry.get("merge");
  const json::Value *check = entry.get("check");
  k.decode = decode->get("name")->string;
  k.merge = merge->get("name")->string;
  k.check = check->get("name")->string;
  k.decodeBlock = block(decode);
  k.mergeBlock = block(merge);
  k.checkBlock = block(check);
  k.ctasPerKVHead = int64_t(decode->get("ctas_per_kv_head")->number);
  k.dynamicShared = int64_t(decode->get("dynamic_shared_memory_bytes")->number);
  if (const json::Value *pdl = decode->get("programmatic_launch"))
    k.programmaticDecode = pdl->boolean;
  if (const json::Value *pdl = merge->get("programmatic_launch"))
    k.programmaticMerge = pdl->boolean;
  return k;
}

/// Device memory for one decode call, allocated through the stand-in.
struct Buffers {
  const Standin *standin = nullptr;
  std::vector<unsigned long long> allocations;

  void *alloc(size_t bytes) {
    unsigned long long ptr = 0;
    EXPECT_EQ(standin->memAlloc(&ptr, bytes), 0);
    allocations.push_back(ptr);
    return reinterpret_cast<void *>(ptr);
  }
  ~Buffers() {
    for (unsigned long long ptr : allocations)
      standin->memFree(ptr);
  }
};

class StandinDriverTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    const char *path = std::getenv("PAGED_ATTN_CUDA_DRIVER");
    ASSERT_TRUE(path) << "set PAGED_ATTN_CUDA_DRIVER to the stand-in driver";
    std::string why;
    ASSERT_TRUE(hasDriver(&why)) << why;
    // The runtime has loaded the library: this finds the same instance.
    void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    ASSERT_TRUE(lib) << dlerror();
    auto sym = [&](auto &fn, const char *name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(
          dlsym(lib, name));
      ASSERT_TRUE(fn) << name;
    };
    sym(standin.launchCount, "paged_attn_standin_launch_count");
    sym(standin.getLaunch, "paged_attn_standin_get_launch");
    sym(standin.clearLaunches, "paged_attn_standin_clear_launches");
    sym(standin.getDevice, "paged_attn_standin_get_device");
    sym(standin.setDevice, "paged_attn_standin_set_device");
    sym(standin.optedInShared, "paged_attn_standin_opted_in_shared");
    sym(standin.liveAllocations, "paged_attn_standin_live_allocations");
    sym(standin.failNext, "paged_attn_standin_fail_next");
    sym(standin.failAfter, "paged_attn_standin_fail_after");
    sym(standin.memAlloc, "cuMemAlloc_v2");
    sym(standin.memFree, "cuMemFree_v2");
    sym(standin.streamCreate, "cuStreamCreate");
    sym(standin.streamDestroy, "cuStreamDestroy_v2");
    sym(standin.beginCapture, "cuStreamBeginCapture_v2");
    sym(standin.endCapture, "cuStreamEndCapture");
    sym(standin.instantiate, "cuGraphInstantiateWithFlags");
    sym(standin.graphLaunch, "cuGraphLaunch");
    sym(standin.graphExecDestroy, "cuGraphExecDestroy");
    sym(standin.graphDestroy, "cuGraphDestroy");
    sym(standin.moduleLoad, "cuModuleLoadDataEx");
    sym(standin.moduleUnload, "cuModuleUnload");
    sym(standin.getFunction, "cuModuleGetFunction");
    sym(standin.funcSetAttribute, "cuFuncSetAttribute");
    sym(standin.launchKernel, "cuLaunchKernel");
    // The runtime makes a context current on its first launch; the tests'
    // own allocations need one before that.
    std::string name;
    int sms = 0;
    ASSERT_TRUE(getDeviceInfo(0, &name, &sms));
    void *ctx = nullptr;
    int (*retain)(void **, int) = nullptr;
    int (*setCurrent)(void *) = nullptr;
    sym(retain, "cuDevicePrimaryCtxRetain");
    sym(setCurrent, "cuCtxSetCurrent");
    ASSERT_EQ(retain(&ctx, 0), 0);
    ASSERT_EQ(setCurrent(ctx), 0);
  }

  static void TearDownTestSuite() {
    std::filesystem::remove_all(
        std::filesystem::temp_directory_path() /
        ("paged-attn-standin-" + std::to_string(getpid())));
  }

  void SetUp() override {
    standin.getDevice(&h100);
    standin.clearLaunches();
    // A fresh library per test: the runtime caches loaded kernels per
    // library entry, and some tests change the device under them.
    ASSERT_TRUE(KernelLibrary::load(tcManifest(), &library));
    config.numHeads = 32;
    config.numKVHeads = 8;
    config.headDim = 128;
    config.pageSize = 16;
    config.dtype = DType::BF16;
    config.layout = Layout::NHD;
    ASSERT_TRUE(Decoder::create(library, config, &decoder));
    kernel = readManifest(tcManifest());
    buffers.standin = &standin;
  }

  void TearDown() override {
    standin.setDevice(&h100);
    standin.clearLaunches();
  }

  static std::string tcManifest() {
    return std::string(STANDIN_KERNEL_DIR) + "/tc.json";
  }
  static std::string ccManifest() {
    return std::string(STANDIN_KERNEL_DIR) + "/cc.json";
  }
  /// fp8 caches: per-token scales on tensor cores (sm_90), per-tensor ones
  /// on CUDA cores (sm_80).
  static std::string fp8TcManifest() {
    return std::string(STANDIN_KERNEL_DIR) + "/fp8tc.json";
  }
  static std::string fp8CcManifest() {
    return std::string(STANDIN_KERNEL_DIR) + "/fp8cc.json";
  }

  /// Parameters over stand-in device memory: `batch` sequences, 4 pages
  /// each of a 16-page cache (and its scales, for a quantised config).
  DecodeParams params(int64_t batch, const KernelConfig &c) {
    DecodeParams p;
    const int64_t pages = 16, maxPages = 4;
    size_t elem = dtypeBytes(c.dtype);
    size_t cacheElem = dtypeBytes(c.cacheDType());
    auto bytes = [](std::initializer_list<int64_t> sizes, size_t elemBytes) {
      size_t n = elemBytes;
      for (int64_t s : sizes)
        n *= size_t(s);
      return n;
    };
    int64_t rows[] = {batch, c.numHeads, c.headDim};
    p.q = Tensor::contiguous(
        buffers.alloc(bytes({rows[0], rows[1], rows[2]}, elem)), c.dtype,
        {batch, c.numHeads, c.headDim});
    p.out = Tensor::contiguous(
        buffers.alloc(bytes({rows[0], rows[1], rows[2]}, elem)), c.dtype,
        {batch, c.numHeads, c.headDim});
    bool nhd = c.layout == Layout::NHD;
    int64_t d1 = nhd ? c.pageSize : c.numKVHeads;
    int64_t d2 = nhd ? c.numKVHeads : c.pageSize;
    size_t cacheBytes = bytes({pages, d1, d2, c.headDim}, cacheElem);
    p.kCache = Tensor::contiguous(buffers.alloc(cacheBytes), c.cacheDType(),
                                  {pages, d1, d2, c.headDim});
    p.vCache = Tensor::contiguous(buffers.alloc(cacheBytes), c.cacheDType(),
                                  {pages, d1, d2, c.headDim});
    if (c.kvQuant) {
      std::vector<int64_t> shape = c.kvScaleShape(pages);
      for (Tensor *t : {&p.kScale, &p.vScale}) {
        size_t n = 4;
        for (int64_t size : shape)
          n *= size_t(size);
        t->data = buffers.alloc(n);
        t->dtype = DType::F32;
        t->rank = int(shape.size());
        int64_t stride = 1;
        for (int d = t->rank - 1; d >= 0; --d) {
          t->sizes[d] = shape[d];
          t->strides[d] = stride;
          stride *= shape[d];
        }
      }
    }
    p.blockTable =
        Tensor::contiguous(buffers.alloc(bytes({batch, maxPages}, 4)),
                           DType::I32, {batch, maxPages});
    p.seqLens = Tensor::contiguous(buffers.alloc(bytes({batch}, 4)), DType::I32,
                                   {batch});
    return p;
  }
  DecodeParams params(int64_t batch) { return params(batch, config); }

  /// Workspace for `splits` chunks, from the stand-in.
  void addWorkspace(DecodeParams &p, int splits) {
    p.numSplits = splits;
    p.workspaceBytes = decoder->workspaceSize(p.q.sizes[0], splits);
    if (p.workspaceBytes)
      p.workspace = buffers.alloc(p.workspaceBytes);
  }

  static Standin standin;
  paged_attn_standin_device h100;
  std::shared_ptr<KernelLibrary> library;
  KernelConfig config;
  std::unique_ptr<Decoder> decoder;
  ManifestKernel kernel;
  Buffers buffers;
};

Standin StandinDriverTest::standin;

template <typename T> T paramAt(const paged_attn_standin_launch &l, size_t at) {
  T value;
  std::memcpy(&value, l.params + at, sizeof(T));
  return value;
}

TEST_F(StandinDriverTest, DeviceIsTheStandin) {
  std::string name;
  int sms = 0;
  ASSERT_TRUE(getDeviceInfo(0, &name, &sms));
  EXPECT_NE(name.find("stand-in"), std::string::npos) << name;
  EXPECT_EQ(sms, 132);
  Status s = getDeviceInfo(1, &name, &sms);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
  EXPECT_NE(s.message().find("CUDA_ERROR_INVALID_DEVICE"), std::string::npos)
      << s.message();
}

// The checks the tests below rely on, made directly: a runtime bug that
// the real driver would reject must not pass the stand-in.
TEST_F(StandinDriverTest, StandinEnforcesTheDriversChecks) {
  std::string ptx = readText(std::string(STANDIN_KERNEL_DIR) + "/tc.ptx");
  void *module = nullptr, *f = nullptr, *missing = nullptr;
  ASSERT_EQ(standin.moduleLoad(&module, ptx.c_str(), 0, nullptr, nullptr), 0);
  EXPECT_EQ(standin.getFunction(&missing, module, "no_such_kernel"), 500);
  ASSERT_EQ(standin.getFunction(&f, module, kernel.decode.c_str()), 0);
  std::vector<unsigned char> params(4096);
  size_t size = 0;
  void *extra[] = {reinterpret_cast<void *>(1), params.data(),
                   reinterpret_cast<void *>(2), &size, nullptr};
  auto launch = [&](unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                    unsigned shared, size_t bytes) {
    size = bytes;
    return standin.launchKernel(f, gx, gy, gz, bx, 1, 1, shared, nullptr,
                                nullptr, extra);
  };
  // Find the parameter space size the stand-in read from the PTX.
  size_t paramBytes = 0;
  for (size_t bytes = 8; bytes < params.size() && !paramBytes; bytes += 4)
    if (launch(1, 1, 1, 128, 0, bytes) == 0)
      paramBytes = bytes;
  ASSERT_GT(paramBytes, 0u);
  EXPECT_EQ(launch(1, 1, 1, 128, 0, paramBytes - 4), 1) << "parameter size";
  EXPECT_EQ(launch(0, 1, 1, 128, 0, paramBytes), 1) << "empty grid";
  EXPECT_EQ(launch(1, 65536, 1, 128, 0, paramBytes), 1) << "grid y";
  EXPECT_EQ(launch(1, 1, 65536, 128, 0, paramBytes), 1) << "grid z";
  EXPECT_EQ(launch(1, 1, 1, 2048, 0, paramBytes), 1) << "block";
  EXPECT_EQ(launch(1, 1, 1, 256, 0, paramBytes), 701) << ".maxntid 128";
  EXPECT_EQ(launch(1, 1, 1, 128, 48 * 1024 + 1, paramBytes), 1)
      << "dynamic shared memory without the opt-in";
  EXPECT_EQ(standin.funcSetAttribute(f, 8, 227 * 1024 + 1), 1);
  EXPECT_EQ(standin.funcSetAttribute(f, 8, 100 * 1024), 0);
  EXPECT_EQ(launch(1, 1, 1, 128, 100 * 1024, paramBytes), 0);
  EXPECT_EQ(launch(1, 1, 1, 128, 100 * 1024 + 1, paramBytes), 1);
  EXPECT_EQ(standin.moduleUnload(module), 0);
  EXPECT_EQ(launch(1, 1, 1, 128, 0, paramBytes), 400) << "unloaded";
}

TEST_F(StandinDriverTest, UnsplitDecodeLaunchesOneGrid) {
  DecodeParams p = params(4);
  addWorkspace(p, 1);
  Status s = decoder->decode(p, nullptr);
  ASSERT_TRUE(s) << s.message();
  auto launches = standin.launches();
  ASSERT_EQ(launches.size(), 1u);
  const paged_attn_standin_launch &l = launches[0];
  EXPECT_EQ(l.kernel, kernel.decode);
  EXPECT_EQ(l.grid[0], unsigned(8 * kernel.ctasPerKVHead));
  EXPECT_EQ(l.grid[1], 4u);
  EXPECT_EQ(l.grid[2], 1u);
  EXPECT_EQ(l.block[0], kernel.decodeBlock);
  EXPECT_EQ(l.dynamic_shared_bytes, unsigned(kernel.dynamicShared));
  // The parameter buffer (its size already checked against the PTX by the
  // stand-in): q's descriptor first, scale, num_splits and split_chunk
  // last.
  EXPECT_EQ(paramAt<uint64_t>(l, 8), reinterpret_cast<uint64_t>(p.q.data));
  EXPECT_FLOAT_EQ(paramAt<float>(l, l.param_bytes - 12),
                  1.0f / std::sqrt(128.0f));
  EXPECT_EQ(paramAt<int32_t>(l, l.param_bytes - 8), 1);
  EXPECT_EQ(paramAt<int32_t>(l, l.param_bytes - 4), 0);
}

TEST_F(StandinDriverTest, SplitDecodeLaunchesDecodeThenMerge) {
  DecodeParams p = params(3);
  addWorkspace(p, 5);
  p.scale = 0.25f;
  Status s = decoder->decode(p, nullptr);
  ASSERT_TRUE(s) << s.message();
  auto launches = standin.launches();
  ASSERT_EQ(launches.size(), 2u);
  const paged_attn_standin_launch &d = launches[0], &m = launches[1];
  EXPECT_EQ(d.kernel, kernel.decode);
  EXPECT_EQ(d.grid[0], unsigned(8 * kernel.ctasPerKVHead));
  EXPECT_EQ(d.grid[1], 3u);
  EXPECT_EQ(d.grid[2], 5u);
  EXPECT_FLOAT_EQ(paramAt<float>(d, d.param_bytes - 12), 0.25f);
  EXPECT_EQ(paramAt<int32_t>(d, d.param_bytes - 8), 5);
  EXPECT_EQ(paramAt<int32_t>(d, d.param_bytes - 4), 0);
  EXPECT_EQ(d.dynamic_shared_bytes, unsigned(kernel.dynamicShared));
  EXPECT_EQ(m.kernel, kernel.merge);
  EXPECT_EQ(m.grid[0], 32u);
  EXPECT_EQ(m.grid[1], 3u);
  EXPECT_EQ(m.grid[2], 1u);
  EXPECT_EQ(m.block[0], kernel.mergeBlock);
  EXPECT_EQ(m.dynamic_shared_bytes, 0u);
  EXPECT_EQ(m.programmatic, kernel.programmaticMerge ? 1 : 0);
  EXPECT_EQ(paramAt<int32_t>(m, m.param_bytes - 4), 5);
  // partial_out is the start of the workspace.
  EXPECT_EQ(paramAt<uint64_t>(m, 8), reinterpret_cast<uint64_t>(p.workspace));
}

// Host lengths plan the split: the grid takes the plan's count and the
// kernel its chunk length, and the merge follows.
TEST_F(StandinDriverTest, HostLengthsPlanTheSplit) {
  const int64_t batch = 8, maxPages = 1000;
  DecodeParams p = params(batch);
  p.blockTable = Tensor::contiguous(buffers.alloc(size_t(batch * maxPages * 4)),
                                    DType::I32, {batch, maxPages});
  const int64_t capacity = maxPages * config.pageSize;
  std::vector<int32_t> lengths = {16000, 12000, 9000, 7000,
                                  5000,  3000,  1000, 100};
  p.hostSeqLens = lengths.data();
  ASSERT_TRUE(decoder->maxWorkspaceSize(batch, capacity, &p.workspaceBytes));
  p.workspace = buffers.alloc(p.workspaceBytes);
  Status s = decoder->decode(p, nullptr);
  ASSERT_TRUE(s) << s.message();
  auto launches = standin.launches();
  ASSERT_EQ(launches.size(), 2u);
  const paged_attn_standin_launch &d = launches[0], &m = launches[1];
  int evenSplits = 0;
  ASSERT_TRUE(decoder->defaultNumSplits(batch, 16000, &evenSplits));
  int splits = int(d.grid[2]);
  EXPECT_GT(splits, evenSplits);
  int32_t chunk = paramAt<int32_t>(d, d.param_bytes - 4);
  EXPECT_EQ(paramAt<int32_t>(d, d.param_bytes - 8), splits);
  EXPECT_GT(chunk, 0);
  EXPECT_GE(int64_t(chunk) * splits, 16000);
  EXPECT_LT(int64_t(chunk) * (splits - 1), 16000);
  EXPECT_EQ(m.kernel, kernel.merge);
  EXPECT_EQ(paramAt<int32_t>(m, m.param_bytes - 4), splits);

  // The C API passes the lengths on.
  standin.clearLaunches();
  paged_attn_decode_params c = capi::toC(p);
  c.workspace = p.workspace;
  c.workspace_bytes = p.workspaceBytes;
  c.host_seq_lens = lengths.data();
  paged_attn_library cLib = nullptr;
  ASSERT_EQ(paged_attn_library_load(tcManifest().c_str(), &cLib), PAGED_ATTN_OK)
      << paged_attn_last_error();
  paged_attn_config cConfig = {32, 8, 128, 16, PAGED_ATTN_BF16, PAGED_ATTN_NHD,
                               0};
  paged_attn_decoder cDecoder = nullptr;
  ASSERT_EQ(paged_attn_decoder_create(cLib, &cConfig, &cDecoder), PAGED_ATTN_OK)
      << paged_attn_last_error();
  ASSERT_EQ(paged_attn_decode(cDecoder, &c, nullptr), PAGED_ATTN_OK)
      << paged_attn_last_error();
  launches = standin.launches();
  ASSERT_EQ(launches.size(), 2u);
  EXPECT_EQ(int(launches[0].grid[2]), splits);
  EXPECT_EQ(paramAt<int32_t>(launches[0], launches[0].param_bytes - 4), chunk);
  paged_attn_decoder_destroy(cDecoder);
  paged_attn_library_destroy(cLib);
}

TEST_F(StandinDriverTest, MergeLaunchesOneGridOnPermutedPartials) {
  std::shared_ptr<KernelLibrary> merges;
  ASSERT_TRUE(KernelLibrary::load(
      std::string(STANDIN_KERNEL_DIR) + "/merge.json", &merges));
  MergeConfig c = MergeConfig::forOp(32, 128, DType::BF16, true, true);
  std::unique_ptr<Merger> merger;
  Status s = Merger::create(merges, c, &merger);
  ASSERT_TRUE(s) << s.message();
  const int64_t n = 3, batch = 5, h = 32, d = 128;
  MergeParams p;
  p.partialOut = Tensor::contiguous(buffers.alloc(n * batch * h * d * 2),
                                    DType::BF16, {n, batch, h, d});
  p.partialLse = Tensor::contiguous(buffers.alloc(n * batch * h * 4),
                                    DType::F32, {n, batch, h});
  p.out = Tensor::contiguous(buffers.alloc(batch * h * d * 2), DType::BF16,
                             {batch, h, d});
  p.sinks = Tensor::contiguous(buffers.alloc(h * 4), DType::F32, {h});
  p.lse =
      Tensor::contiguous(buffers.alloc(batch * h * 4), DType::F32, {batch, h});
  s = merger->merge(p, nullptr);
  ASSERT_TRUE(s) << s.message();
  auto launches = standin.launches();
  ASSERT_EQ(launches.size(), 1u);
  const paged_attn_standin_launch &l = launches[0];
  EXPECT_EQ(std::string(l.kernel),
            "paged_attn_merge_op_h32_d128_bf16_ln_sinks_lse");
  // A thread per 16-byte column: 8 heads of 16 columns per CTA.
  EXPECT_EQ(l.grid[0], 4u);
  EXPECT_EQ(l.grid[1], 5u);
  EXPECT_EQ(l.grid[2], 1u);
  EXPECT_EQ(l.block[0], 128u);
  // partial_out's descriptor: pointers, offset, then sizes and strides as
  // the kernel's [batch, heads, N, head_dim] view of [N, batch, heads, D].
  EXPECT_EQ(paramAt<uint64_t>(l, 8),
            reinterpret_cast<uint64_t>(p.partialOut.data));
  const int64_t sizes[] = {batch, h, n, d};
  const int64_t strides[] = {h * d, d, batch * h * d, 1};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(paramAt<int64_t>(l, 24 + 8 * i), sizes[i]) << i;
    EXPECT_EQ(paramAt<int64_t>(l, 56 + 8 * i), strides[i]) << i;
  }

  // The C API launches the same.
  standin.clearLaunches();
  paged_attn_library cLib = nullptr;
  ASSERT_EQ(paged_attn_library_load(
                (std::string(STANDIN_KERNEL_DIR) + "/merge.json").c_str(),
                &cLib),
            PAGED_ATTN_OK);
  paged_attn_merge_config cConfig = {
      32, 128, PAGED_ATTN_BF16,
      PAGED_ATTN_VARIANT_SINKS | PAGED_ATTN_VARIANT_LSE};
  paged_attn_merger cMerger = nullptr;
  ASSERT_EQ(paged_attn_merger_create(cLib, &cConfig, &cMerger), PAGED_ATTN_OK)
      << paged_attn_last_error();
  paged_attn_merge_params cParams = capi::toC(p);
  ASSERT_EQ(paged_attn_merge(cMerger, &cParams, nullptr), PAGED_ATTN_OK)
      << paged_attn_last_error();
  ASSERT_EQ(standin.launchCount(), 1u);
  EXPECT_EQ(standin.launches()[0].grid[0], 4u);
  paged_attn_merger_destroy(cMerger);
  paged_attn_library_destroy(cLib);

  // No partials: still one grid (out 0, lse -inf); no sequences: none.
  standin.clearLaunches();
  p.partialOut.sizes[0] = p.partialLse.sizes[0] = 0;
  ASSERT_TRUE(merger->merge(p, nullptr));
  EXPECT_EQ(standin.launchCount(), 1u);
  standin.clearLaunches();
  p.partialOut.sizes[0] = p.partialLse.sizes[0] = n;
  for (Tensor *t : {&p.partialOut, &p.partialLse, &p.out, &p.lse})
    t->sizes[t == &p.partialOut || t == &p.partialLse ? 1 : 0] = 0;
  s = merger->merge(p, nullptr);
  ASSERT_TRUE(s) << s.message();
  EXPECT_EQ(standin.launchCount(), 0u);
}

TEST_F(StandinDriverTest, OptsIntoDynamicSharedMemory) {
  ASSERT_GT(kernel.dynamicShared, 48 * 1024)
      << "the tensor-core config should need the opt-in";
  DecodeParams p = params(2);
  ASSERT_TRUE(decoder->decode(p, nullptr));
  EXPECT_EQ(standin.optedInShared(kernel.decode.c_str()),
            int(kernel.dynamicShared));
}

TEST_F(StandinDriverTest, AutomaticSplitsFitMaxWorkspace) {
  for (int64_t batch : {1, 8, 64}) {
    for (int64_t maxSeqLen : {16, 1000, 32768}) {
      SCOPED_TRACE("batch " + std::to_string(batch) + ", max_seq_len " +
                   std::to_string(maxSeqLen));
      standin.clearLaunches();
      DecodeParams p = params(batch);
      p.blockTable.sizes[1] = (maxSeqLen + 15) / 16; // capacity only
      p.maxSeqLen = maxSeqLen;
      int splits = 0;
      ASSERT_TRUE(decoder->defaultNumSplits(batch, maxSeqLen, &splits));
      ASSERT_TRUE(
          decoder->maxWorkspaceSize(batch, maxSeqLen, &p.workspaceBytes));
      if (p.workspaceBytes)
        p.workspace = buffers.alloc(p.workspaceBytes);
      Status s = decoder->decode(p, nullptr);
      ASSERT_TRUE(s) << s.message();
      auto launches = standin.launches();
      ASSERT_EQ(launches.size(), splits > 1 ? 2u : 1u);
      EXPECT_EQ(launches[0].grid[2], unsigned(splits));
    }
  }
}

TEST_F(StandinDriverTest, EmptyBatchLaunchesNothing) {
  DecodeParams p = params(1);
  p.q.sizes[0] = p.out.sizes[0] = p.blockTable.sizes[0] = p.seqLens.sizes[0] =
      0;
  ASSERT_TRUE(decoder->decode(p, nullptr));
  EXPECT_EQ(standin.launchCount(), 0u);
}

TEST_F(StandinDriverTest, RejectsBatchBeyondGridBeforeLaunch) {
  DecodeParams p = params(1);
  for (Tensor *t : {&p.q, &p.out, &p.blockTable, &p.seqLens})
    t->sizes[0] = 65536;
  Status s = decoder->decode(p, nullptr);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
  EXPECT_NE(s.message().find("65535"), std::string::npos) << s.message();
  EXPECT_EQ(standin.launchCount(), 0u);
}

TEST_F(StandinDriverTest, RejectsSmallWorkspaceBeforeLaunch) {
  DecodeParams p = params(4);
  addWorkspace(p, 4);
  p.workspaceBytes -= 1;
  Status s = decoder->decode(p, nullptr);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
  EXPECT_NE(s.message().find("needs a workspace of"), std::string::npos)
      << s.message();
  p.workspace = nullptr;
  p.workspaceBytes = 1 << 20;
  s = decoder->decode(p, nullptr);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
  EXPECT_NE(s.message().find("(null)"), std::string::npos) << s.message();
  EXPECT_EQ(standin.launchCount(), 0u);
}

TEST_F(StandinDriverTest, CheckModeRunsAndReportsClean) {
  size_t before = standin.liveAllocations();
  DecodeParams p = params(3);
  p.checkPageTable = true;
  Status s = decoder->decode(p, nullptr);
  ASSERT_TRUE(s) << s.message();
  auto launches = standin.launches();
  ASSERT_EQ(launches.size(), 2u);
  EXPECT_EQ(launches[0].kernel, kernel.check);
  EXPECT_EQ(launches[0].grid[0], 3u);
  EXPECT_EQ(launches[0].block[0], kernel.checkBlock);
  EXPECT_EQ(launches[1].kernel, kernel.decode);
  // The check's 8-byte result buffer was freed.
  EXPECT_EQ(standin.liveAllocations(), before + buffers.allocations.size());
}

TEST_F(StandinDriverTest, CheckModeNeedsDeviceMemory) {
  DecodeParams p = params(2);
  std::vector<char> host(1 << 16);
  p.q.data = reinterpret_cast<void *>(
      (reinterpret_cast<uintptr_t>(host.data()) + 15) / 16 * 16);
  p.checkPageTable = true;
  Status s = decoder->decode(p, nullptr);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
  EXPECT_EQ(s.message(), "q is not device memory");
  EXPECT_EQ(standin.launchCount(), 0u);
}

TEST_F(StandinDriverTest, CheckModeRejectsMoreThanInt32Pages) {
  DecodeParams p = params(2);
  p.kCache.sizes[0] = p.vCache.sizes[0] = int64_t(1) << 31;
  p.checkPageTable = true;
  Status s = decoder->decode(p, nullptr);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
  EXPECT_EQ(s.message(), "more than 2^31 pages");
  // The check's result key counts max_pages + 1 entries per sequence.
  p = params(2);
  p.blockTable.sizes[1] = int64_t(1) << 31;
  p.checkPageTable = true;
  s = decoder->decode(p, nullptr);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
  EXPECT_EQ(s.message(), "more than 2^31 pages per sequence");
  EXPECT_EQ(standin.launchCount(), 0u);
}

TEST_F(StandinDriverTest, CheckModeReportsDriverErrors) {
  DecodeParams p = params(2);
  p.checkPageTable = true;
  standin.failNext("cuMemAlloc_v2", 2);
  Status s = decoder->decode(p, nullptr);
  EXPECT_EQ(s.code(), StatusCode::CudaError);
  EXPECT_EQ(s.message(), "cuMemAlloc: CUDA_ERROR_OUT_OF_MEMORY: out of memory");
  standin.failNext("cuStreamSynchronize", 700);
  s = decoder->decode(p, nullptr);
  EXPECT_EQ(s.code(), StatusCode::CudaError);
  EXPECT_NE(s.message().find("CUDA_ERROR_ILLEGAL_ADDRESS"), std::string::npos)
      << s.message();
}

TEST_F(StandinDriverTest, GraphCaptureReplaysTheLaunches) {
  void *stream = nullptr, *graph = nullptr, *exec = nullptr;
  ASSERT_EQ(standin.streamCreate(&stream, 0), 0);
  DecodeParams p = params(2);
  addWorkspace(p, 2);
  ASSERT_EQ(standin.beginCapture(stream, 0), 0);
  Status s = decoder->decode(p, stream);
  ASSERT_TRUE(s) << s.message();
  ASSERT_EQ(standin.endCapture(stream, &graph), 0)
      << "decode synchronised or allocated during capture";
  EXPECT_EQ(standin.launchCount(), 0u);
  ASSERT_EQ(standin.instantiate(&exec, graph, 0), 0);
  ASSERT_EQ(standin.graphLaunch(exec, stream), 0);
  ASSERT_EQ(standin.graphLaunch(exec, stream), 0);
  auto launches = standin.launches();
  ASSERT_EQ(launches.size(), 4u);
  for (const paged_attn_standin_launch &l : launches) {
    EXPECT_TRUE(l.from_graph);
    EXPECT_EQ(l.stream, stream);
  }
  EXPECT_EQ(launches[0].kernel, kernel.decode);
  EXPECT_EQ(launches[1].kernel, kernel.merge);
  standin.graphExecDestroy(exec);
  standin.graphDestroy(graph);

  // Check mode allocates and synchronises: capture rejects it.
  p.checkPageTable = true;
  ASSERT_EQ(standin.beginCapture(stream, 0), 0);
  s = decoder->decode(p, stream);
  EXPECT_EQ(s.code(), StatusCode::CudaError);
  EXPECT_NE(s.message().find("CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED"),
            std::string::npos)
      << s.message();
  EXPECT_NE(standin.endCapture(stream, &graph), 0);
  standin.streamDestroy(stream);
}

TEST_F(StandinDriverTest, LaunchBeyondDeviceLimitsIsAStatus) {
  // A device whose grids hold at most 2 sequences: the runtime checks the
  // batch against 65535 only, so the driver has the last word.
  paged_attn_standin_device small = h100;
  small.grid_dims[1] = 2;
  standin.setDevice(&small);
  DecodeParams p = params(4);
  Status s = decoder->decode(p, nullptr);
  EXPECT_EQ(s.code(), StatusCode::CudaError);
  EXPECT_EQ(s.message(), "launching " + kernel.decode +
                             ": CUDA_ERROR_INVALID_VALUE: invalid argument");
  EXPECT_EQ(standin.launchCount(), 0u);
}

TEST_F(StandinDriverTest, DecodeIsProgrammaticWhereItsGridFillsEverySM) {
  // Two CTAs an SM: the decode grid is launched programmatically (scheduled
  // while the grid before it drains) only where it has more CTAs than the
  // 132 SMs, so that no SM ends up with two while another has none.
  ASSERT_TRUE(kernel.programmaticDecode);
  paged_attn_standin_device twoPerSM = h100;
  twoPerSM.blocks_per_multiprocessor = 2;
  standin.setDevice(&twoPerSM);
  const int64_t ctasPerSeq = 8 * kernel.ctasPerKVHead;
  const int64_t oneWave = 132 / ctasPerSeq;
  ASSERT_GE(oneWave, 1);
  for (int64_t batch : {int64_t(1), oneWave, oneWave + 1, 2 * oneWave + 1}) {
    standin.clearLaunches();
    DecodeParams p = params(batch);
    p.numSplits = 1;
    Status s = decoder->decode(p, nullptr);
    ASSERT_TRUE(s) << s.message();
    auto launches = standin.launches();
    ASSERT_EQ(launches.size(), 1u);
    EXPECT_EQ(launches[0].programmatic, batch * ctasPerSeq > 132 ? 1 : 0)
        << batch << " sequences";
  }
  // Split: the splits count as CTAs too, and the merge is programmatic
  // whatever its grid (it only waits on the device).
  standin.clearLaunches();
  DecodeParams p = params(2);
  addWorkspace(p, int(oneWave));
  Status s = decoder->decode(p, nullptr);
  ASSERT_TRUE(s) << s.message();
  auto launches = standin.launches();
  ASSERT_EQ(launches.size(), 2u);
  EXPECT_EQ(launches[0].programmatic, 2 * oneWave * ctasPerSeq > 132 ? 1 : 0);
  EXPECT_EQ(launches[1].programmatic, kernel.programmaticMerge ? 1 : 0);
}

TEST_F(StandinDriverTest, LaunchFailureNamesTheKernel) {
  // On sm_90 the decode (its grid filling every SM here) and the merge are
  // both cuLaunchKernelEx calls.
  ASSERT_TRUE(kernel.programmaticDecode);
  ASSERT_TRUE(kernel.programmaticMerge);
  DecodeParams p = params(8);
  addWorkspace(p, 32);
  const std::string outOfResources =
      ": CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: too many resources requested "
      "for launch";
  standin.failNext("cuLaunchKernelEx", 701);
  Status s = decoder->decode(p, nullptr);
  EXPECT_EQ(s.code(), StatusCode::CudaError);
  EXPECT_EQ(s.message(), "launching " + kernel.decode + outOfResources);
  EXPECT_EQ(standin.launchCount(), 0u);
  standin.failAfter("cuLaunchKernelEx", 1, 701);
  s = decoder->decode(p, nullptr);
  EXPECT_EQ(s.code(), StatusCode::CudaError);
  EXPECT_EQ(s.message(), "launching " + kernel.merge + outOfResources);
  EXPECT_EQ(standin.launchCount(), 1u);
}

TEST_F(StandinDriverTest, DeviceWithLessSharedMemoryIsAStatus) {
  // 64 KiB: less than the tensor-core kernel's three stages (96 KiB).
  paged_attn_standin_device small = h100;
  small.shared_per_block_optin = 64 * 1024;
  standin.setDevice(&small);
  DecodeParams p = params(2);
  Status s = decoder->decode(p, nullptr);
  EXPECT_EQ(s.code(), StatusCode::CudaError);
  EXPECT_EQ(s.message(), "kernel '" + kernel.decode + "' needs " +
                             std::to_string(kernel.dynamicShared) +
                             " bytes of shared memory, this device allows " +
                             std::to_string(64 * 1024) +
                             ": CUDA_ERROR_INVALID_VALUE: invalid argument");
  EXPECT_EQ(standin.launchCount(), 0u);
}

/// A copy of the tensor-core manifest next to `ptx` in a fresh directory.
std::string manifestWithPtx(const std::string &name, const std::string &ptx) {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() /
      ("paged-attn-standin-" + std::to_string(getpid())) / name;
  std::filesystem::create_directories(dir);
  writeText(dir / "tc.json",
            readText(std::string(STANDIN_KERNEL_DIR) + "/tc.json"));
  writeText(dir / "tc.ptx", ptx);
  return dir / "tc.json";
}

/// `ptx` with the first occurrence of `from` replaced by `to`.
std::string replaced(std::string ptx, const std::string &from,
                     const std::string &to) {
  size_t at = ptx.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos)
    ptx.replace(at, from.size(), to);
  return ptx;
}

// PTX that the load's checks take (it has its directives and entries) but
// the JIT refuses: the error carries the JIT's log.
TEST_F(StandinDriverTest, JitErrorsCarryTheLog) {
  std::string ptx = readText(std::string(STANDIN_KERNEL_DIR) + "/tc.ptx");
  size_t version = ptx.find(".version ");
  ASSERT_NE(version, std::string::npos);
  std::string versionLine =
      ptx.substr(version, ptx.find('\n', version) - version);
  struct Case {
    const char *name;
    std::string ptx, error, log;
  } cases[] = {
      {"new-isa", replaced(ptx, versionLine, ".version 9.9"),
       "CUDA_ERROR_UNSUPPORTED_PTX_VERSION", "Unsupported .version 9.9"},
      {"new-target", replaced(ptx, ".target sm_90", ".target sm_100"),
       "CUDA_ERROR_INVALID_PTX", "sm_100"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.name);
    std::shared_ptr<KernelLibrary> lib;
    Status s = KernelLibrary::load(manifestWithPtx(c.name, c.ptx), &lib);
    ASSERT_TRUE(s) << s.message();
    std::unique_ptr<Decoder> d;
    ASSERT_TRUE(Decoder::create(lib, config, &d));
    size_t bytes = 0;
    s = d->maxWorkspaceSize(4, 1024, &bytes);
    EXPECT_EQ(s.code(), StatusCode::CudaError);
    EXPECT_NE(s.message().find("loading PTX failed: " + c.error),
              std::string::npos)
        << s.message();
    EXPECT_NE(s.message().find("JIT log:"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(c.log), std::string::npos) << s.message();
  }
}

// What is not PTX, or lacks a kernel the manifest lists, is refused when
// loaded, before any driver call.
TEST_F(StandinDriverTest, PtxWithoutTheKernelsIsRefusedAtLoad) {
  std::string ptx = readText(std::string(STANDIN_KERNEL_DIR) + "/tc.ptx");
  for (size_t at = 0; (at = ptx.find(kernel.merge, at)) != std::string::npos;)
    ptx[at + kernel.merge.size() - 1] ^= 1; // rename the merge entry
  std::shared_ptr<KernelLibrary> lib;
  std::string manifest = manifestWithPtx("no-merge", ptx);
  Status s = KernelLibrary::load(manifest, &lib);
  EXPECT_EQ(s.code(), StatusCode::ParseError);
  std::string ptxPath = manifest.substr(0, manifest.size() - 5) + ".ptx";
  EXPECT_EQ(s.message(), "PTX '" + ptxPath + "' named by '" + manifest +
                             "' has no kernel '" + kernel.merge +
                             "' (no .entry of that name)");
  s = KernelLibrary::load(manifestWithPtx("not-ptx", "garbage"), &lib);
  EXPECT_EQ(s.code(), StatusCode::ParseError);
  EXPECT_NE(s.message().find("is not PTX (no .version directive)"),
            std::string::npos)
      << s.message();
  EXPECT_EQ(standin.launchCount(), 0u);
}

// Should the driver still not find a kernel the PTX defines, the launch
// fails with NotFound naming it.
TEST_F(StandinDriverTest, MissingEntryIsNotFound) {
  DecodeParams p = params(1);
  standin.failNext("cuModuleGetFunction", 500);
  Status s = decoder->decode(p, nullptr);
  EXPECT_EQ(s.code(), StatusCode::NotFound);
  EXPECT_EQ(s.message(), "kernel '" + kernel.decode +
                             "' not in its PTX: CUDA_ERROR_NOT_FOUND: named "
                             "symbol not found");
  EXPECT_EQ(standin.launchCount(), 0u);
}

TEST_F(StandinDriverTest, CudaCoreKernelOnAnOlderChip) {
  // Compiled for sm_80: several CTAs per KV head, static shared memory, and
  // a decode and a merge launched without programmatic serialization.
  std::shared_ptr<KernelLibrary> lib;
  ASSERT_TRUE(KernelLibrary::load(ccManifest(), &lib));
  ManifestKernel k = readManifest(ccManifest());
  KernelConfig c = lib->configs().at(0);
  std::unique_ptr<Decoder> d;
  ASSERT_TRUE(Decoder::create(lib, c, &d));
  DecodeParams p = params(5, c);
  p.numSplits = 2;
  p.workspaceBytes = d->workspaceSize(5, 2);
  p.workspace = buffers.alloc(p.workspaceBytes);
  Status s = d->decode(p, nullptr);
  ASSERT_TRUE(s) << s.message();
  auto launches = standin.launches();
  ASSERT_EQ(launches.size(), 2u);
  EXPECT_EQ(launches[0].grid[0], unsigned(c.numKVHeads * k.ctasPerKVHead));
  EXPECT_EQ(launches[0].grid[1], 5u);
  EXPECT_EQ(launches[0].grid[2], 2u);
  EXPECT_EQ(launches[0].programmatic, 0);
  EXPECT_EQ(launches[1].kernel, k.merge);
  EXPECT_EQ(launches[1].grid[0], unsigned(c.numHeads));
  EXPECT_EQ(launches[1].programmatic, 0);
}

TEST_F(StandinDriverTest, ConcurrentDecodesOnSeveralStreams) {
  constexpr int kThreads = 4, kCalls = 25;
  DecodeParams p = params(2);
  addWorkspace(p, 2);
  void *streams[kThreads];
  for (void *&stream : streams)
    ASSERT_EQ(standin.streamCreate(&stream, 1), 0);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCalls; ++i)
        if (!decoder->decode(p, streams[t]))
          ++failures;
    });
  for (std::thread &t : threads)
    t.join();
  EXPECT_EQ(failures.load(), 0);
  auto launches = standin.launches();
  EXPECT_EQ(launches.size(), size_t(2 * kThreads * kCalls));
  for (void *stream : streams) {
    size_t n = 0;
    for (const paged_attn_standin_launch &l : launches)
      n += l.stream == stream;
    EXPECT_EQ(n, size_t(2 * kCalls));
    standin.streamDestroy(stream);
  }
}

/// Checks the memref descriptor at byte `at` of `l`'s parameters: `t`'s
/// pointer (allocated and aligned), offset 0, sizes and strides.
void expectDescriptor(const paged_attn_standin_launch &l, size_t at,
                      const Tensor &t) {
  EXPECT_EQ(paramAt<uint64_t>(l, at), reinterpret_cast<uint64_t>(t.data));
  EXPECT_EQ(paramAt<uint64_t>(l, at + 8), reinterpret_cast<uint64_t>(t.data));
  EXPECT_EQ(paramAt<int64_t>(l, at + 16), 0);
  for (int d = 0; d < t.rank; ++d) {
    EXPECT_EQ(paramAt<int64_t>(l, at + 24 + 8 * d), t.sizes[d]) << d;
    EXPECT_EQ(paramAt<int64_t>(l, at + 24 + 8 * (t.rank + d)), t.strides[d])
        << d;
  }
}

// A quantised decode packs k_scale and v_scale after everything else, as
// the Spec lists them: the stand-in checks the buffer against the PTX's
// parameter space, and the descriptors are the caller's tensors.
TEST_F(StandinDriverTest, QuantisedDecodePacksTheScalesLast) {
  std::shared_ptr<KernelLibrary> lib;
  ASSERT_TRUE(KernelLibrary::load(fp8TcManifest(), &lib));
  ManifestKernel k = readManifest(fp8TcManifest());
  KernelConfig c = lib->configs().at(0);
  ASSERT_TRUE(c.kvQuant);
  EXPECT_EQ(c.name(), "h32_kv8_d128_p16_bf16_nhd_w4_f8e4m3fn_token");
  std::unique_ptr<Decoder> d;
  ASSERT_TRUE(Decoder::create(lib, c, &d));
  DecodeParams p = params(3, c);
  ASSERT_EQ(p.kScale.rank, 3);
  p.numSplits = 3;
  p.scale = 0.5f;
  p.workspaceBytes = d->workspaceSize(3, 3);
  p.workspace = buffers.alloc(p.workspaceBytes);
  // K's and V's per-token scales interleaved in one [pages, page,
  // kv_heads, 2] pool: strided views.
  p.kScale.data = buffers.alloc(16 * 16 * 8 * 2 * 4);
  p.kScale.strides[0] *= 2;
  p.kScale.strides[1] *= 2;
  p.kScale.strides[2] = 2;
  p.vScale = p.kScale;
  p.vScale.data = static_cast<char *>(p.kScale.data) + 4;
  Status s = d->decode(p, nullptr);
  ASSERT_TRUE(s) << s.message();
  auto launches = standin.launches();
  ASSERT_EQ(launches.size(), 2u);
  const paged_attn_standin_launch &l = launches[0];
  EXPECT_EQ(l.kernel, k.decode);
  EXPECT_EQ(l.grid[0], unsigned(8 * k.ctasPerKVHead));
  EXPECT_EQ(l.grid[1], 3u);
  EXPECT_EQ(l.grid[2], 3u);
  // Two rank-3 descriptors (9 slots each) end the buffer, after scale,
  // num_splits and split_chunk (and 4 bytes of padding).
  const size_t descriptor = 8 * (3 + 2 * 3);
  size_t kAt = l.param_bytes - 2 * descriptor;
  expectDescriptor(l, kAt, p.kScale);
  expectDescriptor(l, kAt + descriptor, p.vScale);
  EXPECT_FLOAT_EQ(paramAt<float>(l, kAt - 16), 0.5f);
  EXPECT_EQ(paramAt<int32_t>(l, kAt - 12), 3);
  EXPECT_EQ(paramAt<int32_t>(l, kAt - 8), 0);
  // k_cache's fp8 descriptor follows q's (rank 3, as the scales').
  expectDescriptor(l, descriptor, p.kCache);
  EXPECT_EQ(launches[1].kernel, k.merge);

  // The C API passes the same.
  standin.clearLaunches();
  paged_attn_library cLib = nullptr;
  ASSERT_EQ(paged_attn_library_load(fp8TcManifest().c_str(), &cLib),
            PAGED_ATTN_OK)
      << paged_attn_last_error();
  paged_attn_config cConfig = {32, 8, 128, 16, PAGED_ATTN_BF16, PAGED_ATTN_NHD,
                               0};
  cConfig.kv_scale = PAGED_ATTN_KV_SCALE_TOKEN;
  cConfig.kv_dtype = PAGED_ATTN_F8E4M3FN;
  paged_attn_decoder cDecoder = nullptr;
  ASSERT_EQ(paged_attn_decoder_create(cLib, &cConfig, &cDecoder), PAGED_ATTN_OK)
      << paged_attn_last_error();
  paged_attn_decode_params cParams = capi::toC(p);
  cParams.num_splits = 1;
  ASSERT_EQ(paged_attn_decode(cDecoder, &cParams, nullptr), PAGED_ATTN_OK)
      << paged_attn_last_error();
  launches = standin.launches();
  ASSERT_EQ(launches.size(), 1u);
  expectDescriptor(launches[0], kAt, p.kScale);
  expectDescriptor(launches[0], kAt + descriptor, p.vScale);
  // Without its scales the launch never happens.
  standin.clearLaunches();
  cParams.k_scale = paged_attn_tensor{};
  EXPECT_EQ(paged_attn_decode(cDecoder, &cParams, nullptr),
            PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_STREQ(paged_attn_last_error(), "k_scale is a null pointer");
  EXPECT_EQ(standin.launchCount(), 0u);
  paged_attn_decoder_destroy(cDecoder);
  paged_attn_library_destroy(cLib);
}

// Per-tensor scales are rank-0 descriptors (pointers and offset), on the
// CUDA-core kernel of an older chip.
TEST_F(StandinDriverTest, PerTensorScalesAreRankZero) {
  std::shared_ptr<KernelLibrary> lib;
  ASSERT_TRUE(KernelLibrary::load(fp8CcManifest(), &lib));
  ManifestKernel k = readManifest(fp8CcManifest());
  KernelConfig c = lib->configs().at(0);
  ASSERT_TRUE(c.kvQuant);
  EXPECT_EQ(c.name(), "h16_kv2_d64_p16_f16_hnd_w4_f8e5m2_tensor");
  std::unique_ptr<Decoder> d;
  ASSERT_TRUE(Decoder::create(lib, c, &d));
  DecodeParams p = params(5, c);
  ASSERT_EQ(p.kScale.rank, 0);
  p.numSplits = 1;
  Status s = d->decode(p, nullptr);
  ASSERT_TRUE(s) << s.message();
  auto launches = standin.launches();
  ASSERT_EQ(launches.size(), 1u);
  const paged_attn_standin_launch &l = launches[0];
  EXPECT_EQ(l.kernel, k.decode);
  EXPECT_EQ(l.grid[0], unsigned(2 * k.ctasPerKVHead));
  EXPECT_EQ(l.grid[1], 5u);
  expectDescriptor(l, l.param_bytes - 48, p.kScale);
  expectDescriptor(l, l.param_bytes - 24, p.vScale);
  EXPECT_EQ(paramAt<int32_t>(l, l.param_bytes - 60), 1);
}

TEST_F(StandinDriverTest, CApiLaunchesAndReportsErrors) {
  paged_attn_library lib = nullptr;
  ASSERT_EQ(paged_attn_library_load(tcManifest().c_str(), &lib), PAGED_ATTN_OK)
      << paged_attn_last_error();
  paged_attn_config c = {32, 8, 128, 16, PAGED_ATTN_BF16, PAGED_ATTN_NHD, 0};
  paged_attn_decoder dec = nullptr;
  ASSERT_EQ(paged_attn_decoder_create(lib, &c, &dec), PAGED_ATTN_OK)
      << paged_attn_last_error();

  DecodeParams cpp = params(3);
  paged_attn_decode_params p = capi::toC(cpp);
  ASSERT_EQ(
      paged_attn_decoder_max_workspace_size(dec, 3, 64, &p.workspace_bytes),
      PAGED_ATTN_OK);
  if (p.workspace_bytes)
    p.workspace = buffers.alloc(p.workspace_bytes);
  p.max_seq_len = 64;
  p.check_page_table = 1;
  ASSERT_EQ(paged_attn_decode(dec, &p, nullptr), PAGED_ATTN_OK)
      << paged_attn_last_error();
  auto launches = standin.launches();
  ASSERT_GE(launches.size(), 2u);
  EXPECT_EQ(launches[0].kernel, kernel.check);
  EXPECT_EQ(launches[1].kernel, kernel.decode);
  EXPECT_EQ(launches[1].grid[1], 3u);

  // A driver error comes back as a status with the driver's name for it
  // (3 sequences leave most SMs free: the decode is a plain launch).
  standin.failNext("cuLaunchKernel", 1);
  p.check_page_table = 0;
  EXPECT_EQ(paged_attn_decode(dec, &p, nullptr), PAGED_ATTN_CUDA_ERROR);
  EXPECT_NE(
      std::string(paged_attn_last_error()).find("CUDA_ERROR_INVALID_VALUE"),
      std::string::npos)
      << paged_attn_last_error();
  // And a bad argument never reaches the driver.
  standin.clearLaunches();
  p.q.sizes[0] = p.out.sizes[0] = p.block_table.sizes[0] = p.seq_lens.sizes[0] =
      70000;
  EXPECT_EQ(paged_attn_decode(dec, &p, nullptr), PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_NE(std::string(paged_attn_last_error()).find("65535"),
            std::string::npos);
  EXPECT_EQ(standin.launchCount(), 0u);
  paged_attn_decoder_destroy(dec);
  paged_attn_library_destroy(lib);
}

} // namespace
