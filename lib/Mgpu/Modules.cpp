//===- Modules.cpp - mgpuModuleLoad, LoadJIT, Unload, GetFunction ---------===//
//
// The gpu.binary translation loads each binary once, in a global
// constructor, and unloads it in a destructor; launches look their kernel
// up by name each time. PTX (a gpu.object in `isa` format, what
// paged-attn-to-host embeds) goes through mgpuModuleLoadJIT, which hands
// the driver's JIT the object's optimisation level and, on failure, prints
// the JIT's log: the only account of why PTX was refused.
//
//===----------------------------------------------------------------------===//

#include "Wrappers.h"

#include "PagedAttn-c/Mgpu.h"

#include <cctype>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

using namespace paged_attn;
using namespace paged_attn::cuda;

namespace {
/// Kernels by handle, and which module each came from, so that an unload
/// forgets them before the driver can hand the same handles out again; and
/// the PTX of modules loaded from PTX, where launches find their kernels'
/// parameter counts.
struct KernelRegistry {
  std::mutex mutex;
  std::map<CUfunction, mgpu::KernelInfo> kernels;
  std::map<CUmodule, std::vector<CUfunction>> byModule;
  std::map<CUmodule, std::string> ptx;
};
} // namespace

static KernelRegistry &registry() {
  // Never destroyed: the global destructors that unload modules may run
  // after this file's statics are gone.
  static KernelRegistry *r = new KernelRegistry;
  return *r;
}

mgpu::KernelInfo mgpu::getKernelInfo(CUfunction function) {
  KernelRegistry &r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.kernels.find(function);
  return it == r.kernels.end() ? KernelInfo() : it->second;
}

void mgpu::setKernelInfo(CUfunction function, const KernelInfo &info) {
  KernelRegistry &r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.kernels.find(function);
  if (it != r.kernels.end())
    it->second = info;
}

/// Whether a module image is PTX text rather than a cubin (ELF) or fatbin.
static bool isPTX(const void *image) {
  const unsigned char elf[4] = {0x7f, 'E', 'L', 'F'};
  const unsigned char fatbin[4] = {0x50, 0xed, 0x55, 0xba};
  return std::memcmp(image, elf, 4) != 0 && std::memcmp(image, fatbin, 4) != 0;
}

/// The parameters `.entry name(...)` declares in `ptx`; -1 when there is
/// no such entry. The driver has no query for the count (probing past the
/// last parameter with cuFuncGetParamInfo is an API error, which
/// compute-sanitizer reports), so it is read from the PTX.
static int64_t countEntryParams(const std::string &ptx,
                                const std::string &name) {
  std::string entry = ".entry " + name;
  for (size_t at = ptx.find(entry); at != std::string::npos;
       at = ptx.find(entry, at + 1)) {
    size_t open = at + entry.size();
    while (open < ptx.size() &&
           std::isspace(static_cast<unsigned char>(ptx[open])))
      ++open;
    if (open >= ptx.size() || ptx[open] != '(')
      continue; // a longer name with this one as its prefix
    size_t close = ptx.find(')', open);
    if (close == std::string::npos)
      return -1;
    int64_t count = 0;
    for (size_t p = ptx.find(".param", open); p < close;
         p = ptx.find(".param", p + 1))
      ++count;
    return count;
  }
  return -1;
}

/// cuModuleLoadDataEx with the JIT's error log captured; `optLevel` < 0
/// leaves the JIT's default.
static CUmodule loadModule(const char *wrapper, const void *image,
                           int optLevel) {
  mgpu::ScopedContext context(wrapper);
  if (!context)
    return nullptr;
  const Driver &d = context.driver();
  char log[8192] = "";
  int options[3] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
                    CU_JIT_OPTIMIZATION_LEVEL};
  void *values[3] = {log, reinterpret_cast<void *>(uintptr_t(sizeof(log))),
                     reinterpret_cast<void *>(intptr_t(optLevel))};
  CUmodule module = nullptr;
  CUresult result = d.cuModuleLoadDataEx(&module, image, optLevel < 0 ? 2 : 3,
                                         options, values);
  if (result != CUDA_SUCCESS) {
    std::string message = "cuModuleLoadDataEx failed: " + describe(d, result);
    if (log[0])
      message += "\n" + std::string(log);
    mgpu::reportError(wrapper, message);
    return nullptr;
  }
  return module;
}

/// Remembers the PTX text of `module`, loaded from `image` (when PTX).
static void rememberPTX(CUmodule module, const void *image) {
  if (!module || !isPTX(image))
    return;
  KernelRegistry &r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.ptx[module] = static_cast<const char *>(image);
}

extern "C" mgpu_module mgpuModuleLoad(const void *data, size_t size) {
  // A cubin or fatbin carries its own size in its headers, and PTX ends
  // at its terminating null; the driver takes no length.
  if (!data || size < 4) {
    mgpu::reportError("mgpuModuleLoad", "no module image");
    return nullptr;
  }
  CUmodule module = loadModule("mgpuModuleLoad", data, /*optLevel=*/-1);
  rememberPTX(module, data);
  return reinterpret_cast<mgpu_module>(module);
}

extern "C" mgpu_module mgpuModuleLoadJIT(const void *ptx, int opt_level) {
  if (opt_level < 0 || opt_level > 4) {
    mgpu::reportError("mgpuModuleLoadJIT", "JIT optimisation level " +
                                               std::to_string(opt_level) +
                                               " is not 0 to 4");
    return nullptr;
  }
  CUmodule module = loadModule("mgpuModuleLoadJIT", ptx, opt_level);
  rememberPTX(module, ptx);
  return reinterpret_cast<mgpu_module>(module);
}

extern "C" void mgpuModuleUnload(mgpu_module module) {
  // A module whose load failed (already reported) reaches the destructor
  // as null.
  if (!module)
    return;
  auto *m = reinterpret_cast<CUmodule>(module);
  {
    KernelRegistry &r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    for (CUfunction f : r.byModule[m])
      r.kernels.erase(f);
    r.byModule.erase(m);
    r.ptx.erase(m);
  }
  // cuModuleUnload acts on the current context. At process exit the driver
  // may have shut down before the destructor that unloads runs; the module
  // went with it.
  mgpu::ScopedContext context("mgpuModuleUnload", /*atExit=*/true);
  if (!context)
    return;
  CUresult result = context.driver().cuModuleUnload(m);
  if (result != mgpu::kDeinitialized)
    mgpu::check(context.driver(), "mgpuModuleUnload", "cuModuleUnload", result);
}

extern "C" mgpu_function mgpuModuleGetFunction(mgpu_module module,
                                               const char *name) {
  const char *wrapper = "mgpuModuleGetFunction";
  if (!module) {
    mgpu::reportError(wrapper, std::string("no module to find '") +
                                   (name ? name : "") +
                                   "' in (its load failed)");
    return nullptr;
  }
  mgpu::ScopedContext context(wrapper);
  if (!context)
    return nullptr;
  auto *m = reinterpret_cast<CUmodule>(module);
  CUfunction function = nullptr;
  CUresult result = context.driver().cuModuleGetFunction(&function, m, name);
  if (!mgpu::check(
          context.driver(), wrapper,
          ("cuModuleGetFunction('" + std::string(name ? name : "") + "')")
              .c_str(),
          result))
    return nullptr;
  KernelRegistry &r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto ptx = r.ptx.find(m);
  int64_t params =
      ptx == r.ptx.end() ? -1 : countEntryParams(ptx->second, name);
  if (r.kernels.emplace(function, mgpu::KernelInfo{name, 0, params}).second)
    r.byModule[m].push_back(function);
  return reinterpret_cast<mgpu_function>(function);
}
