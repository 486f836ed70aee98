//===- MgpuTest.cpp - libpaged_attn_mgpu against the stand-in driver ------===//
//
// The mgpu* functions (PagedAttn-c/Mgpu.h) as MLIR's host code calls them,
// against test/standin-driver (PAGED_ATTN_CUDA_DRIVER): what each one asks
// of the driver, and what it reports when the driver or its caller gets
// something wrong. The lit tests run whole lowered programs; these reach
// the paths those programs do not take (events, host registration, managed
// memory, clusters, failures).
//
//===----------------------------------------------------------------------===//

#include "StandinDriver.h"

#include "PagedAttn-c/Mgpu.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

/// The stand-in's inspection API, from the instance libpaged_attn_mgpu
/// loaded.
struct Standin {
  decltype(&paged_attn_standin_launch_count) launchCount;
  decltype(&paged_attn_standin_get_launch) getLaunch;
  decltype(&paged_attn_standin_clear_launches) clearLaunches;
  decltype(&paged_attn_standin_opted_in_shared) optedInShared;
  decltype(&paged_attn_standin_live_allocations) liveAllocations;
  decltype(&paged_attn_standin_live_modules) liveModules;
  decltype(&paged_attn_standin_fail_next) failNext;
  int (*funcGetParamInfo)(void *, size_t, size_t *, size_t *);
};

std::string readFile(const std::string &path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class MgpuTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    // The first call loads the driver; the stand-in is then in the process.
    mgpuStreamDestroy(mgpuStreamCreate());
    const char *path = std::getenv("PAGED_ATTN_CUDA_DRIVER");
    ASSERT_TRUE(path) << "PAGED_ATTN_CUDA_DRIVER names the stand-in";
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
    sym(standin.optedInShared, "paged_attn_standin_opted_in_shared");
    sym(standin.liveAllocations, "paged_attn_standin_live_allocations");
    sym(standin.liveModules, "paged_attn_standin_live_modules");
    sym(standin.failNext, "paged_attn_standin_fail_next");
    sym(standin.funcGetParamInfo, "cuFuncGetParamInfo");

    ptx = readFile(std::string(STANDIN_KERNEL_DIR) + "/merge.ptx");
    size_t at = ptx.find(".entry ");
    ASSERT_NE(at, std::string::npos);
    at += 7;
    kernel = ptx.substr(at, ptx.find('(', at) - at);
  }

  void SetUp() override {
    standin.clearLaunches();
    errorsBefore = paged_attn_mgpu_error_count();
  }

  uint64_t newErrors() const {
    return paged_attn_mgpu_error_count() - errorsBefore;
  }

  /// The number of parameters `function` declares.
  static size_t paramCount(mgpu_function function) {
    size_t n = 0, offset, size;
    while (standin.funcGetParamInfo(function, n, &offset, &size) == 0)
      ++n;
    return n;
  }

  static Standin standin;
  static std::string ptx, kernel;
  uint64_t errorsBefore = 0;
};

Standin MgpuTest::standin;
std::string MgpuTest::ptx, MgpuTest::kernel;

TEST_F(MgpuTest, LoadsPtxAndLaunchesWithOptInAndCheckedArgumentCount) {
  size_t modulesBefore = standin.liveModules();
  mgpu_module module = mgpuModuleLoadJIT(ptx.c_str(), 3);
  ASSERT_TRUE(module);
  EXPECT_EQ(standin.liveModules(), modulesBefore + 1);
  mgpu_function function = mgpuModuleGetFunction(module, kernel.c_str());
  ASSERT_TRUE(function);
  size_t count = paramCount(function);
  ASSERT_GT(count, 0u);

  // Every argument points at zeros, which is all the stand-in reads.
  std::vector<uint64_t> zeros(count, 0);
  std::vector<void *> params(count);
  for (size_t i = 0; i < count; ++i)
    params[i] = &zeros[i];
  mgpu_stream stream = mgpuStreamCreate();
  // 64 KiB of dynamic shared memory needs the opt-in, made once.
  mgpuLaunchKernel(function, 2, 3, 1, 64, 1, 1, 65536, stream, params.data(),
                   nullptr, count);
  mgpuLaunchKernel(function, 1, 1, 1, 32, 1, 1, 1024, stream, params.data(),
                   nullptr, count);
  mgpuStreamSynchronize(stream);
  EXPECT_EQ(newErrors(), 0u);
  ASSERT_EQ(standin.launchCount(), 2u);
  paged_attn_standin_launch l;
  standin.getLaunch(0, &l);
  EXPECT_EQ(kernel, l.kernel);
  EXPECT_EQ(l.grid[0], 2u);
  EXPECT_EQ(l.grid[1], 3u);
  EXPECT_EQ(l.block[0], 64u);
  EXPECT_EQ(l.dynamic_shared_bytes, 65536u);
  EXPECT_EQ(l.stream, static_cast<void *>(stream));
  EXPECT_EQ(l.param_count, count);
  EXPECT_EQ(standin.optedInShared(kernel.c_str()), 65536);

  // A count that is not the kernel's is refused before the driver sees it,
  // too few or too many.
  testing::internal::CaptureStderr();
  mgpuLaunchKernel(function, 1, 1, 1, 32, 1, 1, 0, stream, params.data(),
                   nullptr, count - 1);
  mgpuLaunchKernel(function, 1, 1, 1, 32, 1, 1, 0, stream, params.data(),
                   nullptr, count + 1);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(newErrors(), 2u);
  EXPECT_EQ(standin.launchCount(), 2u);
  for (size_t passed : {count - 1, count + 1})
    EXPECT_NE(err.find("mgpuLaunchKernel: the launch passes " +
                       std::to_string(passed) + " arguments, '" + kernel +
                       "' takes " + std::to_string(count)),
              std::string::npos)
        << err;

  // Sizes MLIR's index could hold but the driver's unsigned cannot, and
  // shared memory past the device's opt-in limit.
  testing::internal::CaptureStderr();
  mgpuLaunchKernel(function, int64_t(1) << 32, 1, 1, 32, 1, 1, 0, stream,
                   params.data(), nullptr, count);
  mgpuLaunchKernel(function, 1, 1, 1, 0, 1, 1, 0, stream, params.data(),
                   nullptr, count);
  mgpuLaunchKernel(function, 1, 1, 1, 32, 1, 1, 1 << 20, stream, params.data(),
                   nullptr, count);
  err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(newErrors(), 5u);
  EXPECT_EQ(standin.launchCount(), 2u);
  EXPECT_NE(err.find("grid size 4294967296 in dimension x is not in [1, "
                     "2^32)"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("block size 0 in dimension x"), std::string::npos) << err;
  EXPECT_NE(err.find("asks for 1048576 bytes of dynamic shared memory; the "
                     "device allows 232448"),
            std::string::npos)
      << err;

  // Thread-block clusters go through cuLaunchKernelEx.
  mgpuLaunchClusterKernel(function, 2, 1, 1, 4, 1, 1, 64, 1, 1, 0, stream,
                          params.data(), nullptr);
  EXPECT_EQ(newErrors(), 5u);
  ASSERT_EQ(standin.launchCount(), 3u);
  standin.getLaunch(2, &l);
  EXPECT_EQ(l.grid[0], 4u);

  mgpuStreamDestroy(stream);
  mgpuModuleUnload(module);
  EXPECT_EQ(standin.liveModules(), modulesBefore);
  EXPECT_EQ(newErrors(), 5u);
}

TEST_F(MgpuTest, ReportsTheJitLogAndMissingKernels) {
  testing::internal::CaptureStderr();
  EXPECT_FALSE(mgpuModuleLoadJIT("this is not PTX", 3));
  EXPECT_FALSE(mgpuModuleLoadJIT(ptx.c_str(), 7));
  mgpu_module module = mgpuModuleLoadJIT(ptx.c_str(), 0);
  ASSERT_TRUE(module);
  EXPECT_FALSE(mgpuModuleGetFunction(module, "no_such_kernel"));
  EXPECT_FALSE(mgpuModuleGetFunction(nullptr, "any"));
  mgpuLaunchKernel(nullptr, 1, 1, 1, 1, 1, 1, 0, nullptr, nullptr, nullptr, 0);
  mgpuModuleUnload(module);
  mgpuModuleUnload(nullptr); // a failed load's destructor: not an error
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(newErrors(), 5u) << err;
  EXPECT_NE(err.find("paged_attn_mgpu: mgpuModuleLoadJIT: cuModuleLoadDataEx "
                     "failed: CUDA_ERROR_INVALID_IMAGE"),
            std::string::npos)
      << err;
  // The JIT's own log follows the error.
  EXPECT_NE(err.find("ptxas application ptx input"), std::string::npos) << err;
  EXPECT_NE(err.find("JIT optimisation level 7 is not 0 to 4"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("cuModuleGetFunction('no_such_kernel') failed: "
                     "CUDA_ERROR_NOT_FOUND"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("no module to find 'any' in (its load failed)"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("mgpuLaunchKernel: no kernel (its lookup failed)"),
            std::string::npos)
      << err;
}

TEST_F(MgpuTest, CopiesSetsAndFreesOnStreams) {
  size_t live = standin.liveAllocations();
  mgpu_stream stream = mgpuStreamCreate();
  auto *a = static_cast<uint16_t *>(mgpuMemAlloc(64, stream, 0));
  auto *b = static_cast<uint32_t *>(mgpuMemAlloc(64, stream, 1)); // managed
  ASSERT_TRUE(a && b);
  EXPECT_EQ(mgpuMemAlloc(0, stream, 0), nullptr); // nothing to allocate
  EXPECT_EQ(standin.liveAllocations(), live + 2);
  mgpuMemset16(a, 0xBEEF, 32, stream);
  mgpuMemset32(b, 0x12345678u, 16, stream);
  uint16_t ha[32];
  uint32_t hb[16];
  mgpuMemcpy(ha, a, sizeof(ha), stream);
  mgpuMemcpy(hb, b, sizeof(hb), stream);
  mgpuStreamSynchronize(stream);
  for (uint16_t x : ha)
    EXPECT_EQ(x, 0xBEEF);
  for (uint32_t x : hb)
    EXPECT_EQ(x, 0x12345678u);
  mgpuMemFree(a, stream);
  mgpuMemFree(b, nullptr); // no stream: waits for the device
  mgpuMemFree(nullptr, stream);
  EXPECT_EQ(standin.liveAllocations(), live);

  // Events order one stream after another.
  mgpu_stream other = mgpuStreamCreate();
  mgpu_event event = mgpuEventCreate();
  ASSERT_TRUE(event);
  mgpuEventRecord(event, stream);
  mgpuStreamWaitEvent(other, event);
  mgpuEventSynchronize(event);
  mgpuEventDestroy(event);
  mgpuStreamDestroy(other);
  mgpuStreamDestroy(stream);
  EXPECT_EQ(newErrors(), 0u);

  // A driver failure names the wrapper, the call and the error.
  standin.failNext("cuMemAlloc_v2", 2);
  testing::internal::CaptureStderr();
  EXPECT_EQ(mgpuMemAlloc(1024, nullptr, 0), nullptr);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(newErrors(), 1u);
  EXPECT_NE(err.find("paged_attn_mgpu: mgpuMemAlloc: cuMemAlloc(1024 bytes) "
                     "failed: CUDA_ERROR_OUT_OF_MEMORY: out of memory"),
            std::string::npos)
      << err;
}

TEST_F(MgpuTest, RegistersDenseMemRefs) {
  // A memref<2x3xf32> descriptor over host memory, dense and then strided.
  float data[12] = {};
  struct {
    float *allocated, *aligned;
    int64_t offset, sizes[2], strides[2];
  } m = {data, data, 2, {2, 3}, {3, 1}};
  mgpuMemHostRegisterMemRef(2, &m, sizeof(float));
  mgpuMemHostUnregisterMemRef(2, &m, sizeof(float));
  EXPECT_EQ(newErrors(), 0u);

  testing::internal::CaptureStderr();
  mgpuMemHostUnregisterMemRef(2, &m, sizeof(float)); // not registered now
  m.strides[0] = 6;
  mgpuMemHostRegisterMemRef(2, &m, sizeof(float));
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(newErrors(), 2u);
  EXPECT_NE(err.find("cuMemHostUnregister failed: "
                     "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("mgpuMemHostRegisterMemRef: memref dimension 0 has "
                     "stride 6; only dense memrefs can be registered"),
            std::string::npos)
      << err;
}

TEST_F(MgpuTest, ActsOnTheDefaultDevice) {
  // The stand-in has one device: another default is refused, by name.
  mgpuSetDefaultDevice(1);
  testing::internal::CaptureStderr();
  EXPECT_EQ(mgpuStreamCreate(), nullptr);
  std::string err = testing::internal::GetCapturedStderr();
  mgpuSetDefaultDevice(0);
  EXPECT_EQ(newErrors(), 1u);
  EXPECT_NE(err.find("mgpuStreamCreate: cuDeviceGet failed: "
                     "CUDA_ERROR_INVALID_DEVICE"),
            std::string::npos)
      << err;
  mgpu_stream stream = mgpuStreamCreate();
  EXPECT_TRUE(stream);
  mgpuStreamDestroy(stream);
  EXPECT_EQ(newErrors(), 1u);
}

} // namespace
