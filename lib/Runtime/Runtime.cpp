//===- Runtime.cpp - load and launch paged decode kernels -----------------===//

#include "PagedAttn/Runtime/Runtime.h"

#include "CudaDriver.h"
#include "PagedAttn/Spec/Json.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

using namespace paged_attn;
using namespace paged_attn::cuda;

//===----------------------------------------------------------------------===//
// Small helpers
//===----------------------------------------------------------------------===//

Tensor Tensor::contiguous(void *data, DType dtype,
                          std::initializer_list<int64_t> sizes) {
  Tensor t;
  t.data = data;
  t.dtype = dtype;
  t.rank = static_cast<int>(std::min<size_t>(sizes.size(), 4));
  int i = 0;
  for (int64_t s : sizes)
    if (i < 4)
      t.sizes[i++] = s;
  int64_t stride = 1;
  for (int d = t.rank - 1; d >= 0; --d) {
    t.strides[d] = stride;
    stride *= t.sizes[d];
  }
  return t;
}

int64_t Tensor::numElements() const {
  int64_t n = 1;
  for (int d = 0; d < rank; ++d)
    n *= sizes[d];
  return n;
}

static std::string shapeString(const Tensor &t) {
  std::ostringstream os;
  os << "[";
  for (int d = 0; d < t.rank; ++d)
    os << (d ? ", " : "") << t.sizes[d];
  os << "]";
  return os.str();
}

static Status invalid(const std::string &message) {
  return Status(StatusCode::InvalidArgument, message);
}

static size_t alignUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

//===----------------------------------------------------------------------===//
// Manifest
//===----------------------------------------------------------------------===//

namespace paged_attn {
/// One kernel pair (and its check kernel) from a manifest.
struct KernelSpec {
  KernelConfig config;
  std::string decodeName, mergeName, checkName;
  int64_t ctasPerKVHead = 1;
  int64_t decodeBlock = 128, mergeBlock = 32, checkBlock = 128;
  int64_t tokensPerIteration = 1;
  /// Dynamic shared memory of the decode kernel (0 in older manifests).
  int64_t decodeDynamicSharedBytes = 0;
  /// The merge kernel waits on griddepcontrol and may be launched while
  /// the decode grid runs.
  bool mergeProgrammaticLaunch = false;
  /// The decode kernel computes with mma.sync (the config's tensor_cores).
  bool tensorCores = false;
  std::shared_ptr<const std::string> ptx; // NUL-terminated
  /// Never reused within a process, unlike addresses: cache keys.
  uint64_t id = 0, ptxId = 0;
};

static uint64_t nextUniqueId() {
  static std::atomic<uint64_t> next{1};
  return next++;
}
} // namespace paged_attn

struct KernelLibrary::Impl {
  std::vector<std::unique_ptr<KernelSpec>> specs;
};

KernelLibrary::KernelLibrary() : impl_(new Impl) {}
KernelLibrary::~KernelLibrary() = default;

static bool readFile(const std::string &path, std::string &out) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return !in.bad();
}

static bool getInt(const json::Value &obj, const char *key, int64_t &out) {
  const json::Value *v = obj.get(key);
  if (!v || !v->isNumber())
    return false;
  out = static_cast<int64_t>(v->number);
  return true;
}

static bool getString(const json::Value &obj, const char *key,
                      std::string &out) {
  const json::Value *v = obj.get(key);
  if (!v || !v->isString())
    return false;
  out = v->string;
  return true;
}

/// The decode kernel's parameters as the runtime passes them.
static const char *const kDecodeParamNames[] = {
    "q",   "k_cache",     "v_cache",     "block_table", "seq_lens",
    "out", "partial_out", "partial_lse", "scale",       "num_splits"};

static Status parseKernel(const json::Value &entry, const std::string &where,
                          std::shared_ptr<const std::string> ptx,
                          std::unique_ptr<KernelSpec> *result) {
  auto bad = [&](const std::string &what) {
    return Status(StatusCode::ParseError, where + ": " + what);
  };
  const json::Value *config = entry.get("config");
  const json::Value *decode = entry.get("decode");
  const json::Value *merge = entry.get("merge");
  const json::Value *check = entry.get("check");
  const json::Value *split = entry.get("split_kv");
  if (!config || !decode || !merge || !check || !split)
    return bad("a kernel entry needs config, decode, merge, check, split_kv");
  auto spec = std::make_unique<KernelSpec>();
  KernelConfig &c = spec->config;
  std::string dtype, layout;
  if (!getInt(*config, "num_heads", c.numHeads) ||
      !getInt(*config, "num_kv_heads", c.numKVHeads) ||
      !getInt(*config, "head_dim", c.headDim) ||
      !getInt(*config, "page_size", c.pageSize) ||
      !getInt(*config, "num_warps", c.numWarps) ||
      !getString(*config, "dtype", dtype) ||
      !getString(*config, "layout", layout))
    return bad("incomplete config");
  if (const json::Value *tc = config->get("tensor_cores")) {
    if (!tc->isBool())
      return bad("tensor_cores of the config is not a boolean");
    spec->tensorCores = tc->boolean;
  }
  if (dtype == "f16")
    c.dtype = DType::F16;
  else if (dtype == "bf16")
    c.dtype = DType::BF16;
  else if (dtype == "f32")
    c.dtype = DType::F32;
  else
    return bad("unknown dtype '" + dtype + "'");
  if (layout == "nhd")
    c.layout = Layout::NHD;
  else if (layout == "hnd")
    c.layout = Layout::HND;
  else
    return bad("unknown layout '" + layout + "'");

  auto blockX = [](const json::Value &k, int64_t &out) {
    const json::Value *block = k.get("block");
    if (!block || !block->isArray() || block->array.empty() ||
        !block->array[0].isNumber())
      return false;
    out = static_cast<int64_t>(block->array[0].number);
    return true;
  };
  if (!getString(*decode, "name", spec->decodeName) ||
      !getString(*merge, "name", spec->mergeName) ||
      !getString(*check, "name", spec->checkName) ||
      !getInt(*decode, "ctas_per_kv_head", spec->ctasPerKVHead) ||
      !blockX(*decode, spec->decodeBlock) ||
      !blockX(*merge, spec->mergeBlock) || !blockX(*check, spec->checkBlock) ||
      !getInt(*split, "tokens_per_iteration", spec->tokensPerIteration))
    return bad("incomplete kernel description");
  if (decode->get("dynamic_shared_memory_bytes") &&
      (!getInt(*decode, "dynamic_shared_memory_bytes",
               spec->decodeDynamicSharedBytes) ||
       spec->decodeDynamicSharedBytes < 0))
    return bad("bad dynamic_shared_memory_bytes of the decode kernel");
  if (const json::Value *pdl = merge->get("programmatic_launch")) {
    if (!pdl->isBool())
      return bad("programmatic_launch of the merge kernel is not a boolean");
    spec->mergeProgrammaticLaunch = pdl->boolean;
  }

  // The runtime passes parameters in a fixed order: make sure the manifest
  // was written for it.
  const json::Value *params = decode->get("params");
  if (!params || !params->isArray() ||
      params->array.size() != std::size(kDecodeParamNames))
    return bad("decode kernel parameters do not match this runtime");
  for (size_t i = 0; i < params->array.size(); ++i) {
    std::string name;
    if (!getString(params->array[i], "name", name) ||
        name != kDecodeParamNames[i])
      return bad("decode kernel parameter " + std::to_string(i) + " is '" +
                 name + "', this runtime expects '" + kDecodeParamNames[i] +
                 "'");
  }
  spec->ptx = std::move(ptx);
  spec->id = nextUniqueId();
  *result = std::move(spec);
  return Status::ok();
}

Status KernelLibrary::load(const std::string &manifestPath,
                           std::shared_ptr<KernelLibrary> *result) {
  std::string text;
  if (!readFile(manifestPath, text))
    return Status(StatusCode::NotFound,
                  "cannot read manifest '" + manifestPath + "'");
  json::Value root;
  std::string error;
  if (!json::parse(text, root, error))
    return Status(StatusCode::ParseError,
                  manifestPath + ": invalid JSON: " + error);
  std::string format, ptxName;
  if (!getString(root, "format", format) || format != "paged_attn.manifest")
    return Status(StatusCode::ParseError,
                  manifestPath + ": not a paged_attn manifest");
  int64_t version = 0;
  if (!getInt(root, "version", version) || version != 1)
    return Status(StatusCode::ParseError,
                  manifestPath + ": unsupported manifest version " +
                      std::to_string(version));
  if (!getString(root, "ptx", ptxName))
    return Status(StatusCode::ParseError, manifestPath + ": no 'ptx' entry");
  std::string dir;
  size_t slash = manifestPath.find_last_of('/');
  if (slash != std::string::npos)
    dir = manifestPath.substr(0, slash + 1);
  std::string ptxPath =
      ptxName.size() && ptxName[0] == '/' ? ptxName : dir + ptxName;
  auto ptx = std::make_shared<std::string>();
  if (!readFile(ptxPath, *ptx))
    return Status(StatusCode::NotFound, "cannot read PTX '" + ptxPath +
                                            "' named by '" + manifestPath +
                                            "'");
  const json::Value *kernels = root.get("kernels");
  if (!kernels || !kernels->isArray() || kernels->array.empty())
    return Status(StatusCode::ParseError,
                  manifestPath + ": no 'kernels' entries");

  std::shared_ptr<KernelLibrary> library(new KernelLibrary);
  uint64_t ptxId = nextUniqueId();
  for (const json::Value &entry : kernels->array) {
    std::unique_ptr<KernelSpec> spec;
    Status s = parseKernel(entry, manifestPath, ptx, &spec);
    if (!s)
      return s;
    spec->ptxId = ptxId;
    library->impl_->specs.push_back(std::move(spec));
  }
  *result = std::move(library);
  return Status::ok();
}

Status KernelLibrary::loadDirectory(const std::string &directory,
                                    std::shared_ptr<KernelLibrary> *result) {
  DIR *dir = opendir(directory.c_str());
  if (!dir)
    return Status(StatusCode::NotFound,
                  "cannot open kernel directory '" + directory + "'");
  std::vector<std::string> manifests;
  while (dirent *entry = readdir(dir)) {
    std::string name = entry->d_name;
    if (name.size() > 5 && name.compare(name.size() - 5, 5, ".json") == 0)
      manifests.push_back(directory + "/" + name);
  }
  closedir(dir);
  std::sort(manifests.begin(), manifests.end());
  std::shared_ptr<KernelLibrary> library(new KernelLibrary);
  for (const std::string &path : manifests) {
    std::shared_ptr<KernelLibrary> one;
    Status s = load(path, &one);
    if (!s)
      return s;
    for (auto &spec : one->impl_->specs)
      library->impl_->specs.push_back(std::move(spec));
  }
  if (library->impl_->specs.empty())
    return Status(StatusCode::NotFound,
                  "no kernel manifests (*.json) in '" + directory + "'");
  *result = std::move(library);
  return Status::ok();
}

std::vector<KernelConfig> KernelLibrary::configs() const {
  std::vector<KernelConfig> result;
  for (const auto &spec : impl_->specs)
    result.push_back(spec->config);
  return result;
}

const KernelSpec *KernelLibrary::find(const KernelConfig &config) const {
  std::string name = config.name();
  for (const auto &spec : impl_->specs)
    if (spec->config.name() == name)
      return spec.get();
  return nullptr;
}

//===----------------------------------------------------------------------===//
// Driver state: contexts, module cache, device properties
//===----------------------------------------------------------------------===//

bool paged_attn::hasDriver(std::string *whyNot) {
  return getDriver(whyNot) != nullptr;
}

namespace {
struct LoadedKernels {
  CUfunction decode = nullptr, merge = nullptr, check = nullptr;
  /// Decode CTAs one SM holds at once (the driver's occupancy query).
  int decodeCTAsPerSM = 1;
};

/// Modules are loaded once per (context, PTX text) and kept for the life of
/// the process: kernels may still be in flight when a Decoder goes away.
class ModuleCache {
public:
  static ModuleCache &get() {
    static ModuleCache *cache = new ModuleCache;
    return *cache;
  }

  Status lookup(const Driver &d, CUcontext ctx, const KernelSpec &spec,
                LoadedKernels *out) {
    auto key = std::make_pair(ctx, spec.id);
    std::shared_ptr<ModuleSlot> slot;
    {
      std::lock_guard<std::mutex> lock(mutex);
      auto it = kernels.find(key);
      if (it != kernels.end()) {
        *out = it->second;
        return Status::ok();
      }
      std::shared_ptr<ModuleSlot> &entry =
          modules[std::make_pair(ctx, spec.ptxId)];
      if (!entry)
        entry = std::make_shared<ModuleSlot>();
      slot = entry;
    }
    // JIT compilation takes long: modules of different PTX load in
    // parallel, and threads that need the same one wait for its first load.
    std::call_once(slot->once, [&] {
      slot->status = loadModule(d, *spec.ptx, &slot->module);
    });
    if (!slot->status)
      return slot->status;
    CUmodule module = slot->module;
    LoadedKernels loaded;
    const std::pair<const std::string *, CUfunction *> entries[] = {
        {&spec.decodeName, &loaded.decode},
        {&spec.mergeName, &loaded.merge},
        {&spec.checkName, &loaded.check}};
    for (auto [name, fn] : entries) {
      CUresult r = d.cuModuleGetFunction(fn, module, name->c_str());
      if (r != CUDA_SUCCESS)
        return Status(StatusCode::NotFound,
                      "kernel '" + *name +
                          "' not in its PTX: " + describe(d, r));
    }
    // Past 48 KiB a kernel's dynamic shared memory must be opted into.
    if (spec.decodeDynamicSharedBytes > 48 * 1024) {
      CUresult r = d.cuFuncSetAttribute(
          loaded.decode, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
          int(spec.decodeDynamicSharedBytes));
      if (r != CUDA_SUCCESS) {
        CUdevice device = 0;
        int limit = 0;
        if (d.cuCtxGetDevice(&device) == CUDA_SUCCESS)
          d.cuDeviceGetAttribute(
              &limit, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
              device);
        return Status(StatusCode::CudaError,
                      "kernel '" + spec.decodeName + "' needs " +
                          std::to_string(spec.decodeDynamicSharedBytes) +
                          " bytes of shared memory, this device allows " +
                          std::to_string(limit) + ": " + describe(d, r));
      }
    }
    int perSM = 0;
    if (d.cuOccupancyMaxActiveBlocksPerMultiprocessor(
            &perSM, loaded.decode, int(spec.decodeBlock),
            size_t(spec.decodeDynamicSharedBytes)) != CUDA_SUCCESS ||
        perSM < 1)
      perSM = 1;
    loaded.decodeCTAsPerSM = perSM;
    std::lock_guard<std::mutex> lock(mutex);
    kernels[key] = loaded;
    *out = loaded;
    return Status::ok();
  }

  int multiprocessorCount(const Driver &d, CUdevice device) {
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

private:
  static Status loadModule(const Driver &d, const std::string &ptx,
                           CUmodule *module) {
    char errorLog[8192] = {0}, infoLog[4096] = {0};
    int options[] = {CU_JIT_ERROR_LOG_BUFFER,
                     CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, CU_JIT_INFO_LOG_BUFFER,
                     CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES};
    void *values[] = {errorLog, reinterpret_cast<void *>(sizeof(errorLog)),
                      infoLog, reinterpret_cast<void *>(sizeof(infoLog))};
    CUresult r = d.cuModuleLoadDataEx(module, ptx.c_str(), 4, options, values);
    if (r != CUDA_SUCCESS) {
      std::string message = "loading PTX failed: " + describe(d, r);
      if (errorLog[0])
        message += "\nJIT log:\n" + std::string(errorLog);
      return Status(StatusCode::CudaError, message);
    }
    return Status::ok();
  }

  /// A module loaded once; its status is the load's.
  struct ModuleSlot {
    std::once_flag once;
    CUmodule module = nullptr;
    Status status;
  };

  std::mutex mutex;
  std::map<std::pair<CUcontext, uint64_t>, std::shared_ptr<ModuleSlot>>
      modules;
  std::map<std::pair<CUcontext, uint64_t>, LoadedKernels> kernels;
  std::map<CUdevice, int> smCounts;
};

/// The current context, or device 0's primary context made current.
Status currentContext(const Driver &d, CUcontext *ctx, CUdevice *device) {
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

Status requireDriver(const Driver **d) {
  std::string why;
  *d = getDriver(&why);
  if (!*d)
    return Status(StatusCode::NoDriver, why);
  return Status::ok();
}

/// Kernel parameters: each memref becomes its descriptor (allocated and
/// aligned pointer, offset, sizes, strides), as the manifest's ABI says,
/// packed into one buffer laid out as the kernel's parameter space (each
/// value at its natural alignment) and passed to cuLaunchKernel whole
/// (CU_LAUNCH_PARAM_BUFFER_POINTER): one copy instead of one per slot.
class ParamBuilder {
public:
  void memref(const void *data, int rank, const int64_t *sizes,
              const int64_t *strides) {
    put<uint64_t>(reinterpret_cast<uint64_t>(data));
    put<uint64_t>(reinterpret_cast<uint64_t>(data));
    put<int64_t>(0);
    for (int d = 0; d < rank; ++d)
      put<int64_t>(sizes[d]);
    for (int d = 0; d < rank; ++d)
      put<int64_t>(strides[d]);
  }
  void memref(const Tensor &t) { memref(t.data, t.rank, t.sizes, t.strides); }
  void f32(float v) { put<float>(v); }
  void i32(int32_t v) { put<int32_t>(v); }
  /// The `extra` argument of cuLaunchKernel.
  void **extra() {
    extra_[0] = reinterpret_cast<void *>(1); // CU_LAUNCH_PARAM_BUFFER_POINTER
    extra_[1] = bytes_;
    extra_[2] = reinterpret_cast<void *>(2); // CU_LAUNCH_PARAM_BUFFER_SIZE
    extra_[3] = &size_;
    extra_[4] = nullptr; // CU_LAUNCH_PARAM_END
    return extra_;
  }

private:
  template <typename T> void put(T v) {
    size_t at = (size_ + alignof(T) - 1) / alignof(T) * alignof(T);
    if (at + sizeof(T) > sizeof(bytes_))
      return; // cannot happen: the decode kernel needs about 600 bytes
    std::memcpy(bytes_ + at, &v, sizeof(T));
    size_ = at + sizeof(T);
  }
  // The decode kernel has the most: 8 memrefs of rank <= 4 (74 eight-byte
  // slots) and two 4-byte scalars. A fixed buffer keeps a launch free of
  // heap allocations.
  alignas(8) unsigned char bytes_[1024];
  size_t size_ = 0;
  void *extra_[5];
};

/// What the last decode() on this thread resolved: a repeated launch in the
/// same context skips the module cache's lock and lookups.
struct LaunchCache {
  uint64_t specId = 0;
  CUcontext ctx = nullptr;
  LoadedKernels kernels;
  int multiprocessors = 0;
  /// The split count chosen for the last (batch, max_seq_len).
  int64_t splitBatch = -1, splitMaxSeqLen = -1;
  int splits = 1;
};
thread_local LaunchCache lastLaunch;
} // namespace

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

//===----------------------------------------------------------------------===//
// Decoder
//===----------------------------------------------------------------------===//

Decoder::~Decoder() = default;

Status Decoder::create(std::shared_ptr<const KernelLibrary> library,
                       const KernelConfig &config,
                       std::unique_ptr<Decoder> *result) {
  if (!library)
    return invalid("no kernel library");
  // The op's rules first: a config that breaks one has no kernel anywhere.
  if (std::string error = config.validate(); !error.empty())
    return invalid(error);
  const KernelSpec *spec = library->find(config);
  if (!spec) {
    // Name a few of the library's configs: enough to spot a near miss
    // without a message as long as a test matrix.
    constexpr size_t kNamed = 8;
    std::vector<KernelConfig> configs = library->configs();
    std::string known;
    for (size_t i = 0; i < configs.size() && i < kNamed; ++i)
      known += (i ? ", " : "") + configs[i].name();
    if (configs.size() > kNamed)
      known += " and " + std::to_string(configs.size() - kNamed) + " more";
    return Status(StatusCode::NotFound, "no kernel for config " +
                                            config.name() +
                                            " (library holds: " + known + ")");
  }
  std::unique_ptr<Decoder> decoder(new Decoder);
  decoder->library_ = std::move(library);
  decoder->spec_ = spec;
  decoder->config_ = spec->config;
  *result = std::move(decoder);
  return Status::ok();
}

const char *Decoder::kernelKind() const {
  return spec_->tensorCores ? "tensor-cores" : "cuda-cores";
}

size_t Decoder::workspaceSize(int64_t batch, int numSplits) const {
  if (numSplits <= 1 || batch <= 0)
    return 0;
  size_t rows = size_t(batch) * config_.numHeads * numSplits;
  return alignUp(rows * config_.headDim * 4, 256) + alignUp(rows * 4, 256);
}

/// The split counts chooseNumSplits considers: each chunk at least four
/// loop iterations long, at most 256 chunks, and at most about four waves
/// of CTAs.
static int64_t maxUsefulSplits(int64_t ctas, int64_t maxSeqLen, int64_t slots,
                               int64_t tokensPerIteration) {
  int64_t byLength = maxSeqLen / (4 * tokensPerIteration);
  int64_t byWaves = (4 * slots + ctas - 1) / ctas;
  return std::clamp<int64_t>(std::min(byLength, byWaves), 1, 256);
}

int Decoder::chooseNumSplits(int64_t batch, int64_t maxSeqLen,
                             int multiprocessorCount,
                             int ctasPerMultiprocessor) const {
  int64_t ctas = batch * config_.numKVHeads * spec_->ctasPerKVHead;
  if (ctas <= 0 || maxSeqLen <= 0)
    return 1;
  // Model the time of a split count as the waves of CTAs the machine runs
  // (`slots` CTAs at a time) times the tokens each CTA reads, plus a fixed
  // cost per CTA worth one loop iteration. On H200 the best measured counts
  // were the ones that fill exactly one wave (bench/NOTES.md).
  int64_t slots = int64_t(std::max(1, multiprocessorCount)) *
                  std::max(1, ctasPerMultiprocessor);
  int64_t step = spec_->tokensPerIteration;
  auto cost = [&](int64_t splits) {
    int64_t chunk = (maxSeqLen + splits - 1) / splits;
    chunk = (chunk + step - 1) / step * step;
    int64_t used = (maxSeqLen + chunk - 1) / chunk;
    int64_t waves = (ctas * used + slots - 1) / slots;
    return waves * (chunk + step);
  };
  int64_t best = 1, bestCost = cost(1);
  int64_t limit = maxUsefulSplits(ctas, maxSeqLen, slots, step);
  for (int64_t splits = 2; splits <= limit; ++splits) {
    int64_t c = cost(splits);
    if (c < bestCost) {
      best = splits;
      bestCost = c;
    }
  }
  return static_cast<int>(best);
}

/// The current device's SM count and how many of `spec`'s decode CTAs one
/// SM holds (loading its module into the current context if needed).
static Status currentOccupancy(const KernelSpec &spec, int *multiprocessors,
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

Status Decoder::maxWorkspaceSize(int64_t batch, int64_t maxSeqLen,
                                 size_t *bytes) const {
  int sms = 0, perSM = 0;
  if (Status s = currentOccupancy(*spec_, &sms, &perSM); !s)
    return s;
  int64_t ctas = batch * config_.numKVHeads * spec_->ctasPerKVHead;
  int64_t bound = ctas <= 0 || maxSeqLen <= 0
                      ? 1
                      : maxUsefulSplits(ctas, maxSeqLen, int64_t(sms) * perSM,
                                        spec_->tokensPerIteration);
  *bytes = workspaceSize(batch, int(bound));
  return Status::ok();
}

Status Decoder::defaultNumSplits(int64_t batch, int64_t maxSeqLen,
                                 int *numSplits) const {
  int sms = 0, perSM = 0;
  if (Status s = currentOccupancy(*spec_, &sms, &perSM); !s)
    return s;
  *numSplits = chooseNumSplits(batch, maxSeqLen, sms, perSM);
  return Status::ok();
}

/// Checks `t` against an expected rank, dtype and shape (-1: any size).
static Status checkTensor(const char *name, const Tensor &t, DType dtype,
                          const int64_t *shape, int rank, const char *shapeDoc,
                          bool vectorRows) {
  if (!t.data)
    return invalid(std::string(name) + " is a null pointer");
  if (t.rank != rank)
    return invalid(std::string(name) + " must have rank " +
                   std::to_string(rank) + " (" + shapeDoc + "), got " +
                   std::to_string(t.rank));
  if (t.dtype != dtype)
    return invalid(std::string(name) + " has dtype " + dtypeName(t.dtype) +
                   ", expected " + dtypeName(dtype));
  for (int d = 0; d < rank; ++d) {
    int64_t expected = shape[d];
    if (t.sizes[d] < 0 || (expected >= 0 && t.sizes[d] != expected))
      return invalid(std::string(name) + " has shape " + shapeString(t) +
                     ", expected " + shapeDoc);
  }
  if (vectorRows) {
    size_t bytes = dtypeBytes(dtype);
    if (reinterpret_cast<uintptr_t>(t.data) % 16 != 0)
      return invalid(std::string(name) + " data pointer is not 16-byte "
                                         "aligned");
    if (t.strides[t.rank - 1] != 1 && t.sizes[t.rank - 1] > 1)
      return invalid(std::string(name) +
                     " must have unit stride in its last dimension, got " +
                     std::to_string(t.strides[t.rank - 1]));
    for (int i = 0; i + 1 < t.rank; ++i)
      if ((t.strides[i] * int64_t(bytes)) % 16 != 0)
        return invalid(std::string(name) + " stride of dim " +
                       std::to_string(i) + " (" + std::to_string(t.strides[i]) +
                       " elements) is not a multiple of 16 bytes");
  }
  return Status::ok();
}

Status Decoder::validate(const DecodeParams &p, int64_t *batchOut,
                         int64_t *maxSeqLenOut) const {
  const KernelConfig &c = config_;
  int64_t batch = p.q.rank == 3 ? p.q.sizes[0] : -1;
  Status s;
  const int64_t qShape[] = {-1, c.numHeads, c.headDim};
  if (!(s = checkTensor("q", p.q, c.dtype, qShape, 3,
                        "[batch, num_heads, head_dim]", true)))
    return s;
  bool nhd = c.layout == Layout::NHD;
  int64_t pages = p.kCache.rank == 4 ? p.kCache.sizes[0] : -1;
  const char *cacheDoc = nhd ? "[num_pages, page_size, num_kv_heads, head_dim]"
                             : "[num_pages, num_kv_heads, page_size, head_dim]";
  const int64_t cacheShape[] = {pages, nhd ? c.pageSize : c.numKVHeads,
                                nhd ? c.numKVHeads : c.pageSize, c.headDim};
  const int64_t tableShape[] = {batch, -1};
  const int64_t lensShape[] = {batch};
  const int64_t outShape[] = {batch, c.numHeads, c.headDim};
  if (!(s = checkTensor("k_cache", p.kCache, c.dtype, cacheShape, 4, cacheDoc,
                        true)) ||
      !(s = checkTensor("v_cache", p.vCache, c.dtype, cacheShape, 4, cacheDoc,
                        true)))
    return s;
  if (!(s = checkTensor("block_table", p.blockTable, DType::I32, tableShape, 2,
                        "[batch, max_pages]", false)) ||
      !(s = checkTensor("seq_lens", p.seqLens, DType::I32, lensShape, 1,
                        "[batch]", false)) ||
      !(s = checkTensor("out", p.out, c.dtype, outShape, 3, "the shape of q",
                        true)))
    return s;
  if (batch > 65535)
    return invalid("batch " + std::to_string(batch) +
                   " exceeds the grid limit of 65535 sequences per launch");
  if (p.scale < 0 || !std::isfinite(p.scale))
    return invalid("scale must be finite and positive (or 0 for "
                   "1/sqrt(head_dim))");
  int64_t capacity = p.blockTable.sizes[1] * c.pageSize;
  int64_t maxSeqLen = p.maxSeqLen < 0 ? capacity : p.maxSeqLen;
  if (maxSeqLen > capacity)
    return invalid("max_seq_len " + std::to_string(maxSeqLen) +
                   " exceeds the page table's capacity (" +
                   std::to_string(p.blockTable.sizes[1]) + " pages of " +
                   std::to_string(c.pageSize) + " = " +
                   std::to_string(capacity) + " tokens)");
  if (p.numSplits < 0 || p.numSplits > 65535)
    return invalid("num_splits must be in [0, 65535], got " +
                   std::to_string(p.numSplits));
  *batchOut = batch;
  *maxSeqLenOut = maxSeqLen;
  return Status::ok();
}

Status Decoder::decode(const DecodeParams &p, void *streamPtr) const {
  int64_t batch = 0, maxSeqLen = 0;
  Status s = validate(p, &batch, &maxSeqLen);
  if (!s)
    return s;
  const Driver *d;
  if (!(s = requireDriver(&d)))
    return s;
  // The kernels and SM count for the current context: from this thread's
  // last launch when it used the same context and kernels.
  CUcontext current = nullptr;
  d->cuCtxGetCurrent(&current);
  LaunchCache &cache = lastLaunch;
  if (!current || cache.ctx != current || cache.specId != spec_->id) {
    CUcontext ctx;
    CUdevice device;
    if (!(s = currentContext(*d, &ctx, &device)))
      return s;
    LoadedKernels loaded;
    if (!(s = ModuleCache::get().lookup(*d, ctx, *spec_, &loaded)))
      return s;
    cache.ctx = ctx;
    cache.specId = spec_->id;
    cache.kernels = loaded;
    cache.multiprocessors = ModuleCache::get().multiprocessorCount(*d, device);
    cache.splitBatch = -1;
  }
  if (batch == 0)
    return Status::ok();
  CUstream stream = static_cast<CUstream>(streamPtr);
  LoadedKernels kernels = cache.kernels;
  if (p.checkPageTable && !(s = checkPageTable(p, stream, cache.ctx)))
    return s;

  const KernelConfig &c = config_;
  int numSplits = p.numSplits;
  if (numSplits == 0) {
    if (cache.splitBatch != batch || cache.splitMaxSeqLen != maxSeqLen) {
      cache.splits = chooseNumSplits(batch, maxSeqLen, cache.multiprocessors,
                                     cache.kernels.decodeCTAsPerSM);
      cache.splitBatch = batch;
      cache.splitMaxSeqLen = maxSeqLen;
    }
    numSplits = cache.splits;
  }
  size_t needed = workspaceSize(batch, numSplits);
  if (needed > 0 && (!p.workspace || p.workspaceBytes < needed))
    return invalid("split-KV with " + std::to_string(numSplits) +
                   " splits needs a workspace of " + std::to_string(needed) +
                   " bytes, got " + std::to_string(p.workspaceBytes) +
                   (p.workspace ? "" : " (null)"));
  if (needed > 0 && reinterpret_cast<uintptr_t>(p.workspace) % 256 != 0)
    return invalid("workspace must be 256-byte aligned");

  // Workspace views: partial_out [B, Hq, S, D] then partial_lse [B, Hq, S].
  char *ws = static_cast<char *>(p.workspace);
  int64_t partialSizes[4] = {batch, c.numHeads, numSplits, c.headDim};
  int64_t partialStrides[4] = {c.numHeads * numSplits * c.headDim,
                               numSplits * c.headDim, c.headDim, 1};
  int64_t lseSizes[3] = {batch, c.numHeads, numSplits};
  int64_t lseStrides[3] = {c.numHeads * numSplits, numSplits, 1};
  size_t rows = size_t(batch) * c.numHeads * numSplits;
  void *partialOut = needed ? ws : nullptr;
  void *partialLse = needed ? ws + alignUp(rows * c.headDim * 4, 256) : nullptr;
  float scale = p.scale > 0 ? p.scale : 1.0f / std::sqrt(float(c.headDim));

  ParamBuilder decodeArgs;
  decodeArgs.memref(p.q);
  decodeArgs.memref(p.kCache);
  decodeArgs.memref(p.vCache);
  decodeArgs.memref(p.blockTable);
  decodeArgs.memref(p.seqLens);
  decodeArgs.memref(p.out);
  decodeArgs.memref(partialOut, 4, partialSizes, partialStrides);
  decodeArgs.memref(partialLse, 3, lseSizes, lseStrides);
  decodeArgs.f32(scale);
  decodeArgs.i32(numSplits);
  CUresult r = d->cuLaunchKernel(
      kernels.decode, unsigned(c.numKVHeads * spec_->ctasPerKVHead),
      unsigned(batch), unsigned(numSplits), unsigned(spec_->decodeBlock), 1, 1,
      unsigned(spec_->decodeDynamicSharedBytes), stream, nullptr,
      decodeArgs.extra());
  if (r != CUDA_SUCCESS)
    return Status(StatusCode::CudaError,
                  "launching " + spec_->decodeName + ": " + describe(*d, r));
  if (numSplits > 1) {
    ParamBuilder mergeArgs;
    mergeArgs.memref(partialOut, 4, partialSizes, partialStrides);
    mergeArgs.memref(partialLse, 3, lseSizes, lseStrides);
    mergeArgs.memref(p.out);
    mergeArgs.i32(numSplits);
    if (spec_->mergeProgrammaticLaunch && d->cuLaunchKernelEx) {
      // The merge grid is scheduled while the decode grid finishes and
      // waits for its results on the device (griddepcontrol.wait).
      CUlaunchAttribute attribute = {};
      attribute.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
      attribute.value.programmaticStreamSerializationAllowed = 1;
      CUlaunchConfig config = {};
      config.gridDimX = unsigned(c.numHeads);
      config.gridDimY = unsigned(batch);
      config.gridDimZ = 1;
      config.blockDimX = unsigned(spec_->mergeBlock);
      config.blockDimY = config.blockDimZ = 1;
      config.hStream = stream;
      config.attrs = &attribute;
      config.numAttrs = 1;
      r = d->cuLaunchKernelEx(&config, kernels.merge, nullptr,
                              mergeArgs.extra());
    } else {
      r = d->cuLaunchKernel(kernels.merge, unsigned(c.numHeads),
                            unsigned(batch), 1, unsigned(spec_->mergeBlock), 1,
                            1, 0, stream, nullptr, mergeArgs.extra());
    }
    if (r != CUDA_SUCCESS)
      return Status(StatusCode::CudaError,
                    "launching " + spec_->mergeName + ": " + describe(*d, r));
  }
  return Status::ok();
}

Status Decoder::checkPageTable(const DecodeParams &p, void *streamPtr,
                               void *context) const {
  const Driver *d;
  Status s = requireDriver(&d);
  if (!s)
    return s;
  CUstream stream = static_cast<CUstream>(streamPtr);
  CUcontext ctx = static_cast<CUcontext>(context);
  LoadedKernels kernels;
  if (!(s = ModuleCache::get().lookup(*d, ctx, *spec_, &kernels)))
    return s;

  // Every operand must be device memory.
  const std::pair<const char *, const Tensor *> operands[] = {
      {"q", &p.q},
      {"k_cache", &p.kCache},
      {"v_cache", &p.vCache},
      {"block_table", &p.blockTable},
      {"seq_lens", &p.seqLens},
      {"out", &p.out}};
  for (auto [name, t] : operands) {
    unsigned memoryType = 0;
    CUresult r =
        d->cuPointerGetAttribute(&memoryType, CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                                 reinterpret_cast<CUdeviceptr>(t->data));
    if (r != CUDA_SUCCESS || (memoryType != CU_MEMORYTYPE_DEVICE &&
                              memoryType != CU_MEMORYTYPE_UNIFIED))
      return invalid(std::string(name) + " is not device memory");
  }

  int64_t batch = p.q.sizes[0];
  int64_t maxPages = p.blockTable.sizes[1];
  int64_t numPages = p.kCache.sizes[0];
  if (numPages > INT32_MAX)
    return invalid("more than 2^31 pages");
  CUdeviceptr firstBad = 0;
  CUresult r = d->cuMemAlloc(&firstBad, sizeof(int64_t));
  if (r != CUDA_SUCCESS)
    return Status(StatusCode::CudaError, "cuMemAlloc: " + describe(*d, r));
  struct Free {
    const Driver *d;
    CUdeviceptr ptr;
    ~Free() { d->cuMemFree(ptr); }
  } freeOnExit{d, firstBad};
  int64_t none = INT64_MAX;
  if ((r = d->cuMemcpyHtoDAsync(firstBad, &none, sizeof(none), stream)) !=
      CUDA_SUCCESS)
    return Status(StatusCode::CudaError,
                  "cuMemcpyHtoDAsync: " + describe(*d, r));
  int64_t resultSize[1] = {1}, resultStride[1] = {1};
  ParamBuilder args;
  args.memref(p.blockTable);
  args.memref(p.seqLens);
  args.i32(int32_t(numPages));
  args.memref(reinterpret_cast<void *>(firstBad), 1, resultSize, resultStride);
  r = d->cuLaunchKernel(kernels.check, unsigned(batch), 1, 1,
                        unsigned(spec_->checkBlock), 1, 1, 0, stream, nullptr,
                        args.extra());
  if (r != CUDA_SUCCESS)
    return Status(StatusCode::CudaError,
                  "launching " + spec_->checkName + ": " + describe(*d, r));
  int64_t key = 0;
  if ((r = d->cuMemcpyDtoHAsync(&key, firstBad, sizeof(key), stream)) !=
          CUDA_SUCCESS ||
      (r = d->cuStreamSynchronize(stream)) != CUDA_SUCCESS)
    return Status(StatusCode::CudaError,
                  "page-table check failed: " + describe(*d, r));
  if (key == INT64_MAX)
    return Status::ok();

  // Decode the key and read the offending value for the message.
  int64_t b = key / (maxPages + 1), j = key % (maxPages + 1) - 1;
  auto readI32 = [&](const Tensor &t, int64_t offset) {
    int32_t value = 0;
    d->cuMemcpyDtoH(&value, reinterpret_cast<CUdeviceptr>(t.data) + offset * 4,
                    sizeof(value));
    return value;
  };
  if (j < 0) {
    int32_t len = readI32(p.seqLens, b * p.seqLens.strides[0]);
    return Status(StatusCode::BadPageTable,
                  "seq_lens[" + std::to_string(b) +
                      "] = " + std::to_string(len) + " is outside [0, " +
                      std::to_string(maxPages * config_.pageSize) +
                      "] (max_pages * page_size)");
  }
  int32_t page = readI32(p.blockTable, b * p.blockTable.strides[0] +
                                           j * p.blockTable.strides[1]);
  return Status(StatusCode::BadPageTable,
                "block_table[" + std::to_string(b) + "][" + std::to_string(j) +
                    "] = " + std::to_string(page) + " is outside [0, " +
                    std::to_string(numPages) + ") (the KV cache's pages)");
}
