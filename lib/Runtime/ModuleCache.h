//===- ModuleCache.h - modules per context, and device facts ----*- C++ -*-===//
//
// The driver state a launch needs: the current context, the kernels of a
// manifest entry loaded into it, how many decode CTAs an SM holds and how
// many SMs the device has. Modules are loaded once per (context, PTX text)
// and kept for the life of the process: kernels may still be in flight
// when a Decoder goes away.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_LIB_RUNTIME_MODULECACHE_H
#define PAGEDATTN_LIB_RUNTIME_MODULECACHE_H

#include "CudaDriver.h"
#include "Manifest.h"

#include <map>
#include <memory>
#include <mutex>
#include <utility>

// Internal to the runtime: hidden, so that exports.map (paged_attn::*)
// keeps it in the library.
#pragma GCC visibility push(hidden)
namespace paged_attn {
namespace detail {

/// An entry's kernels in one context.
struct LoadedKernels {
  cuda::CUfunction decode = nullptr, merge = nullptr, check = nullptr;
  /// Decode CTAs one SM holds at once (the driver's occupancy query).
  int decodeCTAsPerSM = 1;
};

class ModuleCache {
public:
  /// The process's cache (never destroyed: its modules outlive Decoders).
  static ModuleCache &get();

  /// `spec`'s kernels in `ctx`, its PTX loaded (JIT-compiled) on first use.
  Status lookup(const cuda::Driver &d, cuda::CUcontext ctx,
                const KernelSpec &spec, LoadedKernels *out);
  /// A merge op's kernel in `ctx`, likewise.
  Status lookup(const cuda::Driver &d, cuda::CUcontext ctx,
                const MergeKernelSpec &spec, cuda::CUfunction *out);
  /// An append op's kernel in `ctx`, likewise.
  Status lookup(const cuda::Driver &d, cuda::CUcontext ctx,
                const AppendKernelSpec &spec, cuda::CUfunction *out);
  /// The SM count of `device`, asked of the driver once.
  int multiprocessorCount(const cuda::Driver &d, cuda::CUdevice device);

private:
  /// A module loaded once; its status is the load's.
  struct ModuleSlot {
    std::once_flag once;
    cuda::CUmodule module = nullptr;
    Status status;
  };

  std::shared_ptr<ModuleSlot> slotFor(cuda::CUcontext ctx, uint64_t ptxId);
  /// The module of `ptx` (whose id is `ptxId`) in `ctx`, loaded once.
  Status module(const cuda::Driver &d, cuda::CUcontext ctx, uint64_t ptxId,
                const std::string &ptx, cuda::CUmodule *out);
  /// The one kernel `kernel` of the entry of `spec` (a merge or append
  /// op's) in `ctx`, found in `functions` or loaded and kept there.
  template <typename Spec>
  Status singleKernel(const cuda::Driver &d, cuda::CUcontext ctx,
                      const Spec &spec, const KernelEntry &kernel,
                      std::map<std::pair<cuda::CUcontext, uint64_t>,
                               cuda::CUfunction> &functions,
                      cuda::CUfunction *out);

  std::mutex mutex;
  std::map<std::pair<cuda::CUcontext, uint64_t>, std::shared_ptr<ModuleSlot>>
      modules;
  std::map<std::pair<cuda::CUcontext, uint64_t>, LoadedKernels> kernels;
  std::map<std::pair<cuda::CUcontext, uint64_t>, cuda::CUfunction> merges;
  std::map<std::pair<cuda::CUcontext, uint64_t>, cuda::CUfunction> appends;
  std::map<cuda::CUdevice, int> smCounts;
};

/// The driver, or NoDriver with the loader's message.
Status requireDriver(const cuda::Driver **d);

/// The current context, or device 0's primary context made current.
Status currentContext(const cuda::Driver &d, cuda::CUcontext *ctx,
                      cuda::CUdevice *device);

/// The current device's SM count and how many of `spec`'s decode CTAs one
/// SM holds (loading its module into the current context if needed).
Status currentOccupancy(const KernelSpec &spec, int *multiprocessors,
                        int *ctasPerSM);

} // namespace detail
} // namespace paged_attn
#pragma GCC visibility pop

#endif // PAGEDATTN_LIB_RUNTIME_MODULECACHE_H
