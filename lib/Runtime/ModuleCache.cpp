//===- ModuleCache.cpp - modules per context, and device facts ------------===//

#include "ModuleCache.h"

using namespace paged_attn;
using namespace paged_attn::cuda;
using namespace paged_attn::detail;

//===----------------------------------------------------------------------===//
// Loading an entry's kernels
//===----------------------------------------------------------------------===//

/// JIT-compiles `ptx` into the current context, the JIT's error log in the
/// error: a driver too old for the PTX says so there.
static Status loadModule(const Driver &d, const std::string &ptx,
                         CUmodule *module) {
  char errorLog[8192] = {0}, infoLog[4096] = {0};
  int options[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
                   CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES};
  void *values[] = {errorLog, reinterpret_cast<void *>(sizeof(errorLog)),
                    infoLog, reinterpret_cast<void *>(sizeof(infoLog))};
  CUresult r = d.cuModuleLoadDataEx(module, ptx.c_str(), 4, options, values);
  if (r == CUDA_SUCCESS)
    return Status::ok();
  std::string message = "loading PTX failed: " + describe(d, r);
  if (errorLog[0])
    message += "\nJIT log:\n" + std::string(errorLog);
  return Status(StatusCode::CudaError, message);
}

static Status getFunctions(const Driver &d, CUmodule module,
                           const KernelSpec &spec, LoadedKernels *loaded) {
  const std::pair<const std::string *, CUfunction *> entries[] = {
      {&spec.decode.name, &loaded->decode},
      {&spec.merge.name, &loaded->merge},
      {&spec.check.name, &loaded->check}};
  for (auto [name, fn] : entries) {
    CUresult r = d.cuModuleGetFunction(fn, module, name->c_str());
    if (r != CUDA_SUCCESS)
      return Status(StatusCode::NotFound,
                    "kernel '" + *name + "' not in its PTX: " + describe(d, r));
  }
  return Status::ok();
}

/// Past 48 KiB a kernel's dynamic shared memory must be opted into; a
/// device that cannot give that much gets an error naming both sizes.
static Status optIntoSharedMemory(const Driver &d, const KernelSpec &spec,
                                  CUfunction decode) {
  if (spec.decodeDynamicSharedBytes <= 48 * 1024)
    return Status::ok();
  CUresult r = d.cuFuncSetAttribute(
      decode, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
      int(spec.decodeDynamicSharedBytes));
  if (r == CUDA_SUCCESS)
    return Status::ok();
  CUdevice device = 0;
  int limit = 0;
  if (d.cuCtxGetDevice(&device) == CUDA_SUCCESS)
    d.cuDeviceGetAttribute(
        &limit, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, device);
  return Status(StatusCode::CudaError,
                "kernel '" + spec.decode.name + "' needs " +
                    std::to_string(spec.decodeDynamicSharedBytes) +
                    " bytes of shared memory, this device allows " +
                    std::to_string(limit) + ": " + describe(d, r));
}

/// Decode CTAs one SM holds at once; 1 when the driver cannot tell (the
/// split-count model then assumes the least).
static int decodeCTAsPerSM(const Driver &d, const KernelSpec &spec,
                           CUfunction decode) {
  int perSM = 0;
  if (d.cuOccupancyMaxActiveBlocksPerMultiprocessor(
          &perSM, decode, int(spec.decode.block),
          size_t(spec.decodeDynamicSharedBytes)) != CUDA_SUCCESS ||
      perSM < 1)
    return 1;
  return perSM;
}

//===----------------------------------------------------------------------===//
// ModuleCache
//===----------------------------------------------------------------------===//

ModuleCache &ModuleCache::get() {
  static ModuleCache *cache = new ModuleCache;
  return *cache;
}

std::shared_ptr<ModuleCache::ModuleSlot> ModuleCache::slotFor(CUcontext ctx,
                                                              uint64_t ptxId) {
  std::shared_ptr<ModuleSlot> &slot = modules[std::make_pair(ctx, ptxId)];
  if (!slot)
    slot = std::make_shared<ModuleSlot>();
  return slot;
}

Status ModuleCache::module(const Driver &d, CUcontext ctx, uint64_t ptxId,
                           const std::string &ptx, CUmodule *out) {
  std::shared_ptr<ModuleSlot> slot;
  {
    std::lock_guard<std::mutex> lock(mutex);
    slot = slotFor(ctx, ptxId);
  }
  // JIT compilation takes long: the lock is not held, so modules of
  // different PTX load in parallel, and threads that need the same one
  // wait for its first load.
  std::call_once(slot->once,
                 [&] { slot->status = loadModule(d, ptx, &slot->module); });
  *out = slot->module;
  return slot->status;
}

Status ModuleCache::lookup(const Driver &d, CUcontext ctx,
                           const KernelSpec &spec, LoadedKernels *out) {
  auto key = std::make_pair(ctx, spec.id);
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = kernels.find(key);
    if (it != kernels.end()) {
      *out = it->second;
      return Status::ok();
    }
  }
  CUmodule loadedModule = nullptr;
  if (Status s = module(d, ctx, spec.ptxId, *spec.ptx, &loadedModule); !s)
    return s;
  LoadedKernels loaded;
  if (Status s = getFunctions(d, loadedModule, spec, &loaded); !s)
    return s;
  if (Status s = optIntoSharedMemory(d, spec, loaded.decode); !s)
    return s;
  loaded.decodeCTAsPerSM = decodeCTAsPerSM(d, spec, loaded.decode);
  std::lock_guard<std::mutex> lock(mutex);
  kernels[key] = loaded;
  *out = loaded;
  return Status::ok();
}

template <typename Spec>
Status ModuleCache::singleKernel(
    const Driver &d, CUcontext ctx, const Spec &spec, const KernelEntry &kernel,
    std::map<std::pair<CUcontext, uint64_t>, CUfunction> &functions,
    CUfunction *out) {
  auto key = std::make_pair(ctx, spec.id);
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = functions.find(key);
    if (it != functions.end()) {
      *out = it->second;
      return Status::ok();
    }
  }
  CUmodule loadedModule = nullptr;
  if (Status s = module(d, ctx, spec.ptxId, *spec.ptx, &loadedModule); !s)
    return s;
  CUfunction fn = nullptr;
  CUresult r = d.cuModuleGetFunction(&fn, loadedModule, kernel.name.c_str());
  if (r != CUDA_SUCCESS)
    return Status(StatusCode::NotFound,
                  "kernel '" + kernel.name +
                      "' not in its PTX: " + describe(d, r));
  std::lock_guard<std::mutex> lock(mutex);
  functions[key] = fn;
  *out = fn;
  return Status::ok();
}

Status ModuleCache::lookup(const Driver &d, CUcontext ctx,
                           const MergeKernelSpec &spec, CUfunction *out) {
  return singleKernel(d, ctx, spec, spec.merge, merges, out);
}

Status ModuleCache::lookup(const Driver &d, CUcontext ctx,
                           const AppendKernelSpec &spec, CUfunction *out) {
  return singleKernel(d, ctx, spec, spec.append, appends, out);
}

int ModuleCache::multiprocessorCount(const Driver &d, CUdevice device) {
  std::lock_guard<std::mutex> lock(mutex);
  auto it = smCounts.find(device);
  if (it != smCounts.end())
    return it->second;
  int count = 0;
  if (d.cuDeviceGetAttribute(&count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
                             device) != CUDA_SUCCESS)
    count = 1;
  smCounts[device] = count;
  return count;
}

//===----------------------------------------------------------------------===//
// The driver and the current device
//===----------------------------------------------------------------------===//

Status detail::requireDriver(const Driver **d) {
  std::string why;
  *d = getDriver(&why);
  if (!*d)
    return Status(StatusCode::NoDriver, why);
  return Status::ok();
}

Status detail::currentContext(const Driver &d, CUcontext *ctx,
                              CUdevice *device) {
  CUresult r = d.cuCtxGetCurrent(ctx);
  if (r != CUDA_SUCCESS)
    return Status(StatusCode::CudaError, "cuCtxGetCurrent: " + describe(d, r));
  if (!*ctx) {
    int count = 0;
    if (d.cuDeviceGetCount(&count) != CUDA_SUCCESS || count == 0)
      return Status(StatusCode::NoDriver, "no CUDA device found");
    CUdevice dev;
    if ((r = d.cuDeviceGet(&dev, 0)) != CUDA_SUCCESS ||
        (r = d.cuDevicePrimaryCtxRetain(ctx, dev)) != CUDA_SUCCESS ||
        (r = d.cuCtxSetCurrent(*ctx)) != CUDA_SUCCESS)
      return Status(StatusCode::CudaError,
                    "cannot make device 0's primary context current: " +
                        describe(d, r));
  }
  if ((r = d.cuCtxGetDevice(device)) != CUDA_SUCCESS)
    return Status(StatusCode::CudaError, "cuCtxGetDevice: " + describe(d, r));
  return Status::ok();
}

Status detail::currentOccupancy(const KernelSpec &spec, int *multiprocessors,
                                int *ctasPerSM) {
  const Driver *d;
  Status s = requireDriver(&d);
  if (!s)
    return s;
  CUcontext ctx;
  CUdevice device;
  if (!(s = currentContext(*d, &ctx, &device)))
    return s;
  LoadedKernels loaded;
  if (!(s = ModuleCache::get().lookup(*d, ctx, spec, &loaded)))
    return s;
  *multiprocessors = ModuleCache::get().multiprocessorCount(*d, device);
  *ctasPerSM = loaded.decodeCTAsPerSM;
  return Status::ok();
}

bool paged_attn::hasDriver(std::string *whyNot) {
  return getDriver(whyNot) != nullptr;
}

Status paged_attn::getDeviceInfo(int ordinal, std::string *name,
                                 int *multiprocessors) {
  const Driver *d;
  Status s = requireDriver(&d);
  if (!s)
    return s;
  CUdevice dev;
  CUresult r = d->cuDeviceGet(&dev, ordinal);
  if (r != CUDA_SUCCESS)
    return Status(StatusCode::InvalidArgument, "no CUDA device " +
                                                   std::to_string(ordinal) +
                                                   ": " + describe(*d, r));
  char buffer[256] = {0};
  d->cuDeviceGetName(buffer, sizeof(buffer) - 1, dev);
  if (name)
    *name = buffer;
  if (multiprocessors)
    d->cuDeviceGetAttribute(multiprocessors,
                            CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev);
  return Status::ok();
}
