//===- Launches.cpp - mgpuLaunchKernel and mgpuLaunchClusterKernel --------===//
//
// A gpu.launch_func becomes one of these calls with the kernel's arguments
// as an array of pointers. Three things the host code does not do are done
// here, before the driver sees the launch:
//
// - dynamic shared memory past the 48 KiB default needs the kernel opted
//   into it (PagedAttn's tensor-core decode asks for 54 KiB and more), as
//   MLIR's own wrappers also do; it is done once per size and kernel;
// - sizes arrive as intptr_t (MLIR's index) and are checked to fit the
//   driver's unsigned before they are narrowed;
// - the argument count the host code passes (LLVM 22 passes it to
//   mgpuLaunchKernel) is checked against the parameters its PTX declares
//   (for modules loaded from PTX, as paged-attn-to-host embeds): a mismatch
//   means host code and kernel disagree on the ABI (the memref descriptors'
//   expansion), and the driver would otherwise read past the array.
//
//===----------------------------------------------------------------------===//

#include "Wrappers.h"

#include "PagedAttn-c/Mgpu.h"

#include <climits>
#include <cstdint>

using namespace paged_attn;
using namespace paged_attn::cuda;

namespace {
/// The 48 KiB every kernel may use without opting in.
constexpr int kDefaultSharedLimit = 48 * 1024;

/// A launch's sizes, checked and narrowed.
struct Dims {
  unsigned grid[3], block[3], cluster[3] = {1, 1, 1};
};
} // namespace

/// "name" of a kernel for messages ("the kernel" if unknown).
static std::string kernelName(const mgpu::KernelInfo &info) {
  return info.name.empty() ? std::string("the kernel") : "'" + info.name + "'";
}

static bool narrow(const char *wrapper, const char *what,
                   const intptr_t (&in)[3], unsigned (&out)[3]) {
  for (int i = 0; i < 3; ++i) {
    if (in[i] < 1 || uintmax_t(in[i]) > UINT_MAX) {
      mgpu::reportError(wrapper, std::string(what) + " size " +
                                     std::to_string(in[i]) + " in dimension " +
                                     "xyz"[i] + " is not in [1, 2^32)");
      return false;
    }
    out[i] = unsigned(in[i]);
  }
  return true;
}

/// Opts `function` into `sharedBytes` of dynamic shared memory when that is
/// past the default and more than it was opted into before.
static bool optIntoShared(const mgpu::ScopedContext &context,
                          const char *wrapper, CUfunction function,
                          mgpu::KernelInfo &info, int32_t sharedBytes) {
  if (sharedBytes < 0) {
    mgpu::reportError(wrapper, "negative dynamic shared memory size " +
                                   std::to_string(sharedBytes));
    return false;
  }
  if (sharedBytes <= kDefaultSharedLimit || sharedBytes <= info.sharedOptIn)
    return true;
  const Driver &d = context.driver();
  int limit = 0;
  if (!mgpu::check(d, wrapper, "cuDeviceGetAttribute",
                   d.cuDeviceGetAttribute(
                       &limit,
                       CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
                       context.device())))
    return false;
  if (sharedBytes > limit) {
    mgpu::reportError(wrapper, kernelName(info) + " asks for " +
                                   std::to_string(sharedBytes) +
                                   " bytes of dynamic shared memory; the "
                                   "device allows " +
                                   std::to_string(limit));
    return false;
  }
  if (!mgpu::check(
          d, wrapper, "cuFuncSetAttribute(max dynamic shared)",
          d.cuFuncSetAttribute(function,
                               CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                               sharedBytes)))
    return false;
  info.sharedOptIn = sharedBytes;
  return true;
}

/// Whether the kernel declares exactly `count` parameters, where its
/// module's PTX says how many; true when it is unknown.
static bool checkParamCount(const char *wrapper, const mgpu::KernelInfo &info,
                            size_t count) {
  if (info.paramCount < 0 || size_t(info.paramCount) == count)
    return true;
  mgpu::reportError(wrapper, "the launch passes " + std::to_string(count) +
                                 " arguments, " + kernelName(info) + " takes " +
                                 std::to_string(info.paramCount));
  return false;
}

extern "C" void mgpuLaunchKernel(mgpu_function function, intptr_t grid_x,
                                 intptr_t grid_y, intptr_t grid_z,
                                 intptr_t block_x, intptr_t block_y,
                                 intptr_t block_z, int32_t shared_bytes,
                                 mgpu_stream stream, void **params,
                                 void **extra, size_t params_count) {
  const char *wrapper = "mgpuLaunchKernel";
  if (!function)
    return mgpu::reportError(wrapper, "no kernel (its lookup failed)");
  Dims dims;
  if (!narrow(wrapper, "grid", {grid_x, grid_y, grid_z}, dims.grid) ||
      !narrow(wrapper, "block", {block_x, block_y, block_z}, dims.block))
    return;
  mgpu::ScopedContext context(wrapper);
  if (!context)
    return;
  auto *f = reinterpret_cast<CUfunction>(function);
  mgpu::KernelInfo info = mgpu::getKernelInfo(f);
  // Extra launch options (a packed parameter buffer) replace `params`: the
  // count then says nothing.
  if (!optIntoShared(context, wrapper, f, info, shared_bytes) ||
      (!extra && !checkParamCount(wrapper, info, params_count)))
    return;
  mgpu::setKernelInfo(f, info);
  const Driver &d = context.driver();
  mgpu::check(d, wrapper, ("cuLaunchKernel(" + kernelName(info) + ")").c_str(),
              d.cuLaunchKernel(
                  f, dims.grid[0], dims.grid[1], dims.grid[2], dims.block[0],
                  dims.block[1], dims.block[2], unsigned(shared_bytes),
                  reinterpret_cast<CUstream>(stream), params, extra));
}

extern "C" void mgpuLaunchClusterKernel(
    mgpu_function function, intptr_t cluster_x, intptr_t cluster_y,
    intptr_t cluster_z, intptr_t grid_x, intptr_t grid_y, intptr_t grid_z,
    intptr_t block_x, intptr_t block_y, intptr_t block_z, int32_t shared_bytes,
    mgpu_stream stream, void **params, void **extra) {
  const char *wrapper = "mgpuLaunchClusterKernel";
  if (!function)
    return mgpu::reportError(wrapper, "no kernel (its lookup failed)");
  Dims dims;
  if (!narrow(wrapper, "grid", {grid_x, grid_y, grid_z}, dims.grid) ||
      !narrow(wrapper, "block", {block_x, block_y, block_z}, dims.block) ||
      !narrow(wrapper, "cluster", {cluster_x, cluster_y, cluster_z},
              dims.cluster))
    return;
  mgpu::ScopedContext context(wrapper);
  if (!context)
    return;
  const Driver &d = context.driver();
  if (!mgpu::requireEntryPoint(d.cuLaunchKernelEx, wrapper,
                               "cuLaunchKernelEx (CUDA 12.0)"))
    return;
  auto *f = reinterpret_cast<CUfunction>(function);
  mgpu::KernelInfo info = mgpu::getKernelInfo(f);
  if (!optIntoShared(context, wrapper, f, info, shared_bytes))
    return;
  mgpu::setKernelInfo(f, info);
  // Clusters of more than 8 CTAs are "non-portable" and refused unless the
  // kernel allows them.
  uint64_t clusterSize =
      uint64_t(dims.cluster[0]) * dims.cluster[1] * dims.cluster[2];
  if (clusterSize > 8 &&
      !mgpu::check(
          d, wrapper, "cuFuncSetAttribute(non-portable cluster size)",
          d.cuFuncSetAttribute(
              f, CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED, 1)))
    return;
  CUlaunchAttribute attribute{};
  attribute.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
  attribute.value.clusterDim.x = dims.cluster[0];
  attribute.value.clusterDim.y = dims.cluster[1];
  attribute.value.clusterDim.z = dims.cluster[2];
  CUlaunchConfig config{};
  config.gridDimX = dims.grid[0];
  config.gridDimY = dims.grid[1];
  config.gridDimZ = dims.grid[2];
  config.blockDimX = dims.block[0];
  config.blockDimY = dims.block[1];
  config.blockDimZ = dims.block[2];
  config.sharedMemBytes = unsigned(shared_bytes);
  config.hStream = reinterpret_cast<CUstream>(stream);
  config.attrs = &attribute;
  config.numAttrs = 1;
  mgpu::check(d, wrapper,
              ("cuLaunchKernelEx(" + kernelName(info) + ")").c_str(),
              d.cuLaunchKernelEx(&config, f, params, extra));
}
