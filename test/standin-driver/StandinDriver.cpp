//===- StandinDriver.cpp - a CUDA driver that runs no kernels -------------===//
//
// The driver entry points lib/Runtime/CudaDriver.cpp resolves, with the
// argument checks and error codes of the real driver for one device with an
// H100's limits. Kernels are not run: a launch that passes the checks is
// recorded (StandinDriver.h). Device memory is host memory, so copies and
// memsets work, synchronously. Streams, events and graphs are bookkeeping;
// stream capture records launches and async copies into the graph and
// rejects synchronisation, as the real driver does.
//
//===----------------------------------------------------------------------===//

#include "StandinDriver.h"
#include "PtxInfo.h"

#include <algorithm>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#define STANDIN_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

// cuda.h's values for what the stand-in returns.
enum Result : int {
  Success = 0,
  InvalidValue = 1,
  OutOfMemory = 2,
  NotInitialized = 3,
  InvalidDevice = 101,
  InvalidImage = 200,
  InvalidContext = 201,
  InvalidPtx = 218,
  UnsupportedPtxVersion = 222,
  InvalidHandle = 400,
  IllegalState = 401,
  NotFound = 500,
  LaunchOutOfResources = 701,
  HostMemoryAlreadyRegistered = 712,
  HostMemoryNotRegistered = 713,
  CaptureUnsupported = 900,
  CaptureInvalidated = 901,
};

struct ErrorText {
  int code;
  const char *name, *text;
};
const ErrorText kErrors[] = {
    {0, "CUDA_SUCCESS", "no error"},
    {1, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {2, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {3, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {100, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {101, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {200, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {201, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {218, "CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"},
    {222, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
     "the provided PTX was compiled with an unsupported toolchain."},
    {400, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {401, "CUDA_ERROR_ILLEGAL_STATE",
     "the operation cannot be performed in the present state"},
    {500, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {700, "CUDA_ERROR_ILLEGAL_ADDRESS",
     "an illegal memory access was encountered"},
    {701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
     "too many resources requested for launch"},
    {712, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED",
     "part or all of the requested memory range is already mapped"},
    {713, "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED",
     "pointer does not correspond to a registered memory region"},
    {719, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {900, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
     "operation not permitted when stream is capturing"},
    {901, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED",
     "operation failed due to a previous error during capture"},
    {999, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

// Attribute and option values of cuda.h the stand-in understands.
enum : int {
  kFuncMaxDynamicShared = 8,
  kFuncPreferredCarveout = 9,
  kJitInfoLog = 3,
  kJitInfoLogSize = 4,
  kJitErrorLog = 5,
  kJitErrorLogSize = 6,
  kJitOptimizationLevel = 7,
  kJitLastOption = 32,
  kPointerContext = 1,
  kPointerMemoryType = 2,
  kPointerDevicePointer = 3,
  kMemoryTypeDevice = 2,
  kLaunchAttributeProgrammatic = 6,
  kLaunchAttributeLast = 32,
};

paged_attn_standin_device h100() {
  paged_attn_standin_device d = {};
  std::snprintf(d.name, sizeof(d.name), "PagedAttn stand-in (H100 limits)");
  d.multiprocessors = 132;
  d.compute_major = 9;
  d.compute_minor = 0;
  d.shared_per_block = 48 * 1024;
  d.shared_per_block_optin = 227 * 1024;
  d.shared_per_multiprocessor = 228 * 1024;
  d.threads_per_block = 1024;
  d.threads_per_multiprocessor = 2048;
  d.blocks_per_multiprocessor = 32;
  d.block_dims[0] = d.block_dims[1] = 1024;
  d.block_dims[2] = 64;
  d.grid_dims[0] = 2147483647;
  d.grid_dims[1] = d.grid_dims[2] = 65535;
  d.registers_per_block = 65536;
  d.ptx_isa = 87;
  return d;
}

struct Module;
struct Function {
  std::string name;
  const standin::PtxEntry *entry = nullptr;
  /// Set by cuFuncSetAttribute; 0 keeps the default limit.
  int maxDynamicShared = 0;
};
struct Module {
  standin::PtxModule ptx;
  std::map<std::string, std::unique_ptr<Function>> functions;
};

/// A recorded stream operation: a launch, or a copy run when replayed.
struct Operation {
  bool isLaunch = false;
  paged_attn_standin_launch launch = {};
  std::function<void()> run;
};
struct Stream {
  bool capturing = false, invalidated = false;
  int mode = 0;
  std::vector<Operation> captured;
};
struct Graph {
  std::vector<Operation> operations;
};
struct Event {
  unsigned flags = 0;
  bool recorded = false;
};

struct State {
  std::mutex mutex;
  bool initialized = false;
  paged_attn_standin_device device = h100();
  std::set<Module *> modules;
  std::map<uintptr_t, size_t> allocations;
  /// cuMemHostRegister'ed ranges: start -> bytes.
  std::map<uintptr_t, size_t> registered;
  std::set<Stream *> streams;
  std::set<Event *> events;
  std::set<Graph *> graphs, graphExecs;
  std::vector<paged_attn_standin_launch> launches;
  /// Per entry point: calls to let through, then the result to inject.
  std::map<std::string, std::pair<int, int>> failNext;
  FILE *log = nullptr;
};

State &state() {
  static State *s = new State; // never destroyed: calls may come at exit
  return *s;
}

struct CUctx_st_ {
  int unused;
} primaryContext;
thread_local void *currentContext = nullptr;

/// The injected result for `symbol`, once (0: none).
int injected(State &s, const char *symbol) {
  auto it = s.failNext.find(symbol);
  if (it == s.failNext.end())
    return Success;
  auto &[callsLeft, result] = it->second;
  if (callsLeft > 0) {
    --callsLeft;
    return Success;
  }
  int injectedResult = result;
  s.failNext.erase(it);
  return injectedResult;
}

/// Locks the state and applies injection and the checks every call after
/// cuInit shares.
#define ENTER(symbol)                                                          \
  State &s = state();                                                          \
  std::lock_guard<std::mutex> lock(s.mutex);                                   \
  if (int r = injected(s, symbol))                                             \
    return r;                                                                  \
  if (!s.initialized)                                                          \
    return NotInitialized;

#define ENTER_WITH_CONTEXT(symbol)                                             \
  ENTER(symbol)                                                                \
  if (!currentContext)                                                         \
    return InvalidContext;

bool anyGlobalCapture(State &s) {
  for (Stream *stream : s.streams)
    if (stream->capturing && stream->mode == 0)
      return true;
  return false;
}

/// Null, CU_STREAM_LEGACY (1) and CU_STREAM_PER_THREAD (2) are valid
/// without being created.
bool validStream(State &s, void *stream) {
  auto value = reinterpret_cast<uintptr_t>(stream);
  return value <= 2 || s.streams.count(static_cast<Stream *>(stream));
}

Stream *capturingStream(State &s, void *stream) {
  if (reinterpret_cast<uintptr_t>(stream) <= 2)
    return nullptr;
  auto *st = static_cast<Stream *>(stream);
  return s.streams.count(st) && st->capturing ? st : nullptr;
}

/// Whether [ptr, ptr + bytes) lies in one allocation.
bool inAllocation(State &s, uintptr_t ptr, size_t bytes) {
  auto it = s.allocations.upper_bound(ptr);
  if (it == s.allocations.begin())
    return false;
  --it;
  return ptr >= it->first && ptr - it->first <= it->second &&
         bytes <= it->second - (ptr - it->first) &&
         (bytes > 0 || ptr < it->first + it->second);
}

Function *findFunction(State &s, void *handle) {
  for (Module *m : s.modules)
    for (auto &[name, f] : m->functions)
      if (f.get() == handle)
        return f.get();
  return nullptr;
}

/// The dynamic shared memory `f` may use at launch.
int dynamicSharedLimit(const State &s, const Function &f) {
  int limit =
      f.maxDynamicShared ? f.maxDynamicShared : s.device.shared_per_block;
  return limit - int(std::min<size_t>(f.entry->staticSharedBytes, limit));
}

void logLaunch(State &s, const paged_attn_standin_launch &l) {
  if (!s.log)
    return;
  std::fprintf(s.log,
               "launch %s grid=%u,%u,%u block=%u,%u,%u shared=%u "
               "programmatic=%d graph=%d params=%zu param_count=%zu\n",
               l.kernel, l.grid[0], l.grid[1], l.grid[2], l.block[0],
               l.block[1], l.block[2], l.dynamic_shared_bytes, l.programmatic,
               l.from_graph, l.param_bytes, l.param_count);
  std::fflush(s.log);
}

/// Appends one line (not a launch) to the log, when there is one.
__attribute__((format(printf, 2, 3))) void logEvent(State &s,
                                                    const char *format, ...) {
  if (!s.log)
    return;
  va_list args;
  va_start(args, format);
  std::vfprintf(s.log, format, args);
  va_end(args);
  std::fputc('\n', s.log);
  std::fflush(s.log);
}

/// Packs the kernel's parameters from `kernelParams` or `extra` into
/// `launch`, checking them as the driver does.
int packParams(const standin::PtxEntry &entry, void **kernelParams,
               void **extra, paged_attn_standin_launch &launch) {
  if (kernelParams && extra)
    return InvalidValue;
  launch.param_bytes = entry.paramBytes;
  launch.param_count = entry.params.size();
  if (extra) {
    const void *buffer = nullptr;
    size_t size = 0;
    bool sawSize = false;
    for (size_t i = 0;; i += 2) {
      auto key = reinterpret_cast<uintptr_t>(extra[i]);
      if (key == 0) // CU_LAUNCH_PARAM_END
        break;
      if (key == 1) { // CU_LAUNCH_PARAM_BUFFER_POINTER
        buffer = extra[i + 1];
      } else if (key == 2 && extra[i + 1]) { // CU_LAUNCH_PARAM_BUFFER_SIZE
        size = *static_cast<const size_t *>(extra[i + 1]);
        sawSize = true;
      } else {
        return InvalidValue;
      }
    }
    if (!buffer || !sawSize || size != entry.paramBytes)
      return InvalidValue;
    std::memcpy(launch.params, buffer, std::min(size, sizeof(launch.params)));
    return Success;
  }
  if (!kernelParams)
    return entry.params.empty() ? Success : InvalidValue;
  size_t offset = 0;
  for (size_t i = 0; i < entry.params.size(); ++i) {
    const standin::PtxParam &p = entry.params[i];
    offset = (offset + p.alignment - 1) / p.alignment * p.alignment;
    if (!kernelParams[i])
      return InvalidValue;
    if (offset + p.bytes <= sizeof(launch.params))
      std::memcpy(launch.params + offset, kernelParams[i], p.bytes);
    offset += p.bytes;
  }
  return Success;
}

/// The launch checks of cuLaunchKernel and cuLaunchKernelEx.
int launch(State &s, void *function, const unsigned grid[3],
           const unsigned block[3], unsigned shared, void *stream,
           void **kernelParams, void **extra, bool programmatic) {
  Function *f = findFunction(s, function);
  if (!f)
    return InvalidHandle;
  if (!validStream(s, stream))
    return InvalidHandle;
  const paged_attn_standin_device &d = s.device;
  for (int i = 0; i < 3; ++i)
    if (grid[i] == 0 || grid[i] > unsigned(d.grid_dims[i]) || block[i] == 0 ||
        block[i] > unsigned(d.block_dims[i]))
      return InvalidValue;
  uint64_t threads = uint64_t(block[0]) * block[1] * block[2];
  if (threads > uint64_t(d.threads_per_block))
    return InvalidValue;
  const standin::PtxEntry &entry = *f->entry;
  if (entry.requiredThreads[0] && (block[0] != entry.requiredThreads[0] ||
                                   block[1] != entry.requiredThreads[1] ||
                                   block[2] != entry.requiredThreads[2]))
    return InvalidValue;
  if (entry.maxThreads && threads > entry.maxThreads)
    return LaunchOutOfResources;
  if (shared > unsigned(dynamicSharedLimit(s, *f)))
    return InvalidValue;

  Operation op;
  op.isLaunch = true;
  paged_attn_standin_launch &l = op.launch;
  std::snprintf(l.kernel, sizeof(l.kernel), "%s", f->name.c_str());
  std::copy(grid, grid + 3, l.grid);
  std::copy(block, block + 3, l.block);
  l.dynamic_shared_bytes = shared;
  l.stream = stream;
  l.programmatic = programmatic;
  if (int r = packParams(entry, kernelParams, extra, l))
    return r;
  if (Stream *capturing = capturingStream(s, stream)) {
    capturing->captured.push_back(std::move(op));
    return Success;
  }
  s.launches.push_back(l);
  logLaunch(s, l);
  return Success;
}

/// Runs `copy` now, or records it when `stream` is capturing.
int enqueue(State &s, void *stream, std::function<void()> copy) {
  if (!validStream(s, stream))
    return InvalidHandle;
  if (Stream *capturing = capturingStream(s, stream)) {
    Operation op;
    op.run = std::move(copy);
    capturing->captured.push_back(std::move(op));
    return Success;
  }
  copy();
  return Success;
}

/// Fails a synchronous call made while a global-mode capture is running,
/// and invalidates that capture, as the driver does.
bool rejectDuringCapture(State &s) {
  if (!anyGlobalCapture(s))
    return false;
  for (Stream *stream : s.streams)
    if (stream->capturing && stream->mode == 0)
      stream->invalidated = true;
  return true;
}

void writeLog(void **values, int bufferIndex, int sizeIndex,
              const std::string &text) {
  if (bufferIndex < 0 || sizeIndex < 0)
    return;
  char *buffer = static_cast<char *>(values[bufferIndex]);
  auto capacity = reinterpret_cast<uintptr_t>(values[sizeIndex]);
  if (!buffer || capacity == 0)
    return;
  size_t n = std::min<size_t>(text.size(), capacity - 1);
  std::memcpy(buffer, text.data(), n);
  buffer[n] = '\0';
  values[sizeIndex] = reinterpret_cast<void *>(uintptr_t(n));
}

/// The JIT's verdict on `ptx` for the current device.
int checkModule(const State &s, const standin::PtxModule &ptx,
                std::string &log) {
  const paged_attn_standin_device &d = s.device;
  int isa = ptx.versionMajor * 10 + ptx.versionMinor;
  if (isa > d.ptx_isa) {
    log = "ptxas application ptx input: fatal   : Unsupported .version " +
          std::to_string(ptx.versionMajor) + "." +
          std::to_string(ptx.versionMinor) + "; current version is '" +
          std::to_string(d.ptx_isa / 10) + "." +
          std::to_string(d.ptx_isa % 10) + "'";
    return UnsupportedPtxVersion;
  }
  int deviceSM = d.compute_major * 10 + d.compute_minor;
  if (ptx.targetSM > deviceSM) {
    log = "ptxas application ptx input: error   : SM version specified by "
          ".target (sm_" +
          std::to_string(ptx.targetSM) + ") is higher than the device's (sm_" +
          std::to_string(deviceSM) + ")";
    return InvalidPtx;
  }
  for (auto &[name, entry] : ptx.entries)
    if (entry.staticSharedBytes > size_t(d.shared_per_block)) {
      log = "ptxas error   : Entry function '" + name +
            "' uses too much shared data (" +
            std::to_string(entry.staticSharedBytes) + " bytes, " +
            std::to_string(d.shared_per_block) + " max)";
      return InvalidPtx;
    }
  return Success;
}

} // namespace

//===----------------------------------------------------------------------===//
// Initialisation, devices and contexts
//===----------------------------------------------------------------------===//

STANDIN_EXPORT int cuInit(unsigned flags) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (int r = injected(s, "cuInit"))
    return r;
  if (flags != 0)
    return InvalidValue;
  if (!s.initialized) {
    if (const char *path = std::getenv("PAGED_ATTN_STANDIN_LOG"))
      s.log = std::fopen(path, "a");
    s.initialized = true;
  }
  return Success;
}

STANDIN_EXPORT int cuDriverGetVersion(int *version) {
  if (!version)
    return InvalidValue;
  *version = 12080;
  return Success;
}

STANDIN_EXPORT int cuDeviceGetCount(int *count) {
  ENTER("cuDeviceGetCount")
  if (!count)
    return InvalidValue;
  *count = 1;
  return Success;
}

STANDIN_EXPORT int cuDeviceGet(int *device, int ordinal) {
  ENTER("cuDeviceGet")
  if (!device)
    return InvalidValue;
  if (ordinal != 0)
    return InvalidDevice;
  *device = 0;
  return Success;
}

STANDIN_EXPORT int cuDeviceGetAttribute(int *value, int attribute, int device) {
  ENTER("cuDeviceGetAttribute")
  if (!value)
    return InvalidValue;
  if (device != 0)
    return InvalidDevice;
  const paged_attn_standin_device &d = s.device;
  switch (attribute) {
  case 1: // MAX_THREADS_PER_BLOCK
    *value = d.threads_per_block;
    return Success;
  case 2:
  case 3:
  case 4: // MAX_BLOCK_DIM_X, _Y, _Z
    *value = d.block_dims[attribute - 2];
    return Success;
  case 5:
  case 6:
  case 7: // MAX_GRID_DIM_X, _Y, _Z
    *value = d.grid_dims[attribute - 5];
    return Success;
  case 8: // MAX_SHARED_MEMORY_PER_BLOCK
    *value = d.shared_per_block;
    return Success;
  case 10: // WARP_SIZE
    *value = 32;
    return Success;
  case 12: // MAX_REGISTERS_PER_BLOCK
    *value = d.registers_per_block;
    return Success;
  case 16: // MULTIPROCESSOR_COUNT
    *value = d.multiprocessors;
    return Success;
  case 39: // MAX_THREADS_PER_MULTIPROCESSOR
    *value = d.threads_per_multiprocessor;
    return Success;
  case 75: // COMPUTE_CAPABILITY_MAJOR
    *value = d.compute_major;
    return Success;
  case 76: // COMPUTE_CAPABILITY_MINOR
    *value = d.compute_minor;
    return Success;
  case 81: // MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
    *value = d.shared_per_multiprocessor;
    return Success;
  case 97: // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
    *value = d.shared_per_block_optin;
    return Success;
  case 106: // MAX_BLOCKS_PER_MULTIPROCESSOR
    *value = d.blocks_per_multiprocessor;
    return Success;
  default:
    return InvalidValue;
  }
}

STANDIN_EXPORT int cuDeviceGetName(char *name, int length, int device) {
  ENTER("cuDeviceGetName")
  if (!name || length <= 0)
    return InvalidValue;
  if (device != 0)
    return InvalidDevice;
  std::snprintf(name, size_t(length), "%s", s.device.name);
  return Success;
}

STANDIN_EXPORT int cuDevicePrimaryCtxRetain(void **context, int device) {
  ENTER("cuDevicePrimaryCtxRetain")
  if (!context)
    return InvalidValue;
  if (device != 0)
    return InvalidDevice;
  *context = &primaryContext;
  return Success;
}

STANDIN_EXPORT int cuCtxGetCurrent(void **context) {
  ENTER("cuCtxGetCurrent")
  if (!context)
    return InvalidValue;
  *context = currentContext;
  return Success;
}

STANDIN_EXPORT int cuCtxSetCurrent(void *context) {
  ENTER("cuCtxSetCurrent")
  if (context && context != &primaryContext)
    return InvalidContext;
  currentContext = context;
  return Success;
}

STANDIN_EXPORT int cuCtxGetDevice(int *device) {
  ENTER_WITH_CONTEXT("cuCtxGetDevice")
  if (!device)
    return InvalidValue;
  *device = 0;
  return Success;
}

STANDIN_EXPORT int cuCtxSynchronize() {
  ENTER_WITH_CONTEXT("cuCtxSynchronize")
  return rejectDuringCapture(s) ? CaptureUnsupported : Success;
}

STANDIN_EXPORT int cuGetErrorName(int result, const char **name) {
  if (!name)
    return InvalidValue;
  for (const ErrorText &e : kErrors)
    if (e.code == result) {
      *name = e.name;
      return Success;
    }
  *name = nullptr;
  return InvalidValue;
}

STANDIN_EXPORT int cuGetErrorString(int result, const char **text) {
  if (!text)
    return InvalidValue;
  for (const ErrorText &e : kErrors)
    if (e.code == result) {
      *text = e.text;
      return Success;
    }
  *text = nullptr;
  return InvalidValue;
}

//===----------------------------------------------------------------------===//
// Modules and functions
//===----------------------------------------------------------------------===//

STANDIN_EXPORT int cuModuleLoadDataEx(void **module, const void *image,
                                      unsigned numOptions, int *options,
                                      void **values) {
  ENTER_WITH_CONTEXT("cuModuleLoadDataEx")
  if (!module || !image || (numOptions && (!options || !values)))
    return InvalidValue;
  int errorLog = -1, errorSize = -1, infoLog = -1, infoSize = -1;
  long optLevel = -1;
  for (unsigned i = 0; i < numOptions; ++i) {
    switch (options[i]) {
    case kJitOptimizationLevel:
      optLevel = long(reinterpret_cast<intptr_t>(values[i]));
      if (optLevel < 0 || optLevel > 4)
        return InvalidValue;
      break;
    case kJitErrorLog:
      errorLog = int(i);
      break;
    case kJitErrorLogSize:
      errorSize = int(i);
      break;
    case kJitInfoLog:
      infoLog = int(i);
      break;
    case kJitInfoLogSize:
      infoSize = int(i);
      break;
    default:
      if (options[i] < 0 || options[i] > kJitLastOption)
        return InvalidValue;
    }
  }
  const char *text = static_cast<const char *>(image);
  if (std::strncmp(text,
                   "\x7f"
                   "ELF",
                   4) == 0) {
    writeLog(values, errorLog, errorSize,
             "the stand-in driver loads PTX only, not cubins");
    return InvalidImage;
  }
  auto m = std::make_unique<Module>();
  std::string log;
  if (!standin::scanPtx(text, m->ptx, log)) {
    writeLog(values, errorLog, errorSize,
             "ptxas application ptx input: " + log);
    return log.compare(0, 7, "not PTX") == 0 ? InvalidImage : InvalidPtx;
  }
  if (int r = checkModule(s, m->ptx, log)) {
    writeLog(values, errorLog, errorSize, log);
    return r;
  }
  for (auto &[name, entry] : m->ptx.entries) {
    auto f = std::make_unique<Function>();
    f->name = name;
    f->entry = &entry;
    m->functions[name] = std::move(f);
  }
  writeLog(
      values, infoLog, infoSize,
      "info    : stand-in driver: " + std::to_string(m->ptx.entries.size()) +
          " entries, not compiled");
  logEvent(s, "module-load entries=%zu jit-opt-level=%ld",
           m->ptx.entries.size(), optLevel);
  *module = m.get();
  s.modules.insert(m.release());
  return Success;
}

STANDIN_EXPORT int cuModuleGetFunction(void **function, void *module,
                                       const char *name) {
  ENTER_WITH_CONTEXT("cuModuleGetFunction")
  if (!function || !name)
    return InvalidValue;
  auto *m = static_cast<Module *>(module);
  if (!s.modules.count(m))
    return InvalidHandle;
  auto it = m->functions.find(name);
  if (it == m->functions.end())
    return NotFound;
  *function = it->second.get();
  return Success;
}

STANDIN_EXPORT int cuModuleUnload(void *module) {
  ENTER_WITH_CONTEXT("cuModuleUnload")
  auto *m = static_cast<Module *>(module);
  if (!s.modules.erase(m))
    return InvalidHandle;
  delete m;
  logEvent(s, "module-unload");
  return Success;
}

STANDIN_EXPORT int cuFuncSetAttribute(void *function, int attribute,
                                      int value) {
  ENTER_WITH_CONTEXT("cuFuncSetAttribute")
  Function *f = findFunction(s, function);
  if (!f)
    return InvalidHandle;
  if (attribute == kFuncPreferredCarveout)
    return value >= -1 && value <= 100 ? Success : InvalidValue;
  if (attribute != kFuncMaxDynamicShared)
    return InvalidValue;
  int64_t room = int64_t(s.device.shared_per_block_optin) -
                 int64_t(f->entry->staticSharedBytes);
  if (value < 0 || value > room)
    return InvalidValue;
  f->maxDynamicShared = value + int(f->entry->staticSharedBytes);
  return Success;
}

/// The offset and size of parameter `index` in the entry's parameter
/// space (CUDA 12.4); CUDA_ERROR_INVALID_VALUE past the last one.
STANDIN_EXPORT int cuFuncGetParamInfo(void *function, size_t index,
                                      size_t *offset, size_t *size) {
  ENTER("cuFuncGetParamInfo")
  Function *f = findFunction(s, function);
  if (!f)
    return InvalidHandle;
  const std::vector<standin::PtxParam> &params = f->entry->params;
  if (!offset || !size || index >= params.size())
    return InvalidValue;
  size_t at = 0;
  for (size_t i = 0;; ++i) {
    at = (at + params[i].alignment - 1) / params[i].alignment *
         params[i].alignment;
    if (i == index)
      break;
    at += params[i].bytes;
  }
  *offset = at;
  *size = params[index].bytes;
  return Success;
}

STANDIN_EXPORT int cuOccupancyMaxActiveBlocksPerMultiprocessor(
    int *blocks, void *function, int blockSize, size_t dynamicShared) {
  ENTER_WITH_CONTEXT("cuOccupancyMaxActiveBlocksPerMultiprocessor")
  if (!blocks)
    return InvalidValue;
  Function *f = findFunction(s, function);
  if (!f)
    return InvalidHandle;
  const paged_attn_standin_device &d = s.device;
  if (blockSize <= 0 || blockSize > d.threads_per_block ||
      dynamicShared > size_t(dynamicSharedLimit(s, *f))) {
    *blocks = 0;
    return Success;
  }
  // Warps, blocks and shared memory; registers are unknown without ptxas,
  // so assume 64 a thread.
  int warps = (blockSize + 31) / 32;
  int n = std::min(d.blocks_per_multiprocessor,
                   d.threads_per_multiprocessor / (warps * 32));
  n = std::min(n, d.registers_per_block / (warps * 32 * 64));
  size_t shared = dynamicShared + f->entry->staticSharedBytes;
  if (shared)
    n = std::min<int64_t>(n, d.shared_per_multiprocessor / (shared + 1024));
  *blocks = n;
  return Success;
}

STANDIN_EXPORT int cuLaunchKernel(void *function, unsigned gridX,
                                  unsigned gridY, unsigned gridZ,
                                  unsigned blockX, unsigned blockY,
                                  unsigned blockZ, unsigned sharedBytes,
                                  void *stream, void **kernelParams,
                                  void **extra) {
  ENTER_WITH_CONTEXT("cuLaunchKernel")
  const unsigned grid[3] = {gridX, gridY, gridZ};
  const unsigned block[3] = {blockX, blockY, blockZ};
  return launch(s, function, grid, block, sharedBytes, stream, kernelParams,
                extra, /*programmatic=*/false);
}

namespace {
/// cuda.h's CUlaunchAttribute and CUlaunchConfig.
struct LaunchAttribute {
  int id;
  char pad[4];
  union {
    char bytes[64];
    int programmaticStreamSerializationAllowed;
  } value;
};
struct LaunchConfig {
  unsigned grid[3];
  unsigned block[3];
  unsigned sharedMemBytes;
  void *stream;
  LaunchAttribute *attrs;
  unsigned numAttrs;
};
} // namespace

STANDIN_EXPORT int cuLaunchKernelEx(const LaunchConfig *config, void *function,
                                    void **kernelParams, void **extra) {
  ENTER_WITH_CONTEXT("cuLaunchKernelEx")
  if (!config || (config->numAttrs && !config->attrs))
    return InvalidValue;
  bool programmatic = false;
  for (unsigned i = 0; i < config->numAttrs; ++i) {
    const LaunchAttribute &a = config->attrs[i];
    if (a.id <= 0 || a.id > kLaunchAttributeLast)
      return InvalidValue;
    if (a.id == kLaunchAttributeProgrammatic)
      programmatic = a.value.programmaticStreamSerializationAllowed != 0;
  }
  return launch(s, function, config->grid, config->block,
                config->sharedMemBytes, config->stream, kernelParams, extra,
                programmatic);
}

//===----------------------------------------------------------------------===//
// Memory
//===----------------------------------------------------------------------===//

namespace {
/// cuMemAlloc and cuMemAllocManaged: host memory either way.
int allocate(State &s, unsigned long long *ptr, size_t bytes, bool managed) {
  if (!ptr || bytes == 0)
    return InvalidValue;
  if (rejectDuringCapture(s))
    return CaptureUnsupported;
  size_t rounded = (bytes + 255) / 256 * 256;
  void *memory = rounded < bytes ? nullptr : std::aligned_alloc(256, rounded);
  if (!memory)
    return OutOfMemory;
  s.allocations[reinterpret_cast<uintptr_t>(memory)] = bytes;
  *ptr = reinterpret_cast<uintptr_t>(memory);
  logEvent(s, "alloc bytes=%zu managed=%d", bytes, int(managed));
  return Success;
}
} // namespace

STANDIN_EXPORT int cuMemAlloc_v2(unsigned long long *ptr, size_t bytes) {
  ENTER_WITH_CONTEXT("cuMemAlloc_v2")
  return allocate(s, ptr, bytes, /*managed=*/false);
}

STANDIN_EXPORT int cuMemAllocManaged(unsigned long long *ptr, size_t bytes,
                                     unsigned flags) {
  ENTER_WITH_CONTEXT("cuMemAllocManaged")
  if (flags != 1 && flags != 2) // CU_MEM_ATTACH_GLOBAL or _HOST
    return InvalidValue;
  return allocate(s, ptr, bytes, /*managed=*/true);
}

STANDIN_EXPORT int cuMemFree_v2(unsigned long long ptr) {
  ENTER_WITH_CONTEXT("cuMemFree_v2")
  if (ptr == 0)
    return Success;
  if (rejectDuringCapture(s))
    return CaptureUnsupported;
  auto it = s.allocations.find(uintptr_t(ptr));
  if (it == s.allocations.end())
    return InvalidValue;
  std::free(reinterpret_cast<void *>(it->first));
  s.allocations.erase(it);
  logEvent(s, "free");
  return Success;
}

/// Unified addressing: a pointer is device memory, registered host memory
/// or other host memory, and copies between any two are allowed.
STANDIN_EXPORT int cuMemcpyAsync(unsigned long long dst, unsigned long long src,
                                 size_t bytes, void *stream) {
  ENTER_WITH_CONTEXT("cuMemcpyAsync")
  if (bytes && (!dst || !src))
    return InvalidValue;
  return enqueue(s, stream, [=] {
    if (bytes)
      std::memmove(reinterpret_cast<void *>(dst),
                   reinterpret_cast<const void *>(src), bytes);
  });
}

STANDIN_EXPORT int cuMemcpyHtoD_v2(unsigned long long dst, const void *src,
                                   size_t bytes) {
  ENTER_WITH_CONTEXT("cuMemcpyHtoD_v2")
  if (bytes && (!src || !inAllocation(s, dst, bytes)))
    return InvalidValue;
  if (rejectDuringCapture(s))
    return CaptureUnsupported;
  if (bytes)
    std::memcpy(reinterpret_cast<void *>(dst), src, bytes);
  return Success;
}

STANDIN_EXPORT int cuMemcpyDtoH_v2(void *dst, unsigned long long src,
                                   size_t bytes) {
  ENTER_WITH_CONTEXT("cuMemcpyDtoH_v2")
  if (bytes && (!dst || !inAllocation(s, src, bytes)))
    return InvalidValue;
  if (rejectDuringCapture(s))
    return CaptureUnsupported;
  if (bytes)
    std::memcpy(dst, reinterpret_cast<const void *>(src), bytes);
  return Success;
}

STANDIN_EXPORT int cuMemcpyHtoDAsync_v2(unsigned long long dst, const void *src,
                                        size_t bytes, void *stream) {
  ENTER_WITH_CONTEXT("cuMemcpyHtoDAsync_v2")
  if (bytes && (!src || !inAllocation(s, dst, bytes)))
    return InvalidValue;
  return enqueue(s, stream, [=] {
    if (bytes)
      std::memcpy(reinterpret_cast<void *>(dst), src, bytes);
  });
}

STANDIN_EXPORT int cuMemcpyDtoHAsync_v2(void *dst, unsigned long long src,
                                        size_t bytes, void *stream) {
  ENTER_WITH_CONTEXT("cuMemcpyDtoHAsync_v2")
  if (bytes && (!dst || !inAllocation(s, src, bytes)))
    return InvalidValue;
  return enqueue(s, stream, [=] {
    if (bytes)
      std::memcpy(dst, reinterpret_cast<const void *>(src), bytes);
  });
}

STANDIN_EXPORT int cuMemsetD8Async(unsigned long long dst, unsigned char value,
                                   size_t count, void *stream) {
  ENTER_WITH_CONTEXT("cuMemsetD8Async")
  if (count && !inAllocation(s, dst, count))
    return InvalidValue;
  return enqueue(s, stream, [=] {
    std::memset(reinterpret_cast<void *>(dst), value, count);
  });
}

STANDIN_EXPORT int cuMemsetD32Async(unsigned long long dst, unsigned value,
                                    size_t count, void *stream) {
  ENTER_WITH_CONTEXT("cuMemsetD32Async")
  if (dst % 4 != 0 || count > SIZE_MAX / 4 ||
      (count && !inAllocation(s, dst, count * 4)))
    return InvalidValue;
  return enqueue(s, stream, [=] {
    auto *words = reinterpret_cast<unsigned *>(dst);
    std::fill(words, words + count, value);
  });
}

STANDIN_EXPORT int cuMemsetD16Async(unsigned long long dst,
                                    unsigned short value, size_t count,
                                    void *stream) {
  ENTER_WITH_CONTEXT("cuMemsetD16Async")
  if (dst % 2 != 0 || count > SIZE_MAX / 2 ||
      (count && !inAllocation(s, dst, count * 2)))
    return InvalidValue;
  return enqueue(s, stream, [=] {
    auto *halves = reinterpret_cast<unsigned short *>(dst);
    std::fill(halves, halves + count, value);
  });
}

STANDIN_EXPORT int cuMemHostRegister_v2(void *ptr, size_t bytes,
                                        unsigned flags) {
  ENTER_WITH_CONTEXT("cuMemHostRegister_v2")
  if (!ptr || bytes == 0 || flags > 0xF)
    return InvalidValue;
  auto start = reinterpret_cast<uintptr_t>(ptr);
  auto next = s.registered.lower_bound(start);
  if ((next != s.registered.end() && next->first < start + bytes) ||
      (next != s.registered.begin() &&
       std::prev(next)->first + std::prev(next)->second > start))
    return HostMemoryAlreadyRegistered;
  s.registered[start] = bytes;
  logEvent(s, "host-register bytes=%zu", bytes);
  return Success;
}

STANDIN_EXPORT int cuMemHostUnregister(void *ptr) {
  ENTER_WITH_CONTEXT("cuMemHostUnregister")
  if (!s.registered.erase(reinterpret_cast<uintptr_t>(ptr)))
    return HostMemoryNotRegistered;
  logEvent(s, "host-unregister");
  return Success;
}

STANDIN_EXPORT int cuPointerGetAttribute(void *data, int attribute,
                                         unsigned long long ptr) {
  ENTER("cuPointerGetAttribute")
  if (!data)
    return InvalidValue;
  // Pointers the driver did not allocate are unknown to it.
  if (!inAllocation(s, uintptr_t(ptr), 0))
    return InvalidValue;
  switch (attribute) {
  case kPointerContext:
    *static_cast<void **>(data) = &primaryContext;
    return Success;
  case kPointerMemoryType:
    *static_cast<unsigned *>(data) = kMemoryTypeDevice;
    return Success;
  case kPointerDevicePointer:
    *static_cast<unsigned long long *>(data) = ptr;
    return Success;
  default:
    return InvalidValue;
  }
}

//===----------------------------------------------------------------------===//
// Streams, events and graphs
//===----------------------------------------------------------------------===//

STANDIN_EXPORT int cuStreamCreate(void **stream, unsigned flags) {
  ENTER_WITH_CONTEXT("cuStreamCreate")
  if (!stream || flags > 1) // CU_STREAM_DEFAULT or CU_STREAM_NON_BLOCKING
    return InvalidValue;
  auto *st = new Stream;
  s.streams.insert(st);
  *stream = st;
  return Success;
}

STANDIN_EXPORT int cuStreamDestroy_v2(void *stream) {
  ENTER_WITH_CONTEXT("cuStreamDestroy_v2")
  auto *st = static_cast<Stream *>(stream);
  if (!s.streams.erase(st))
    return InvalidHandle;
  delete st;
  return Success;
}

STANDIN_EXPORT int cuStreamSynchronize(void *stream) {
  ENTER_WITH_CONTEXT("cuStreamSynchronize")
  if (!validStream(s, stream))
    return InvalidHandle;
  if (Stream *capturing = capturingStream(s, stream)) {
    capturing->invalidated = true;
    return CaptureUnsupported;
  }
  return Success;
}

STANDIN_EXPORT int cuStreamBeginCapture_v2(void *stream, int mode) {
  ENTER_WITH_CONTEXT("cuStreamBeginCapture_v2")
  if (mode < 0 || mode > 2)
    return InvalidValue;
  if (reinterpret_cast<uintptr_t>(stream) <= 2)
    return CaptureUnsupported; // the legacy stream cannot be captured
  auto *st = static_cast<Stream *>(stream);
  if (!s.streams.count(st))
    return InvalidHandle;
  if (st->capturing)
    return IllegalState;
  st->capturing = true;
  st->invalidated = false;
  st->mode = mode;
  st->captured.clear();
  return Success;
}

STANDIN_EXPORT int cuStreamEndCapture(void *stream, void **graph) {
  ENTER_WITH_CONTEXT("cuStreamEndCapture")
  if (!graph)
    return InvalidValue;
  auto *st = static_cast<Stream *>(stream);
  if (reinterpret_cast<uintptr_t>(stream) <= 2 || !s.streams.count(st))
    return InvalidHandle;
  if (!st->capturing)
    return IllegalState;
  st->capturing = false;
  if (st->invalidated) {
    st->captured.clear();
    *graph = nullptr;
    return CaptureInvalidated;
  }
  auto *g = new Graph;
  g->operations = std::move(st->captured);
  st->captured.clear();
  s.graphs.insert(g);
  *graph = g;
  return Success;
}

STANDIN_EXPORT int cuGraphInstantiateWithFlags(void **exec, void *graph,
                                               unsigned long long flags) {
  ENTER_WITH_CONTEXT("cuGraphInstantiateWithFlags")
  (void)flags;
  auto *g = static_cast<Graph *>(graph);
  if (!exec)
    return InvalidValue;
  if (!s.graphs.count(g))
    return InvalidHandle;
  auto *e = new Graph(*g);
  s.graphExecs.insert(e);
  *exec = e;
  return Success;
}

STANDIN_EXPORT int cuGraphLaunch(void *exec, void *stream) {
  ENTER_WITH_CONTEXT("cuGraphLaunch")
  auto *e = static_cast<Graph *>(exec);
  if (!s.graphExecs.count(e) || !validStream(s, stream))
    return InvalidHandle;
  for (Operation &op : e->operations) {
    if (!op.isLaunch) {
      op.run();
      continue;
    }
    paged_attn_standin_launch l = op.launch;
    l.stream = stream;
    l.from_graph = 1;
    s.launches.push_back(l);
    logLaunch(s, l);
  }
  return Success;
}

STANDIN_EXPORT int cuGraphExecDestroy(void *exec) {
  ENTER_WITH_CONTEXT("cuGraphExecDestroy")
  auto *e = static_cast<Graph *>(exec);
  if (!s.graphExecs.erase(e))
    return InvalidHandle;
  delete e;
  return Success;
}

STANDIN_EXPORT int cuGraphDestroy(void *graph) {
  ENTER_WITH_CONTEXT("cuGraphDestroy")
  auto *g = static_cast<Graph *>(graph);
  if (!s.graphs.erase(g))
    return InvalidHandle;
  delete g;
  return Success;
}

STANDIN_EXPORT int cuEventCreate(void **event, unsigned flags) {
  ENTER_WITH_CONTEXT("cuEventCreate")
  if (!event || flags > 0xF)
    return InvalidValue;
  auto *e = new Event;
  e->flags = flags;
  s.events.insert(e);
  *event = e;
  return Success;
}

STANDIN_EXPORT int cuEventRecord(void *event, void *stream) {
  ENTER_WITH_CONTEXT("cuEventRecord")
  auto *e = static_cast<Event *>(event);
  if (!s.events.count(e) || !validStream(s, stream))
    return InvalidHandle;
  e->recorded = true;
  return Success;
}

STANDIN_EXPORT int cuEventSynchronize(void *event) {
  ENTER_WITH_CONTEXT("cuEventSynchronize")
  return s.events.count(static_cast<Event *>(event)) ? Success : InvalidHandle;
}

STANDIN_EXPORT int cuEventElapsedTime(float *ms, void *start, void *end) {
  ENTER_WITH_CONTEXT("cuEventElapsedTime")
  auto *a = static_cast<Event *>(start), *b = static_cast<Event *>(end);
  if (!ms)
    return InvalidValue;
  if (!s.events.count(a) || !s.events.count(b) || !a->recorded ||
      !b->recorded || (a->flags & 2) || (b->flags & 2)) // DISABLE_TIMING
    return InvalidHandle;
  *ms = 0.001f; // no kernel ran
  return Success;
}

STANDIN_EXPORT int cuStreamWaitEvent(void *stream, void *event,
                                     unsigned flags) {
  ENTER_WITH_CONTEXT("cuStreamWaitEvent")
  if (flags > 1) // CU_EVENT_WAIT_DEFAULT or CU_EVENT_WAIT_EXTERNAL
    return InvalidValue;
  if (!validStream(s, stream) || !s.events.count(static_cast<Event *>(event)))
    return InvalidHandle;
  return Success;
}

STANDIN_EXPORT int cuEventDestroy_v2(void *event) {
  ENTER_WITH_CONTEXT("cuEventDestroy_v2")
  auto *e = static_cast<Event *>(event);
  if (!s.events.erase(e))
    return InvalidHandle;
  delete e;
  return Success;
}

//===----------------------------------------------------------------------===//
// Inspection (StandinDriver.h)
//===----------------------------------------------------------------------===//

STANDIN_EXPORT size_t paged_attn_standin_launch_count(void) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.launches.size();
}

STANDIN_EXPORT int
paged_attn_standin_get_launch(size_t index, paged_attn_standin_launch *out) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!out || index >= s.launches.size())
    return 0;
  *out = s.launches[index];
  return 1;
}

STANDIN_EXPORT void paged_attn_standin_clear_launches(void) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.launches.clear();
}

STANDIN_EXPORT void
paged_attn_standin_get_device(paged_attn_standin_device *device) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (device)
    *device = s.device;
}

STANDIN_EXPORT void
paged_attn_standin_set_device(const paged_attn_standin_device *device) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (device)
    s.device = *device;
}

STANDIN_EXPORT int paged_attn_standin_opted_in_shared(const char *kernel) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!kernel)
    return -1;
  for (Module *m : s.modules) {
    auto it = m->functions.find(kernel);
    if (it != m->functions.end() && it->second->maxDynamicShared)
      return it->second->maxDynamicShared -
             int(it->second->entry->staticSharedBytes);
  }
  for (Module *m : s.modules)
    if (m->functions.count(kernel))
      return 0;
  return -1;
}

STANDIN_EXPORT size_t paged_attn_standin_live_allocations(void) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.allocations.size();
}

STANDIN_EXPORT size_t paged_attn_standin_live_modules(void) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.modules.size();
}

STANDIN_EXPORT void paged_attn_standin_fail_next(const char *symbol,
                                                 int result) {
  paged_attn_standin_fail_after(symbol, 0, result);
}

STANDIN_EXPORT void paged_attn_standin_fail_after(const char *symbol, int calls,
                                                  int result) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (symbol)
    s.failNext[symbol] = {calls < 0 ? 0 : calls, result};
}
