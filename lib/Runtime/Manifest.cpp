//===- Manifest.cpp - KernelLibrary: manifests and the PTX they name ------===//
//
// Reads what paged-attn-compile writes: NAME.json names NAME.ptx and lists
// kernel pairs. Every entry is checked against the Spec before it is kept:
// its config against the op's rules (a config that breaks one has no
// correct kernel), and its kernels' parameters against the lists launches
// pack (a manifest written for another ABI must be refused, not launched).
//
//===----------------------------------------------------------------------===//

#include "Manifest.h"

#include "PagedAttn/Spec/Json.h"

#include <algorithm>
#include <atomic>
#include <dirent.h>
#include <fstream>
#include <sstream>

using namespace paged_attn;
using namespace paged_attn::detail;

struct KernelLibrary::Impl {
  std::vector<std::unique_ptr<KernelSpec>> specs;
};

KernelLibrary::KernelLibrary() : impl_(new Impl) {}
KernelLibrary::~KernelLibrary() = default;

static uint64_t nextUniqueId() {
  static std::atomic<uint64_t> next{1};
  return next++;
}

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

/// The first entry of the kernel's "block" (threads per CTA).
static bool getBlockX(const json::Value &kernel, int64_t &out) {
  const json::Value *block = kernel.get("block");
  if (!block || !block->isArray() || block->array.empty() ||
      !block->array[0].isNumber())
    return false;
  out = static_cast<int64_t>(block->array[0].number);
  return true;
}

//===----------------------------------------------------------------------===//
// Kernel parameters against the Spec
//===----------------------------------------------------------------------===//

/// "a rank-3 memref of bf16" or "a scalar f32".
static std::string describe(const KernelParam &param) {
  if (param.isMemRef)
    return "a rank-" + std::to_string(param.shape.size()) + " memref of " +
           dtypeName(param.dtype);
  return std::string("a scalar ") + dtypeName(param.dtype);
}

/// Whether the manifest's description of a parameter (kind, rank and
/// element type) is the Spec's: what the packing of its value depends on.
static bool describesParam(const json::Value &listed,
                           const KernelParam &param) {
  std::string kind, type;
  int64_t rank = -1;
  if (!getString(listed, "kind", kind))
    return false;
  if (!param.isMemRef)
    return kind == "scalar" && getString(listed, "type", type) &&
           type == dtypeName(param.dtype);
  return kind == "memref" && getInt(listed, "rank", rank) &&
         rank == int64_t(param.shape.size()) &&
         getString(listed, "element_type", type) &&
         type == dtypeName(param.dtype);
}

/// Checks that `kernel` ("decode", "merge" or "check") lists the Spec's
/// `expected` parameters, in order; returns empty or what differs.
static std::string checkParams(const char *kernel, const json::Value &entry,
                               const std::vector<KernelParam> &expected) {
  const json::Value *params = entry.get("params");
  if (!params || !params->isArray() || params->array.size() != expected.size())
    return std::string(kernel) + " kernel parameters do not match this runtime";
  for (size_t i = 0; i < expected.size(); ++i) {
    const KernelParam &param = expected[i];
    std::string name;
    if (!getString(params->array[i], "name", name) || name != param.name)
      return std::string(kernel) + " kernel parameter " + std::to_string(i) +
             " is '" + name + "', this runtime expects '" + param.name + "'";
    if (!describesParam(params->array[i], param))
      return std::string(kernel) + " kernel parameter '" + name + "' is not " +
             describe(param) + ", as this runtime passes it";
  }
  return "";
}

/// Reads a kernel's name and block size, and binds the Spec's `params` to
/// the runtime's values once checked against the manifest's.
static std::string parseKernelEntry(const char *kernel,
                                    const json::Value &entry,
                                    const std::vector<KernelParam> &params,
                                    KernelEntry *result) {
  if (!getString(entry, "name", result->name) ||
      !getBlockX(entry, result->block))
    return "incomplete kernel description";
  if (std::string error = checkParams(kernel, entry, params); !error.empty())
    return error;
  if (std::string unbound = bindParams(params, &result->params);
      !unbound.empty())
    return std::string(kernel) + " kernel parameter '" + unbound +
           "' has no value in this runtime";
  return "";
}

//===----------------------------------------------------------------------===//
// One entry
//===----------------------------------------------------------------------===//

/// The config section: the Spec's fields, read and checked against the op's
/// rules by specFromConfig, and which decode kernel the config uses.
static std::string parseConfig(const json::Value &config, KernelSpec *spec) {
  if (std::string error = specFromConfig(config, &spec->config); !error.empty())
    return error;
  if (const json::Value *tc = config.get("tensor_cores")) {
    if (!tc->isBool())
      return "tensor_cores of the config is not a boolean";
    spec->tensorCores = tc->boolean;
  }
  return "";
}

/// The decode kernel's launch settings beyond its name and block.
static std::string parseDecodeSettings(const json::Value &decode,
                                       const json::Value &split,
                                       KernelSpec *spec) {
  if (!getInt(decode, "ctas_per_kv_head", spec->ctasPerKVHead) ||
      !getInt(split, "tokens_per_iteration", spec->tokensPerIteration))
    return "incomplete kernel description";
  if (decode.get("dynamic_shared_memory_bytes") &&
      (!getInt(decode, "dynamic_shared_memory_bytes",
               spec->decodeDynamicSharedBytes) ||
       spec->decodeDynamicSharedBytes < 0))
    return "bad dynamic_shared_memory_bytes of the decode kernel";
  return "";
}

static std::string parseMergeSettings(const json::Value &merge,
                                      KernelSpec *spec) {
  if (const json::Value *pdl = merge.get("programmatic_launch")) {
    if (!pdl->isBool())
      return "programmatic_launch of the merge kernel is not a boolean";
    spec->mergeProgrammaticLaunch = pdl->boolean;
  }
  return "";
}

/// Reads one entry of "kernels"; returns empty or what is wrong with it.
static std::string parseEntry(const json::Value &entry, KernelSpec *spec) {
  const json::Value *config = entry.get("config");
  const json::Value *decode = entry.get("decode");
  const json::Value *merge = entry.get("merge");
  const json::Value *check = entry.get("check");
  const json::Value *split = entry.get("split_kv");
  if (!config || !decode || !merge || !check || !split)
    return "a kernel entry needs config, decode, merge, check, split_kv";
  std::string error = parseConfig(*config, spec);
  if (error.empty())
    error = parseKernelEntry("decode", *decode,
                             decodeKernelParams(spec->config), &spec->decode);
  if (error.empty())
    error = parseKernelEntry("merge", *merge, mergeKernelParams(spec->config),
                             &spec->merge);
  if (error.empty())
    error = parseKernelEntry("check", *check, checkKernelParams(spec->config),
                             &spec->check);
  if (error.empty())
    error = parseDecodeSettings(*decode, *split, spec);
  if (error.empty())
    error = parseMergeSettings(*merge, spec);
  return error;
}

//===----------------------------------------------------------------------===//
// KernelLibrary
//===----------------------------------------------------------------------===//

/// Reads the manifest's top level (format, version) and the PTX it names,
/// relative to the manifest unless absolute.
static Status readManifest(const std::string &path, json::Value *root,
                           std::shared_ptr<const std::string> *ptx) {
  std::string text, error;
  if (!readFile(path, text))
    return Status(StatusCode::NotFound, "cannot read manifest '" + path + "'");
  if (!json::parse(text, *root, error))
    return Status(StatusCode::ParseError, path + ": invalid JSON: " + error);
  std::string format, ptxName;
  if (!getString(*root, "format", format) || format != "paged_attn.manifest")
    return Status(StatusCode::ParseError, path + ": not a paged_attn manifest");
  int64_t version = 0;
  if (!getInt(*root, "version", version) || version != 1)
    return Status(StatusCode::ParseError,
                  path + ": unsupported manifest version " +
                      std::to_string(version));
  if (!getString(*root, "ptx", ptxName))
    return Status(StatusCode::ParseError, path + ": no 'ptx' entry");
  size_t slash = path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  std::string ptxPath =
      !ptxName.empty() && ptxName[0] == '/' ? ptxName : dir + ptxName;
  auto contents = std::make_shared<std::string>();
  if (!readFile(ptxPath, *contents))
    return Status(StatusCode::NotFound,
                  "cannot read PTX '" + ptxPath + "' named by '" + path + "'");
  *ptx = std::move(contents);
  return Status::ok();
}

Status KernelLibrary::load(const std::string &manifestPath,
                           std::shared_ptr<KernelLibrary> *result) {
  json::Value root;
  std::shared_ptr<const std::string> ptx;
  if (Status s = readManifest(manifestPath, &root, &ptx); !s)
    return s;
  const json::Value *kernels = root.get("kernels");
  if (!kernels || !kernels->isArray() || kernels->array.empty())
    return Status(StatusCode::ParseError,
                  manifestPath + ": no 'kernels' entries");

  std::shared_ptr<KernelLibrary> library(new KernelLibrary);
  uint64_t ptxId = nextUniqueId();
  for (const json::Value &entry : kernels->array) {
    auto spec = std::make_unique<KernelSpec>();
    if (std::string error = parseEntry(entry, spec.get()); !error.empty())
      return Status(StatusCode::ParseError, manifestPath + ": " + error);
    spec->ptx = ptx;
    spec->id = nextUniqueId();
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
  // Sorted, so that a config in two manifests resolves the same way on
  // every file system.
  std::sort(manifests.begin(), manifests.end());
  std::shared_ptr<KernelLibrary> library(new KernelLibrary);
  for (const std::string &path : manifests) {
    std::shared_ptr<KernelLibrary> one;
    if (Status s = load(path, &one); !s)
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
  for (const auto &spec : impl_->specs)
    if (spec->config == config)
      return spec.get();
  return nullptr;
}
