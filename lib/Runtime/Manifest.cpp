//===- Manifest.cpp - KernelLibrary: manifests and the PTX they name ------===//
//
// Reads what paged-attn-compile writes: NAME.json names NAME.ptx and lists
// kernel pairs (and the merge and append ops' kernels). Every entry is checked
// against the Spec before it is kept: its config against the op's rules (a
// config that breaks one has no correct kernel), and its kernels' parameters
// against the lists launches pack (a manifest written for another ABI must be
// refused, not launched).
//
//===----------------------------------------------------------------------===//

#include "Manifest.h"

#include "PagedAttn/Spec/Json.h"

#include "PagedAttn/Spec/TargetInfo.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <set>
#include <sstream>
#include <string_view>
#include <sys/stat.h>

using namespace paged_attn;
using namespace paged_attn::detail;

struct KernelLibrary::Impl {
  std::vector<std::unique_ptr<KernelSpec>> specs;
  std::vector<std::unique_ptr<MergeKernelSpec>> merges;
  std::vector<std::unique_ptr<AppendKernelSpec>> appends;
};

KernelLibrary::KernelLibrary() : impl_(new Impl) {}
KernelLibrary::~KernelLibrary() = default;

static uint64_t nextUniqueId() {
  static std::atomic<uint64_t> next{1};
  return next++;
}

/// Reads `path` whole; false with `error` set (why) when it is not a
/// readable regular file.
static bool readFile(const std::string &path, std::string &out,
                     std::string &error) {
  struct stat info;
  if (stat(path.c_str(), &info) != 0) {
    error = std::strerror(errno);
    return false;
  }
  if (S_ISDIR(info.st_mode)) {
    error = "it is a directory";
    return false;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = std::strerror(errno);
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  if (in.bad()) {
    error = "read error";
    return false;
  }
  return true;
}

/// A JSON value as a message shows it: numbers as written (1.5, 1e+300),
/// strings quoted, anything else by its kind.
static std::string show(const json::Value &v) {
  switch (v.kind) {
  case json::Value::Kind::Number: {
    // Integers whole, anything else in the shortest form that reads back
    // as the same double.
    char buffer[32];
    if (v.number == std::floor(v.number) && std::fabs(v.number) < 1e17) {
      std::snprintf(buffer, sizeof(buffer), "%.0f", v.number);
      return buffer;
    }
    for (int digits = 1; digits <= 17; ++digits) {
      std::snprintf(buffer, sizeof(buffer), "%.*g", digits, v.number);
      if (std::strtod(buffer, nullptr) == v.number)
        break;
    }
    return buffer;
  }
  case json::Value::Kind::String:
    return "'" + v.string + "'";
  case json::Value::Kind::Bool:
    return v.boolean ? "true" : "false";
  case json::Value::Kind::Null:
    return "null";
  case json::Value::Kind::Array:
    return "an array";
  case json::Value::Kind::Object:
    return "an object";
  }
  return "";
}

/// Whether `v` is a number with an integer value in [lo, hi]. Doubles hold
/// every integer up to 2^53 exactly, and every bound here is below that.
static bool isIntegerIn(const json::Value &v, int64_t lo, int64_t hi) {
  return v.isNumber() && std::isfinite(v.number) &&
         v.number == std::floor(v.number) && v.number >= double(lo) &&
         v.number <= double(hi);
}

/// "decode.block": how messages name the field `key` of the manifest's
/// object `where` ("" for the top level).
static std::string field(const char *where, const char *key) {
  return *where ? std::string(where) + "." + key : std::string(key);
}

/// Reads the integer `key` of `object`, the manifest's `where`; returns
/// empty, or why it is missing or not in [lo, hi]. A count of 0 or a
/// fraction would otherwise be truncated into a launch or a division.
static std::string readInteger(const json::Value &object, const char *where,
                               const char *key, int64_t lo, int64_t hi,
                               int64_t *out) {
  const json::Value *v = object.get(key);
  if (!v)
    return "no '" + field(where, key) + "'";
  if (!isIntegerIn(*v, lo, hi))
    return "'" + field(where, key) + "' must be an integer in [" +
           std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
           show(*v);
  *out = static_cast<int64_t>(v->number);
  return "";
}

/// readInteger for a key that older manifests may lack: `out` is kept then.
static std::string readOptionalInteger(const json::Value &object,
                                       const char *where, const char *key,
                                       int64_t lo, int64_t hi, int64_t *out) {
  if (!object.get(key))
    return "";
  return readInteger(object, where, key, lo, hi, out);
}

static bool getString(const json::Value &obj, const char *key,
                      std::string &out) {
  const json::Value *v = obj.get(key);
  if (!v || !v->isString())
    return false;
  out = v->string;
  return true;
}

/// The most threads a CTA may have on every supported chip.
constexpr int64_t kMaxThreadsPerBlock = 1024;

/// The most shared memory one CTA may have on any supported chip: more is
/// a manifest no device can launch (the TargetInfo table's largest opt-in).
static int64_t maxSharedMemoryPerBlock() {
  int64_t most = 0;
  for (const TargetInfo &target : supportedTargets())
    most = std::max(most, target.sharedMemoryPerBlockOptIn);
  return most;
}

/// A kernel's "block": [x, 1, 1] (the runtime launches one-dimensional
/// CTAs) with 1 <= x <= 1024, x a multiple of 32 when `wholeWarps`.
static std::string readBlock(const json::Value &kernel, const char *where,
                             bool wholeWarps, int64_t *x) {
  const json::Value *block = kernel.get("block");
  std::string error = "'" + field(where, "block") +
                      "' must be [x, 1, 1] with " +
                      (wholeWarps ? "x a multiple of 32 in " : "x in ") +
                      "[1, " + std::to_string(kMaxThreadsPerBlock) + "]";
  if (!block || !block->isArray() || block->array.size() != 3 ||
      !isIntegerIn(block->array[0], 1, kMaxThreadsPerBlock) ||
      !isIntegerIn(block->array[1], 1, 1) ||
      !isIntegerIn(block->array[2], 1, 1))
    return error;
  *x = static_cast<int64_t>(block->array[0].number);
  if (wholeWarps && *x % 32 != 0)
    return error + ", got " + std::to_string(*x);
  return "";
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
  const json::Value *rank = listed.get("rank");
  if (!getString(listed, "kind", kind))
    return false;
  if (!param.isMemRef)
    return kind == "scalar" && getString(listed, "type", type) &&
           type == dtypeName(param.dtype);
  int64_t expectedRank = int64_t(param.shape.size());
  return kind == "memref" && rank &&
         isIntegerIn(*rank, expectedRank, expectedRank) &&
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
/// the runtime's values once checked against the manifest's. Decode CTAs
/// are whole warps: the kernels are built from num_warps.
static std::string parseKernelEntry(const char *kernel,
                                    const json::Value &entry,
                                    const std::vector<KernelParam> &params,
                                    KernelEntry *result) {
  if (!getString(entry, "name", result->name) || result->name.empty())
    return "no kernel name in '" + field(kernel, "name") + "'";
  bool wholeWarps = std::strcmp(kernel, "decode") == 0;
  if (std::string error = readBlock(entry, kernel, wholeWarps, &result->block);
      !error.empty())
    return error;
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
/// rules by specFromConfig, its name (which must be theirs: configs are
/// found and named by it), and which decode kernel the config uses.
static std::string parseConfig(const json::Value &config, KernelSpec *spec) {
  if (std::string error = specFromConfig(config, &spec->config); !error.empty())
    return error;
  // Decode grids are num_heads / heads_per_cta CTAs wide and merge grids
  // num_heads: both must fit a grid's x dimension.
  if (spec->config.numHeads > INT32_MAX)
    return "'config.num_heads' must be at most " + std::to_string(INT32_MAX) +
           " (a grid's x dimension), got " +
           std::to_string(spec->config.numHeads);
  if (const json::Value *name = config.get("name")) {
    std::string expected = spec->config.name();
    if (!name->isString() || name->string != expected)
      return "'config.name' is " + show(*name) + ", but its fields make " +
             expected;
  }
  if (const json::Value *tc = config.get("tensor_cores")) {
    if (!tc->isBool())
      return "tensor_cores of the config is not a boolean";
    spec->tensorCores = tc->boolean;
  }
  return "";
}

/// The CTAs per KV head: the KV head's query heads shared out among them,
/// heads_per_cta each where the manifest says so, times the blocks of a
/// multi-token decode's queries (queries_per_cta each).
static std::string readCTAsPerKVHead(const json::Value &decode,
                                     KernelSpec *spec) {
  int64_t group = spec->config.groupSize();
  int64_t queryLen = spec->config.queryLen;
  if (std::string error = readInteger(decode, "decode", "ctas_per_kv_head", 1,
                                      group * queryLen, &spec->ctasPerKVHead);
      !error.empty())
    return error;
  std::string ctas = std::to_string(spec->ctasPerKVHead);
  if (!decode.get("heads_per_cta")) {
    if (queryLen != 1)
      return "a multi-token entry's 'decode' needs 'heads_per_cta'";
    if (group % spec->ctasPerKVHead != 0)
      return "'decode.ctas_per_kv_head' (" + ctas +
             ") must divide num_heads / num_kv_heads (" +
             std::to_string(group) + ")";
    return "";
  }
  int64_t headsPerCTA = 0, queriesPerCTA = 1;
  if (std::string error = readInteger(decode, "decode", "heads_per_cta", 1,
                                      group, &headsPerCTA);
      !error.empty())
    return error;
  if (decode.get("queries_per_cta"))
    if (std::string error = readInteger(decode, "decode", "queries_per_cta", 1,
                                        queryLen, &queriesPerCTA);
        !error.empty())
      return error;
  int64_t queryBlocks = (queryLen + queriesPerCTA - 1) / queriesPerCTA;
  if (group % headsPerCTA != 0 ||
      spec->ctasPerKVHead != group / headsPerCTA * queryBlocks)
    return "'decode.ctas_per_kv_head' (" + ctas + ") must be num_heads / " +
           "num_kv_heads (" + std::to_string(group) + ") / heads_per_cta (" +
           std::to_string(headsPerCTA) + ")" +
           (queryLen != 1 ? " times the query blocks (" +
                                std::to_string(queryBlocks) + ")"
                          : std::string());
  return "";
}

/// The decode kernel's shared memory: each kind, and both together, at
/// most what a CTA may have on any supported chip.
static std::string readDecodeSharedMemory(const json::Value &decode,
                                          KernelSpec *spec) {
  int64_t limit = maxSharedMemoryPerBlock(), staticBytes = 0;
  if (std::string error =
          readOptionalInteger(decode, "decode", "dynamic_shared_memory_bytes",
                              0, limit, &spec->decodeDynamicSharedBytes);
      !error.empty())
    return error;
  if (std::string error =
          readOptionalInteger(decode, "decode", "static_shared_memory_bytes", 0,
                              limit, &staticBytes);
      !error.empty())
    return error;
  if (spec->decodeDynamicSharedBytes + staticBytes > limit)
    return "the decode kernel's shared memory (" + std::to_string(staticBytes) +
           " static + " + std::to_string(spec->decodeDynamicSharedBytes) +
           " dynamic bytes) is more than any supported chip gives a CTA (" +
           std::to_string(limit) + ")";
  return "";
}

/// A kernel's optional "programmatic_launch" (false where absent).
static std::string readProgrammaticLaunch(const json::Value &entry,
                                          const char *kernel, bool *out) {
  const json::Value *pdl = entry.get("programmatic_launch");
  if (!pdl)
    return "";
  if (!pdl->isBool())
    return std::string("programmatic_launch of the ") + kernel +
           " kernel is not a boolean";
  *out = pdl->boolean;
  return "";
}

/// The decode kernel's launch settings beyond its name and block. A loop
/// iteration covers at most num_warps (<= 32) x 32 lanes x 16 tokens in
/// today's kernels; the bound on tokens_per_iteration is far above that,
/// and keeps the split-count model's arithmetic in range.
static std::string parseDecodeSettings(const json::Value &decode,
                                       const json::Value &split,
                                       KernelSpec *spec) {
  constexpr int64_t kMaxTokensPerIteration = int64_t(1) << 20;
  if (std::string error = readCTAsPerKVHead(decode, spec); !error.empty())
    return error;
  if (std::string error =
          readInteger(split, "split_kv", "tokens_per_iteration", 1,
                      kMaxTokensPerIteration, &spec->tokensPerIteration);
      !error.empty())
    return error;
  if (std::string error = readProgrammaticLaunch(
          decode, "decode", &spec->decodeProgrammaticLaunch);
      !error.empty())
    return error;
  return readDecodeSharedMemory(decode, spec);
}

/// The merge and check kernels are launched without dynamic shared memory:
/// a manifest that asks for some describes other kernels.
static std::string checkNoDynamicSharedMemory(const char *kernel,
                                              const json::Value &entry) {
  int64_t bytes = 0;
  return readOptionalInteger(entry, kernel, "dynamic_shared_memory_bytes", 0, 0,
                             &bytes);
}

static std::string parseMergeSettings(const json::Value &merge,
                                      KernelSpec *spec) {
  if (std::string error = readProgrammaticLaunch(
          merge, "merge", &spec->mergeProgrammaticLaunch);
      !error.empty())
    return error;
  return checkNoDynamicSharedMemory("merge", merge);
}

/// Reads one entry of "kernels"; returns empty or what is wrong with it.
static std::string parseEntry(const json::Value &entry, KernelSpec *spec) {
  const json::Value *config = entry.get("config");
  const json::Value *decode = entry.get("decode");
  const json::Value *merge = entry.get("merge");
  const json::Value *check = entry.get("check");
  const json::Value *split = entry.get("split_kv");
  if (!config || !decode || !merge || !check || !split || !config->isObject() ||
      !decode->isObject() || !merge->isObject() || !check->isObject() ||
      !split->isObject())
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
  if (error.empty())
    error = checkNoDynamicSharedMemory("check", *check);
  return error;
}

/// Reads one entry of "merges": the merge op's config (checked against its
/// rules, and named as its fields make it) and its kernel.
static std::string parseMergeEntry(const json::Value &entry,
                                   MergeKernelSpec *spec) {
  const json::Value *config = entry.get("config");
  const json::Value *merge = entry.get("merge");
  if (!config || !merge || !config->isObject() || !merge->isObject())
    return "a merge entry needs config and merge";
  if (std::string error = mergeSpecFromConfig(*config, &spec->config);
      !error.empty())
    return error;
  if (const json::Value *name = config->get("name")) {
    std::string expected = spec->config.name();
    if (!name->isString() || name->string != expected)
      return "merge 'config.name' is " + show(*name) +
             ", but its fields make " + expected;
  }
  if (std::string error = parseKernelEntry(
          "merge", *merge, mergeKernelParams(spec->config), &spec->merge);
      !error.empty())
    return error;
  if (std::string error = readInteger(*merge, "merge", "rows_per_cta", 1,
                                      spec->config.numHeads, &spec->rowsPerCTA);
      !error.empty())
    return error;
  return checkNoDynamicSharedMemory("merge", *merge);
}

/// Reads one entry of "appends": the append op's config (checked against
/// its rules, and named as its fields make it) and its kernel. Any
/// rows_per_cta is launchable (the grid's x is checked per launch); a
/// bound keeps its arithmetic in int64_t.
static std::string parseAppendEntry(const json::Value &entry,
                                    AppendKernelSpec *spec) {
  const json::Value *config = entry.get("config");
  const json::Value *append = entry.get("append");
  if (!config || !append || !config->isObject() || !append->isObject())
    return "an append entry needs config and append";
  if (std::string error = appendSpecFromConfig(*config, &spec->config);
      !error.empty())
    return error;
  if (const json::Value *name = config->get("name")) {
    std::string expected = spec->config.name();
    if (!name->isString() || name->string != expected)
      return "append 'config.name' is " + show(*name) +
             ", but its fields make " + expected;
  }
  if (std::string error = parseKernelEntry(
          "append", *append, appendKernelParams(spec->config), &spec->append);
      !error.empty())
    return error;
  if (std::string error = readInteger(*append, "append", "rows_per_cta", 1,
                                      INT32_MAX, &spec->rowsPerCTA);
      !error.empty())
    return error;
  return checkNoDynamicSharedMemory("append", *append);
}

//===----------------------------------------------------------------------===//
// The PTX a manifest names
//===----------------------------------------------------------------------===//

namespace {
/// What the runtime reads from PTX before keeping it: that it is PTX (it
/// has the .version and .target directives every PTX module starts with)
/// and which kernels it defines. A scan, not a parse: the JIT reads the
/// rest when a module is loaded.
struct PtxFacts {
  bool hasVersion = false, hasTarget = false;
  std::set<std::string, std::less<>> entries;
};
} // namespace

static bool isPtxIdentifierChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$' ||
         c == '%' || c == '.';
}

/// The end of the comment at `i` (past it), or `i` when none starts there.
static size_t skipComment(std::string_view text, size_t i) {
  if (text.compare(i, 2, "//") == 0) {
    size_t end = text.find('\n', i);
    return end == std::string_view::npos ? text.size() : end;
  }
  if (text.compare(i, 2, "/*") == 0) {
    size_t end = text.find("*/", i + 2);
    return end == std::string_view::npos ? text.size() : end + 2;
  }
  return i;
}

static PtxFacts scanPtx(std::string_view text) {
  PtxFacts facts;
  std::string_view previous;
  for (size_t i = 0; i < text.size();) {
    if (size_t end = skipComment(text, i); end != i) {
      i = end;
      continue;
    }
    if (!isPtxIdentifierChar(text[i])) {
      ++i;
      continue;
    }
    size_t start = i;
    while (i < text.size() && isPtxIdentifierChar(text[i]))
      ++i;
    std::string_view token = text.substr(start, i - start);
    facts.hasVersion |= token == ".version";
    facts.hasTarget |= token == ".target";
    if (previous == ".entry")
      facts.entries.emplace(token);
    previous = token;
  }
  return facts;
}

/// Checks that `ptx` (read from `ptxPath`) is PTX that defines every one
/// of `kernels`; returns empty or what is wrong.
static std::string checkPtx(const std::string &ptx,
                            const std::vector<const KernelEntry *> &kernels) {
  if (ptx.find_first_not_of(" \t\r\n") == std::string::npos)
    return "is empty";
  PtxFacts facts = scanPtx(ptx);
  if (!facts.hasVersion || !facts.hasTarget)
    return std::string("is not PTX (no ") +
           (facts.hasVersion ? ".target" : ".version") + " directive)";
  for (const KernelEntry *kernel : kernels)
    if (!facts.entries.count(kernel->name))
      return "has no kernel '" + kernel->name + "' (no .entry of that name)";
  return "";
}

//===----------------------------------------------------------------------===//
// KernelLibrary
//===----------------------------------------------------------------------===//

/// Reads the manifest's top level (format, version) and the name of the
/// PTX it names, relative to the manifest unless absolute.
static Status readManifest(const std::string &path, json::Value *root,
                           std::string *ptxPath) {
  std::string text, error;
  if (!readFile(path, text, error))
    return Status(StatusCode::NotFound,
                  "cannot read manifest '" + path + "': " + error);
  if (!json::parse(text, *root, error))
    return Status(StatusCode::ParseError, path + ": invalid JSON: " + error);
  std::string format, ptxName;
  if (!getString(*root, "format", format) || format != "paged_attn.manifest")
    return Status(StatusCode::ParseError, path + ": not a paged_attn manifest");
  const json::Value *version = root->get("version");
  if (!version || !isIntegerIn(*version, 1, 1))
    return Status(StatusCode::ParseError,
                  path + ": unsupported manifest version " +
                      (version ? show(*version) : "(none)"));
  if (!getString(*root, "ptx", ptxName) || ptxName.empty())
    return Status(StatusCode::ParseError, path + ": no 'ptx' entry");
  size_t slash = path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  *ptxPath = ptxName[0] == '/' ? ptxName : dir + ptxName;
  return Status::ok();
}

/// Reads the PTX at `ptxPath` and checks it against the entries read from
/// `manifestPath`; a bad file is refused here, naming it, rather than
/// found out by the JIT on the first launch.
static Status readPtx(const std::string &manifestPath,
                      const std::string &ptxPath,
                      const std::vector<const KernelEntry *> &kernels,
                      std::shared_ptr<const std::string> *ptx) {
  auto contents = std::make_shared<std::string>();
  std::string error;
  if (!readFile(ptxPath, *contents, error))
    return Status(StatusCode::NotFound, "cannot read PTX '" + ptxPath +
                                            "' named by '" + manifestPath +
                                            "': " + error);
  if (std::string bad = checkPtx(*contents, kernels); !bad.empty())
    return Status(StatusCode::ParseError, "PTX '" + ptxPath + "' named by '" +
                                              manifestPath + "' " + bad);
  *ptx = std::move(contents);
  return Status::ok();
}

Status KernelLibrary::load(const std::string &manifestPath,
                           std::shared_ptr<KernelLibrary> *result) {
  json::Value root;
  std::string ptxPath;
  if (Status s = readManifest(manifestPath, &root, &ptxPath); !s)
    return s;
  // "kernels" lists decodes, "merges" and "appends" (absent in older
  // manifests, and where there are none) merge and append ops; a manifest
  // has at least one entry.
  const json::Value *kernels = root.get("kernels");
  const json::Value *merges = root.get("merges");
  const json::Value *appends = root.get("appends");
  auto isEmpty = [](const json::Value *list) {
    return !list || list->array.empty();
  };
  if (!kernels || !kernels->isArray() || (merges && !merges->isArray()) ||
      (appends && !appends->isArray()) ||
      (isEmpty(kernels) && isEmpty(merges) && isEmpty(appends)))
    return Status(StatusCode::ParseError,
                  manifestPath + ": no 'kernels', 'merges' or 'appends' "
                                 "entries");

  std::shared_ptr<KernelLibrary> library(new KernelLibrary);
  Impl &impl = *library->impl_;
  for (const json::Value &entry : kernels->array) {
    auto spec = std::make_unique<KernelSpec>();
    if (std::string error = parseEntry(entry, spec.get()); !error.empty())
      return Status(StatusCode::ParseError, manifestPath + ": " + error);
    impl.specs.push_back(std::move(spec));
  }
  for (const json::Value &entry :
       merges ? merges->array : std::vector<json::Value>()) {
    auto merge = std::make_unique<MergeKernelSpec>();
    if (std::string error = parseMergeEntry(entry, merge.get()); !error.empty())
      return Status(StatusCode::ParseError, manifestPath + ": " + error);
    impl.merges.push_back(std::move(merge));
  }
  for (const json::Value &entry :
       appends ? appends->array : std::vector<json::Value>()) {
    auto append = std::make_unique<AppendKernelSpec>();
    if (std::string error = parseAppendEntry(entry, append.get());
        !error.empty())
      return Status(StatusCode::ParseError, manifestPath + ": " + error);
    impl.appends.push_back(std::move(append));
  }
  std::vector<const KernelEntry *> entries;
  for (const auto &spec : impl.specs)
    entries.insert(entries.end(), {&spec->decode, &spec->merge, &spec->check});
  for (const auto &merge : impl.merges)
    entries.push_back(&merge->merge);
  for (const auto &append : impl.appends)
    entries.push_back(&append->append);
  std::shared_ptr<const std::string> ptx;
  if (Status s = readPtx(manifestPath, ptxPath, entries, &ptx); !s)
    return s;
  uint64_t ptxId = nextUniqueId();
  auto bind = [&](auto &spec) {
    spec->ptx = ptx;
    spec->id = nextUniqueId();
    spec->ptxId = ptxId;
  };
  std::for_each(impl.specs.begin(), impl.specs.end(), bind);
  std::for_each(impl.merges.begin(), impl.merges.end(), bind);
  std::for_each(impl.appends.begin(), impl.appends.end(), bind);
  *result = std::move(library);
  return Status::ok();
}

Status KernelLibrary::loadDirectory(const std::string &directory,
                                    std::shared_ptr<KernelLibrary> *result) {
  DIR *dir = opendir(directory.c_str());
  if (!dir)
    return Status(StatusCode::NotFound, "cannot open kernel directory '" +
                                            directory +
                                            "': " + std::strerror(errno));
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
    for (auto &merge : one->impl_->merges)
      library->impl_->merges.push_back(std::move(merge));
    for (auto &append : one->impl_->appends)
      library->impl_->appends.push_back(std::move(append));
  }
  if (library->impl_->specs.empty() && library->impl_->merges.empty() &&
      library->impl_->appends.empty())
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

std::vector<MergeConfig> KernelLibrary::mergeConfigs() const {
  std::vector<MergeConfig> result;
  for (const auto &merge : impl_->merges)
    result.push_back(merge->config);
  return result;
}

const MergeKernelSpec *
KernelLibrary::findMerge(const MergeConfig &config) const {
  for (const auto &merge : impl_->merges)
    if (merge->config == config)
      return merge.get();
  return nullptr;
}

std::vector<AppendConfig> KernelLibrary::appendConfigs() const {
  std::vector<AppendConfig> result;
  for (const auto &append : impl_->appends)
    result.push_back(append->config);
  return result;
}

const AppendKernelSpec *
KernelLibrary::findAppend(const AppendConfig &config) const {
  for (const auto &append : impl_->appends)
    if (append->config == config)
      return append.get();
  return nullptr;
}
