//===- CudaDriver.cpp - the CUDA driver API, loaded at run time -----------===//

#include "CudaDriver.h"

#include <cstdlib>
#include <dlfcn.h>
#include <mutex>

using namespace paged_attn;
using namespace paged_attn::cuda;

namespace {
struct LoadedDriver {
  Driver driver{};
  bool ok = false;
  std::string error;
};
} // namespace

static LoadedDriver loadDriver() {
  LoadedDriver loaded;
  // PAGED_ATTN_CUDA_DRIVER names another library with the driver's entry
  // points: the tests point it at a stand-in (test/standin-driver) to run
  // the launch paths without a GPU.
  const char *path = secure_getenv("PAGED_ATTN_CUDA_DRIVER");
  std::string name = path && *path ? path : "libcuda.so.1";
  void *lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    loaded.error = "no CUDA driver: cannot load " + name + " (";
    const char *why = dlerror();
    loaded.error += why ? why : "unknown reason";
    loaded.error += ")";
    return loaded;
  }
  Driver &d = loaded.driver;
  bool missing = false;
  std::string missingName;
  auto resolve = [&](auto &fn, const char *name) {
    void *sym = dlsym(lib, name);
    if (!sym && !missing) {
      missing = true;
      missingName = name;
    }
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(sym);
  };
  resolve(d.cuInit, "cuInit");
  resolve(d.cuDriverGetVersion, "cuDriverGetVersion");
  resolve(d.cuDeviceGetCount, "cuDeviceGetCount");
  resolve(d.cuDeviceGet, "cuDeviceGet");
  resolve(d.cuDeviceGetAttribute, "cuDeviceGetAttribute");
  resolve(d.cuDeviceGetName, "cuDeviceGetName");
  resolve(d.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  resolve(d.cuCtxGetCurrent, "cuCtxGetCurrent");
  resolve(d.cuCtxSetCurrent, "cuCtxSetCurrent");
  resolve(d.cuCtxGetDevice, "cuCtxGetDevice");
  resolve(d.cuCtxSynchronize, "cuCtxSynchronize");
  resolve(d.cuModuleLoadDataEx, "cuModuleLoadDataEx");
  resolve(d.cuModuleGetFunction, "cuModuleGetFunction");
  resolve(d.cuModuleUnload, "cuModuleUnload");
  resolve(d.cuFuncSetAttribute, "cuFuncSetAttribute");
  resolve(d.cuOccupancyMaxActiveBlocksPerMultiprocessor,
          "cuOccupancyMaxActiveBlocksPerMultiprocessor");
  resolve(d.cuLaunchKernel, "cuLaunchKernel");
  resolve(d.cuGetErrorName, "cuGetErrorName");
  resolve(d.cuGetErrorString, "cuGetErrorString");
  resolve(d.cuMemAlloc, "cuMemAlloc_v2");
  resolve(d.cuMemFree, "cuMemFree_v2");
  resolve(d.cuMemcpyHtoD, "cuMemcpyHtoD_v2");
  resolve(d.cuMemcpyDtoH, "cuMemcpyDtoH_v2");
  resolve(d.cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2");
  resolve(d.cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2");
  resolve(d.cuMemsetD8Async, "cuMemsetD8Async");
  resolve(d.cuMemsetD32Async, "cuMemsetD32Async");
  resolve(d.cuStreamSynchronize, "cuStreamSynchronize");
  resolve(d.cuStreamCreate, "cuStreamCreate");
  resolve(d.cuStreamDestroy, "cuStreamDestroy_v2");
  resolve(d.cuPointerGetAttribute, "cuPointerGetAttribute");
  resolve(d.cuEventCreate, "cuEventCreate");
  resolve(d.cuEventRecord, "cuEventRecord");
  resolve(d.cuEventSynchronize, "cuEventSynchronize");
  resolve(d.cuEventElapsedTime, "cuEventElapsedTime");
  resolve(d.cuEventDestroy, "cuEventDestroy_v2");
  resolve(d.cuStreamBeginCapture, "cuStreamBeginCapture_v2");
  resolve(d.cuStreamEndCapture, "cuStreamEndCapture");
  resolve(d.cuGraphInstantiate, "cuGraphInstantiateWithFlags");
  resolve(d.cuGraphLaunch, "cuGraphLaunch");
  resolve(d.cuGraphExecDestroy, "cuGraphExecDestroy");
  resolve(d.cuGraphDestroy, "cuGraphDestroy");
  // Optional: resolved after the check for the required entry points.
  auto optional = [&](auto &fn, const char *name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(
        dlsym(lib, name));
  };
  optional(d.cuLaunchKernelEx, "cuLaunchKernelEx");
  optional(d.cuStreamWaitEvent, "cuStreamWaitEvent");
  optional(d.cuMemcpyAsync, "cuMemcpyAsync");
  optional(d.cuMemsetD16Async, "cuMemsetD16Async");
  optional(d.cuMemAllocManaged, "cuMemAllocManaged");
  optional(d.cuMemHostRegister, "cuMemHostRegister_v2");
  optional(d.cuMemHostUnregister, "cuMemHostUnregister");
  if (missing) {
    loaded.error = "CUDA driver too old: " + name + " lacks " + missingName;
    return loaded;
  }
  CUresult r = d.cuInit(0);
  if (r != CUDA_SUCCESS) {
    loaded.error = "cuInit failed: " + describe(d, r);
    return loaded;
  }
  loaded.ok = true;
  return loaded;
}

const Driver *cuda::getDriver(std::string *error) {
  static LoadedDriver loaded = loadDriver();
  if (!loaded.ok) {
    if (error)
      *error = loaded.error;
    return nullptr;
  }
  return &loaded.driver;
}

std::string cuda::describe(const Driver &driver, CUresult result) {
  const char *name = nullptr, *text = nullptr;
  if (driver.cuGetErrorName)
    driver.cuGetErrorName(result, &name);
  if (driver.cuGetErrorString)
    driver.cuGetErrorString(result, &text);
  std::string s = name ? name : "CUDA error " + std::to_string(result);
  if (text)
    s += std::string(": ") + text;
  return s;
}
