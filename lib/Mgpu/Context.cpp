//===- Context.cpp - the default device and its primary context -----------===//
//
// MLIR's host code has no notion of a context: every call acts on "the"
// device. As in MLIR's own wrappers that is the primary context of a
// per-thread default device, made current for the call and the caller's
// context restored after it, so that the wrappers share the device's state
// (modules, memory) with other driver or runtime API users in the process
// and leave their current context alone.
//
//===----------------------------------------------------------------------===//

#include "Wrappers.h"

#include "PagedAttn-c/Mgpu.h"

#include <map>
#include <mutex>

using namespace paged_attn;
using namespace paged_attn::cuda;

/// The device the calling thread's wrappers act on (mgpuSetDefaultDevice).
static thread_local int32_t defaultDevice = 0;

namespace {
struct PrimaryContext {
  CUdevice device = 0;
  CUcontext context = nullptr;
  /// The driver call that failed and its result, if one did.
  const char *failedCall = nullptr;
  CUresult result = CUDA_SUCCESS;
};
} // namespace

/// The primary context of device `ordinal`, retained on first use and kept
/// for the life of the process (the global destructors that unload modules
/// run late and still need it).
static PrimaryContext primaryContext(const Driver &d, int ordinal) {
  static std::mutex mutex;
  static std::map<int, PrimaryContext> *contexts =
      new std::map<int, PrimaryContext>; // used by destructors: never freed
  std::lock_guard<std::mutex> lock(mutex);
  auto it = contexts->find(ordinal);
  if (it != contexts->end())
    return it->second;
  PrimaryContext p;
  if ((p.result = d.cuDeviceGet(&p.device, ordinal))) {
    p.failedCall = "cuDeviceGet";
    return p;
  }
  if ((p.result = d.cuDevicePrimaryCtxRetain(&p.context, p.device))) {
    p.failedCall = "cuDevicePrimaryCtxRetain";
    return p;
  }
  contexts->emplace(ordinal, p);
  return p;
}

mgpu::ScopedContext::ScopedContext(const char *wrapper, bool atExit)
    : atExit_(atExit) {
  std::string why;
  const Driver *d = getDriver(&why);
  if (!d) {
    reportNoDriver(wrapper, why);
    return;
  }
  // Reports a failed call, unless the driver has shut down under a global
  // destructor.
  auto failed = [&](const char *call, CUresult result) {
    if (result == CUDA_SUCCESS)
      return false;
    if (!(atExit && result == kDeinitialized))
      check(*d, wrapper, call, result);
    return true;
  };
  PrimaryContext primary = primaryContext(*d, defaultDevice);
  if (primary.failedCall) {
    failed(primary.failedCall, primary.result);
    return;
  }
  device_ = primary.device;
  if (failed("cuCtxGetCurrent", d->cuCtxGetCurrent(&previous_)))
    return;
  // Setting the current context (rather than pushing one) needs no entry
  // point beyond those the runtime resolves, and restoring it afterwards
  // leaves the thread's context stack as it was.
  if (previous_ != primary.context) {
    if (failed("cuCtxSetCurrent", d->cuCtxSetCurrent(primary.context)))
      return;
    restore_ = true;
  }
  driver_ = d;
}

mgpu::ScopedContext::~ScopedContext() {
  if (!restore_)
    return;
  CUresult result = driver_->cuCtxSetCurrent(previous_);
  if (!(atExit_ && result == kDeinitialized))
    check(*driver_, "restoring the caller's context", "cuCtxSetCurrent",
          result);
}

extern "C" void mgpuSetDefaultDevice(int32_t device) { defaultDevice = device; }
