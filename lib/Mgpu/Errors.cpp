//===- Errors.cpp - how the mgpu* wrappers report failures ----------------===//
//
// The ABI's functions return nothing (or a null handle), as MLIR's own CUDA
// wrappers do, so a failure is only seen on stderr. A message names the
// wrapper and the driver call so that it can be traced to the op it was
// lowered from; the count lets a program check that nothing failed before
// trusting its results.
//
//===----------------------------------------------------------------------===//

#include "Wrappers.h"

#include "PagedAttn-c/Mgpu.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

using namespace paged_attn;

static std::atomic<uint64_t> errorCount{0};

static bool abortOnError() {
  static const bool abort = [] {
    const char *value = std::getenv("PAGED_ATTN_MGPU_ABORT_ON_ERROR");
    return value && std::strcmp(value, "1") == 0;
  }();
  return abort;
}

void mgpu::reportError(const char *wrapper, const std::string &message) {
  ++errorCount;
  std::fprintf(stderr, "paged_attn_mgpu: %s: %s\n", wrapper, message.c_str());
  std::fflush(stderr);
  if (abortOnError())
    std::abort();
}

void mgpu::reportNoDriver(const char *wrapper, const std::string &why) {
  static std::atomic<bool> reported{false};
  if (reported.exchange(true)) {
    ++errorCount;
    if (abortOnError())
      std::abort();
    return;
  }
  reportError(wrapper, why + " (later calls without a driver fail silently; "
                             "paged_attn_mgpu_error_count counts them)");
}

bool mgpu::check(const cuda::Driver &driver, const char *wrapper,
                 const char *call, cuda::CUresult result) {
  if (result == cuda::CUDA_SUCCESS)
    return true;
  reportError(wrapper,
              std::string(call) + " failed: " + cuda::describe(driver, result));
  return false;
}

extern "C" uint64_t paged_attn_mgpu_error_count(void) { return errorCount; }
