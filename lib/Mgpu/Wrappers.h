//===- Wrappers.h - what the mgpu* wrappers share ---------------*- C++ -*-===//
//
// The driver, the default device's primary context and error reporting,
// shared by the files that implement the mgpu* functions of
// PagedAttn-c/Mgpu.h (one group of the ABI per file).
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_LIB_MGPU_WRAPPERS_H
#define PAGEDATTN_LIB_MGPU_WRAPPERS_H

#include "../Runtime/CudaDriver.h"

#include <string>

namespace paged_attn {
namespace mgpu {

/// Prints "paged_attn_mgpu: WRAPPER: MESSAGE" to stderr and counts the
/// failure; aborts when PAGED_ATTN_MGPU_ABORT_ON_ERROR is set to 1.
void reportError(const char *wrapper, const std::string &message);

/// Reports that the driver could not be loaded (`why`): in full the first
/// time, and counted but not printed again, since then every call fails
/// the same way.
void reportNoDriver(const char *wrapper, const std::string &why);

/// Reports `result` of driver call `call` made by `wrapper`, if it is not
/// success; returns whether it was.
bool check(const cuda::Driver &driver, const char *wrapper, const char *call,
           cuda::CUresult result);

/// cuda.h's CUDA_ERROR_DEINITIALIZED: the driver is shutting down.
constexpr cuda::CUresult kDeinitialized = 4;

/// The primary context of the calling thread's default device made current
/// for the lifetime of the object, the previous context restored after.
/// Converts to false, the failure reported, when there is no driver or the
/// context cannot be had; the wrapper then returns without calling it.
/// `atExit`: the wrapper runs from a global destructor, possibly after the
/// driver has shut down, which is then not a failure.
class ScopedContext {
public:
  explicit ScopedContext(const char *wrapper, bool atExit = false);
  ~ScopedContext();
  ScopedContext(const ScopedContext &) = delete;
  ScopedContext &operator=(const ScopedContext &) = delete;

  explicit operator bool() const { return driver_ != nullptr; }
  const cuda::Driver &driver() const { return *driver_; }
  cuda::CUdevice device() const { return device_; }

private:
  const cuda::Driver *driver_ = nullptr;
  cuda::CUdevice device_ = 0;
  cuda::CUcontext previous_ = nullptr;
  bool restore_ = false;
  bool atExit_ = false;
};

/// What the launches know of a kernel that mgpuModuleGetFunction returned:
/// its name for messages, the dynamic shared memory it was opted into and
/// the parameter count a launch was found to match (0: none yet).
struct KernelInfo {
  std::string name;
  int sharedOptIn = 0;
  /// Parameters the kernel declares, read from its module's PTX; -1 when
  /// unknown (a cubin or fatbin).
  int64_t paramCount = -1;
};

/// A copy of `function`'s record; an empty name when it is unknown (not
/// from mgpuModuleGetFunction, or its module unloaded).
KernelInfo getKernelInfo(cuda::CUfunction function);
/// Stores `info` for a known `function`.
void setKernelInfo(cuda::CUfunction function, const KernelInfo &info);

/// Reports, for `wrapper`, that the driver lacks entry point `name`;
/// returns whether `fn` is there.
template <typename Fn>
bool requireEntryPoint(Fn *fn, const char *wrapper, const char *name) {
  if (!fn)
    reportError(wrapper, std::string("the CUDA driver lacks ") + name);
  return fn != nullptr;
}

} // namespace mgpu
} // namespace paged_attn

#endif // PAGEDATTN_LIB_MGPU_WRAPPERS_H
