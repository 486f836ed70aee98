//===- AppendStandinTest.cpp - paged_attn.append's runtime, no GPU --------===//
//
// The runtime's side of paged_attn.append against the stand-in CUDA driver
// (test/standin-driver): manifests' "appends" read and refused, configs
// found, every argument checked with its message, and launches recorded
// (grid, block, the parameter buffer), through the C++ and C APIs. The
// manifests and PTX are written here from the Spec (appendKernelParams,
// appendConfigFields), with kernels that declare the Spec's parameters and
// do nothing: these tests need no compiler and run nothing.
//
//===----------------------------------------------------------------------===//

#include "StandinDriver.h"

#include "CApiTensors.h"
#include "PagedAttn-c/Runtime.h"
#include "PagedAttn/Runtime/Runtime.h"
#include "PagedAttn/Spec/AppendSpec.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <unistd.h>

using namespace paged_attn;

namespace {

/// The stand-in's inspection API, from the instance the runtime loaded.
struct AppendStandin {
  decltype(&paged_attn_standin_launch_count) launchCount = nullptr;
  decltype(&paged_attn_standin_get_launch) getLaunch = nullptr;
  decltype(&paged_attn_standin_clear_launches) clearLaunches = nullptr;
  int (*memAlloc)(unsigned long long *, size_t) = nullptr;
  int (*memFree)(unsigned long long) = nullptr;
};

AppendStandin standin;

//===----------------------------------------------------------------------===//
// Manifests and PTX written from the Spec
//===----------------------------------------------------------------------===//

std::string quoted(const std::string &s) { return "\"" + s + "\""; }

/// A config section: appendConfigFields as JSON.
std::string configJson(const AppendSpec &spec) {
  std::ostringstream os;
  os << "{";
  bool first = true;
  for (const auto &[key, value] : appendConfigFields(spec)) {
    os << (first ? "" : ", ") << quoted(key) << ": ";
    first = false;
    if (const auto *i = std::get_if<int64_t>(&value))
      os << *i;
    else if (const auto *s = std::get_if<std::string>(&value))
      os << quoted(*s);
    else
      os << (std::get<bool>(value) ? "true" : "false");
  }
  os << "}";
  return os.str();
}

/// The manifest's description of a parameter list.
std::string paramsJson(const std::vector<KernelParam> &params) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < params.size(); ++i) {
    const KernelParam &p = params[i];
    os << (i ? ", " : "") << "{\"name\": " << quoted(p.name);
    if (p.isMemRef) {
      os << ", \"kind\": \"memref\", \"rank\": " << p.shape.size()
         << ", \"element_type\": " << quoted(dtypeName(p.dtype))
         << ", \"shape\": [";
      for (size_t d = 0; d < p.shape.size(); ++d)
        os << (d ? ", " : "") << p.shape[d];
      os << "], \"unit_innermost_stride\": "
         << (p.unitInnermostStride ? "true" : "false");
    } else {
      os << ", \"kind\": \"scalar\", \"type\": " << quoted(dtypeName(p.dtype));
    }
    os << "}";
  }
  os << "]";
  return os.str();
}

/// An "appends" entry as the compiler writes one.
std::string appendEntry(const AppendSpec &spec, int64_t block = 128,
                        int64_t rowsPerCTA = 4) {
  std::ostringstream os;
  os << "{\"config\": " << configJson(spec)
     << ", \"append\": {\"name\": " << quoted(appendOpKernelName(spec))
     << ", \"grid\": [\"ceil(num_tokens * num_kv_heads / rows_per_cta)\", 1, "
        "1], \"block\": ["
     << block << ", 1, 1], \"dynamic_shared_memory_bytes\": 0, \"params\": "
     << paramsJson(appendKernelParams(spec))
     << ", \"rows_per_cta\": " << rowsPerCTA << "}}";
  return os.str();
}

/// A kernel that declares `params` as the compiler lowers them (a memref as
/// its descriptor's 3 + 2 * rank eight-byte words) and does nothing.
std::string ptxEntry(const std::string &name,
                     const std::vector<KernelParam> &params) {
  std::ostringstream os;
  os << ".visible .entry " << name << "(\n";
  int n = 0;
  for (const KernelParam &p : params) {
    size_t words = p.isMemRef ? 3 + 2 * p.shape.size() : 1;
    for (size_t w = 0; w < words; ++w, ++n)
      os << (n ? ",\n" : "") << "\t.param .u64 " << name << "_param_" << n;
  }
  os << "\n)\n.maxntid 1024, 1, 1\n{\n\tret;\n}\n";
  return os.str();
}

std::string ptxFor(const std::vector<AppendSpec> &specs) {
  std::string ptx = ".version 8.0\n.target sm_90\n.address_size 64\n\n";
  for (const AppendSpec &spec : specs)
    ptx += ptxEntry(appendOpKernelName(spec), appendKernelParams(spec));
  return ptx;
}

/// bf16 rows into bf16 caches: 8 KV heads of 128, pages of 16, nhd.
AppendSpec plainSpec() {
  AppendSpec s;
  s.numKVHeads = 8;
  s.headDim = 128;
  s.pageSize = 16;
  s.dtype = DType::BF16;
  s.layout = Layout::NHD;
  return s;
}

AppendSpec fp8Spec(KVScaleKind scale, Layout layout = Layout::NHD) {
  AppendSpec s = plainSpec();
  s.layout = layout;
  s.kvQuant = KVQuant{DType::F8E4M3FN, scale};
  return s;
}

//===----------------------------------------------------------------------===//
// The fixture
//===----------------------------------------------------------------------===//

class AppendStandinTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    const char *path = std::getenv("PAGED_ATTN_CUDA_DRIVER");
    ASSERT_TRUE(path) << "set PAGED_ATTN_CUDA_DRIVER to the stand-in driver";
    std::string why;
    ASSERT_TRUE(hasDriver(&why)) << why;
    void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    ASSERT_TRUE(lib) << dlerror();
    auto sym = [&](auto &fn, const char *name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(
          dlsym(lib, name));
      ASSERT_TRUE(fn) << name;
    };
    sym(standin.launchCount, "paged_attn_standin_launch_count");
    sym(standin.getLaunch, "paged_attn_standin_get_launch");
    sym(standin.clearLaunches, "paged_attn_standin_clear_launches");
    sym(standin.memAlloc, "cuMemAlloc_v2");
    sym(standin.memFree, "cuMemFree_v2");
    // The tests allocate before the runtime's first launch makes a context
    // current.
    void *ctx = nullptr;
    int (*retain)(void **, int) = nullptr;
    int (*setCurrent)(void *) = nullptr;
    sym(retain, "cuDevicePrimaryCtxRetain");
    sym(setCurrent, "cuCtxSetCurrent");
    ASSERT_EQ(retain(&ctx, 0), 0);
    ASSERT_EQ(setCurrent(ctx), 0);
  }

  static std::filesystem::path directory() {
    return std::filesystem::temp_directory_path() /
           ("paged-attn-append-" + std::to_string(getpid()));
  }

  static void TearDownTestSuite() { std::filesystem::remove_all(directory()); }

  void SetUp() override {
    standin.clearLaunches();
    specs = {plainSpec(), fp8Spec(KVScaleKind::Tensor),
             fp8Spec(KVScaleKind::Head), fp8Spec(KVScaleKind::Token),
             fp8Spec(KVScaleKind::Token, Layout::HND)};
    std::string entries;
    for (size_t i = 0; i < specs.size(); ++i)
      entries += (i ? ", " : "") + appendEntry(specs[i]);
    ASSERT_TRUE(KernelLibrary::load(
        write("appends", "\"appends\": [" + entries + "]", ptxFor(specs)),
        &library));
  }

  void TearDown() override {
    for (unsigned long long ptr : allocations)
      standin.memFree(ptr);
    standin.clearLaunches();
  }

  /// Writes NAME.json (a manifest with the top-level `body`, and an empty
  /// "kernels" unless the body has one) and NAME.ptx; returns the
  /// manifest's path.
  static std::string write(const std::string &name, const std::string &body,
                           const std::string &ptx) {
    std::filesystem::create_directories(directory());
    std::string stem = (directory() / name).string();
    std::ofstream(stem + ".ptx") << ptx;
    bool hasKernels = body.find("\"kernels\"") != std::string::npos;
    std::ofstream(stem + ".json")
        << "{\"format\": \"paged_attn.manifest\", \"version\": 1, \"ptx\": "
        << quoted(name + ".ptx") << (hasKernels ? "" : ", \"kernels\": []")
        << (body.empty() ? "" : ", ") << body << "}";
    return stem + ".json";
  }

  /// The ParseError message of a manifest with `appends` as its "appends"
  /// value (and the PTX of the specs), after its path.
  std::string parseError(const std::string &appends,
                         const std::string &ptx = "") {
    std::string path = write("bad", "\"appends\": " + appends,
                             ptx.empty() ? ptxFor({plainSpec()}) : ptx);
    std::shared_ptr<KernelLibrary> lib;
    Status s = KernelLibrary::load(path, &lib);
    EXPECT_EQ(s.code(), StatusCode::ParseError) << s.message();
    std::string prefix = path + ": ";
    if (s.message().compare(0, prefix.size(), prefix) == 0)
      return s.message().substr(prefix.size());
    return s.message();
  }

  /// Stand-in device memory; none (null) for 0 bytes, as cuMemAlloc
  /// refuses those.
  void *alloc(size_t bytes) {
    if (bytes == 0)
      return nullptr;
    unsigned long long ptr = 0;
    EXPECT_EQ(standin.memAlloc(&ptr, bytes), 0);
    allocations.push_back(ptr);
    return reinterpret_cast<void *>(ptr);
  }

  /// Arguments over stand-in memory: `tokens` new rows, a cache of
  /// `pages` pages (and the scales the config has).
  AppendParams params(const AppendSpec &c, int64_t tokens, int64_t pages = 8) {
    AppendParams p;
    size_t elem = dtypeBytes(c.dtype);
    size_t rowBytes = size_t(c.numKVHeads * c.headDim) * elem;
    p.k = Tensor::contiguous(alloc(tokens * rowBytes), c.dtype,
                             {tokens, c.numKVHeads, c.headDim});
    p.v = Tensor::contiguous(alloc(tokens * rowBytes), c.dtype,
                             {tokens, c.numKVHeads, c.headDim});
    p.slotMapping = Tensor::contiguous(alloc(tokens * 8), DType::I64, {tokens});
    std::array<int64_t, 4> shape = c.cacheShape(pages);
    size_t cacheBytes = size_t(pages * c.pageSize * c.numKVHeads * c.headDim) *
                        dtypeBytes(c.cacheDType());
    p.kCache = Tensor::contiguous(alloc(cacheBytes), c.cacheDType(),
                                  {shape[0], shape[1], shape[2], shape[3]});
    p.vCache = Tensor::contiguous(alloc(cacheBytes), c.cacheDType(),
                                  {shape[0], shape[1], shape[2], shape[3]});
    if (c.kvQuant) {
      std::vector<int64_t> s = c.kvScaleShape(pages);
      size_t n = 1;
      for (int64_t d : s)
        n *= size_t(d);
      auto scale = [&] {
        Tensor t;
        t.data = alloc(n * 4);
        t.dtype = DType::F32;
        t.rank = int(s.size());
        int64_t stride = 1;
        for (int d = t.rank - 1; d >= 0; --d) {
          t.sizes[d] = s[d];
          t.strides[d] = stride;
          stride *= s[d];
        }
        return t;
      };
      p.kScale = scale();
      p.vScale = scale();
    }
    return p;
  }

  std::unique_ptr<Appender> appender(const AppendSpec &c) {
    std::unique_ptr<Appender> result;
    Status s = Appender::create(library, c, &result);
    EXPECT_TRUE(s) << s.message();
    return result;
  }

  /// The InvalidArgument message append() gives `p` (nothing launched).
  std::string rejection(const AppendSpec &c, const AppendParams &p) {
    size_t before = standin.launchCount();
    Status s = appender(c)->append(p, nullptr);
    EXPECT_EQ(s.code(), StatusCode::InvalidArgument) << s.message();
    EXPECT_EQ(standin.launchCount(), before);
    return s.message();
  }

  std::vector<AppendSpec> specs;
  std::shared_ptr<KernelLibrary> library;
  std::vector<unsigned long long> allocations;
};

/// The descriptor words of memref parameter `index` of a recorded launch
/// whose parameters are `params` (each memref 3 + 2 * rank words).
std::vector<int64_t> descriptor(const paged_attn_standin_launch &launch,
                                const std::vector<KernelParam> &params,
                                size_t index) {
  size_t word = 0;
  for (size_t i = 0; i < index; ++i)
    word += 3 + 2 * params[i].shape.size();
  std::vector<int64_t> words(3 + 2 * params[index].shape.size());
  std::memcpy(words.data(), launch.params + 8 * word, 8 * words.size());
  return words;
}

//===----------------------------------------------------------------------===//
// Manifests
//===----------------------------------------------------------------------===//

TEST_F(AppendStandinTest, ManifestAppendsAreListedAndFound) {
  std::vector<AppendConfig> held = library->appendConfigs();
  ASSERT_EQ(held.size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ(held[i], specs[i]);
    EXPECT_NE(library->findAppend(specs[i]), nullptr);
  }
  // An appends-only manifest holds no decodes or merges.
  EXPECT_TRUE(library->configs().empty());
  EXPECT_TRUE(library->mergeConfigs().empty());
  std::unique_ptr<Appender> a = appender(specs[3]);
  EXPECT_EQ(a->config(), specs[3]);
}

TEST_F(AppendStandinTest, ConfigsNotHeldAndAgainstTheRulesAreRefused) {
  AppendSpec missing = plainSpec();
  missing.headDim = 64;
  std::unique_ptr<Appender> a;
  Status s = Appender::create(library, missing, &a);
  EXPECT_EQ(s.code(), StatusCode::NotFound);
  EXPECT_EQ(s.message().rfind("no append kernel for config "
                              "kv8_d64_p16_bf16_nhd (library holds: "
                              "kv8_d128_p16_bf16_nhd, ",
                              0),
            0u)
      << s.message();
  AppendSpec bad = plainSpec();
  bad.kvQuant = KVQuant{DType::F8E4M3FN, KVScaleKind::Head};
  bad.dtype = DType::F32;
  s = Appender::create(library, bad, &a);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
  EXPECT_EQ(s.message(), bad.validate());
  s = Appender::create(nullptr, plainSpec(), &a);
  EXPECT_EQ(s.message(), "no kernel library");
}

TEST_F(AppendStandinTest, DirectoriesGatherAppends) {
  std::filesystem::path dir = directory() / "dir";
  std::filesystem::create_directories(dir);
  for (const char *name : {"appends.json", "appends.ptx"})
    std::filesystem::copy_file(
        directory() / name, dir / name,
        std::filesystem::copy_options::overwrite_existing);
  std::shared_ptr<KernelLibrary> lib;
  ASSERT_TRUE(KernelLibrary::loadDirectory(dir.string(), &lib));
  EXPECT_EQ(lib->appendConfigs().size(), specs.size());
}

TEST_F(AppendStandinTest, MalformedAppendEntriesAreParseErrors) {
  std::string good = appendEntry(plainSpec());
  auto replaced = [&](const std::string &from, const std::string &to) {
    std::string entry = good;
    size_t at = entry.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return "[" + entry.replace(at, from.size(), to) + "]";
  };
  EXPECT_EQ(parseError("{}"), "no 'kernels', 'merges' or 'appends' entries");
  EXPECT_EQ(parseError("[]"), "no 'kernels', 'merges' or 'appends' entries");
  EXPECT_EQ(parseError("[{\"config\": {}}]"),
            "an append entry needs config and append");
  EXPECT_EQ(parseError(replaced("\"num_kv_heads\": 8", "\"num_kv_heads\": "
                                                       "\"8\"")),
            "append config has no integer 'num_kv_heads'");
  EXPECT_EQ(parseError(replaced("\"layout\": \"nhd\"", "\"layout\": \"x\"")),
            "append config has no layout nhd or hnd");
  // The op's rules, with the verifier's message.
  AppendSpec narrow = plainSpec();
  narrow.headDim = 4;
  EXPECT_EQ(parseError(replaced("\"head_dim\": 128", "\"head_dim\": 4")),
            narrow.validate());
  EXPECT_EQ(parseError(replaced("\"name\": \"kv8_d128_p16_bf16_nhd\"",
                                "\"name\": \"kv8\"")),
            "append 'config.name' is 'kv8', but its fields make "
            "kv8_d128_p16_bf16_nhd");
  EXPECT_EQ(parseError(replaced("\"rows_per_cta\": 4", "\"rows_per_cta\": 0")),
            "'append.rows_per_cta' must be an integer in [1, 2147483647], "
            "got 0");
  EXPECT_EQ(parseError(replaced(", \"rows_per_cta\": 4", "")),
            "no 'append.rows_per_cta'");
  EXPECT_EQ(parseError(replaced("\"block\": [128", "\"block\": [2048")),
            "'append.block' must be [x, 1, 1] with x in [1, 1024]");
  EXPECT_EQ(parseError(replaced("\"dynamic_shared_memory_bytes\": 0",
                                "\"dynamic_shared_memory_bytes\": 16")),
            "'append.dynamic_shared_memory_bytes' must be an integer in [0, "
            "0], got 16");
  EXPECT_EQ(
      parseError(replaced("\"name\": \"slot_mapping\"", "\"name\": \"slots\"")),
      "append kernel parameter 2 is 'slots', this runtime expects "
      "'slot_mapping'");
  EXPECT_EQ(parseError(replaced("\"element_type\": \"i64\"",
                                "\"element_type\": \"i32\"")),
            "append kernel parameter 'slot_mapping' is not a rank-1 memref "
            "of i64, as this runtime passes it");
  // A kernel the PTX does not define.
  std::string path = write("noentry", "\"appends\": [" + good + "]",
                           ptxFor({fp8Spec(KVScaleKind::Head)}));
  std::shared_ptr<KernelLibrary> lib;
  Status s = KernelLibrary::load(path, &lib);
  EXPECT_EQ(s.code(), StatusCode::ParseError);
  EXPECT_NE(s.message().find("has no kernel "
                             "'paged_attn_append_kv8_d128_p16_bf16_nhd'"),
            std::string::npos)
      << s.message();
}

//===----------------------------------------------------------------------===//
// Launches
//===----------------------------------------------------------------------===//

TEST_F(AppendStandinTest, LaunchesCeilOfRowsOverRowsPerCTA) {
  for (const AppendSpec &c : specs) {
    standin.clearLaunches();
    // 13 tokens of 8 KV heads: 104 rows, 26 CTAs of 4.
    AppendParams p = params(c, 13);
    Status s = appender(c)->append(p, nullptr);
    ASSERT_TRUE(s) << c.name() << ": " << s.message();
    ASSERT_EQ(standin.launchCount(), 1u);
    paged_attn_standin_launch launch;
    ASSERT_TRUE(standin.getLaunch(0, &launch));
    EXPECT_EQ(launch.kernel, appendOpKernelName(c));
    EXPECT_EQ(launch.grid[0], 26u);
    EXPECT_EQ(launch.grid[1], 1u);
    EXPECT_EQ(launch.grid[2], 1u);
    EXPECT_EQ(launch.block[0], 128u);
    EXPECT_EQ(launch.block[1], 1u);
    EXPECT_EQ(launch.dynamic_shared_bytes, 0u);
    // Each operand in the Spec's order, as its descriptor.
    std::vector<KernelParam> kp = appendKernelParams(c);
    const Tensor *operands[] = {&p.k,      &p.v,      &p.slotMapping, &p.kCache,
                                &p.vCache, &p.kScale, &p.vScale};
    ASSERT_EQ(kp.size(), c.kvQuant ? 7u : 5u);
    for (size_t i = 0; i < kp.size(); ++i) {
      std::vector<int64_t> words = descriptor(launch, kp, i);
      const Tensor &t = *operands[i];
      EXPECT_EQ(words[0], reinterpret_cast<int64_t>(t.data)) << kp[i].name;
      EXPECT_EQ(words[1], reinterpret_cast<int64_t>(t.data)) << kp[i].name;
      EXPECT_EQ(words[2], 0);
      for (int d = 0; d < t.rank; ++d) {
        EXPECT_EQ(words[3 + d], t.sizes[d]) << kp[i].name << " dim " << d;
        EXPECT_EQ(words[3 + t.rank + d], t.strides[d]) << kp[i].name;
      }
    }
  }
}

TEST_F(AppendStandinTest, RoundsTheGridUp) {
  AppendSpec c = plainSpec();
  c.numKVHeads = 8;
  // One token: 8 rows, 2 CTAs of 4.
  AppendParams p = params(c, 1);
  ASSERT_TRUE(appender(c)->append(p, nullptr));
  paged_attn_standin_launch launch;
  ASSERT_TRUE(standin.getLaunch(0, &launch));
  EXPECT_EQ(launch.grid[0], 2u);
}

TEST_F(AppendStandinTest, NoTokensLaunchNothing) {
  for (const AppendSpec &c : specs) {
    // Empty tensors may have no memory (params() gives them none).
    AppendParams p = params(c, 0);
    ASSERT_EQ(p.k.data, nullptr);
    Status s = appender(c)->append(p, nullptr);
    EXPECT_TRUE(s) << s.message();
  }
  EXPECT_EQ(standin.launchCount(), 0u);
  // But a null pointer of a non-empty tensor is refused.
  AppendParams p = params(plainSpec(), 2);
  p.slotMapping.data = nullptr;
  EXPECT_EQ(rejection(plainSpec(), p), "slot_mapping is a null pointer");
}

TEST_F(AppendStandinTest, AnEmptyPoolIsAllowed) {
  // Every slot is then out of range: skipped by the kernel.
  AppendSpec c = fp8Spec(KVScaleKind::Token);
  AppendParams p = params(c, 3, /*pages=*/0);
  ASSERT_EQ(p.kCache.data, nullptr);
  EXPECT_TRUE(appender(c)->append(p, nullptr));
}

TEST_F(AppendStandinTest, TooManyTokensForAGridAreRefused) {
  AppendSpec c = plainSpec();
  AppendParams p = params(c, 1);
  // 2^28 tokens of 8 heads in CTAs of 4 rows: 2^29 CTAs fit; 2^30 tokens
  // (stride 0: no memory) need 2^31, one past a grid's x.
  for (Tensor *t : {&p.k, &p.v, &p.slotMapping}) {
    t->sizes[0] = int64_t(1) << 30;
    t->strides[0] = 0;
  }
  EXPECT_EQ(rejection(c, p),
            "T (1073741824 tokens) of 8 KV heads needs more than 2147483647 "
            "CTAs of 4 rows (a grid's x dimension): append fewer tokens per "
            "call");
}

//===----------------------------------------------------------------------===//
// Arguments
//===----------------------------------------------------------------------===//

TEST_F(AppendStandinTest, RowsAreCheckedAgainstTheConfig) {
  AppendSpec c = plainSpec();
  AppendParams good = params(c, 4);
  AppendParams p = good;
  p.k.dtype = DType::F16;
  EXPECT_EQ(rejection(c, p), "k has dtype f16, expected bf16");
  p = good;
  p.k.rank = 2;
  EXPECT_EQ(rejection(c, p),
            "k must have rank 3 ([T, num_kv_heads, head_dim]), got 2");
  p = good;
  p.k.sizes[1] = 4;
  EXPECT_EQ(rejection(c, p),
            "k has shape [4, 4, 128], expected [T, num_kv_heads, head_dim]");
  p = good;
  p.v.sizes[0] = 3;
  EXPECT_EQ(rejection(c, p),
            "v has shape [3, 8, 128], expected [T, num_kv_heads, head_dim]");
  p = good;
  p.v.dtype = DType::F32;
  EXPECT_EQ(rejection(c, p), "v has dtype f32, expected bf16");
  p = good;
  p.slotMapping.dtype = DType::I32;
  EXPECT_EQ(rejection(c, p), "slot_mapping has dtype i32, expected i64");
  p = good;
  p.slotMapping.sizes[0] = 5;
  EXPECT_EQ(rejection(c, p), "slot_mapping has shape [5], expected [T]");
  p = good;
  p.slotMapping.data = static_cast<char *>(p.slotMapping.data) + 4;
  EXPECT_EQ(rejection(c, p), "slot_mapping data pointer is not 8-byte aligned");
  // The kernel moves rows as 16-byte vectors.
  p = good;
  p.k.data = static_cast<char *>(p.k.data) + 2;
  EXPECT_EQ(rejection(c, p), "k data pointer is not 16-byte aligned");
  p = good;
  p.v.strides[2] = 2;
  EXPECT_EQ(rejection(c, p),
            "v must have unit stride in its last dimension, got 2");
  p = good;
  p.k.strides[0] = 8 * 128 + 4;
  EXPECT_EQ(rejection(c, p),
            "k stride of dim 0 (1028 elements) is not a multiple of 16 bytes");
  p = good;
  p.k.dtype = static_cast<DType>(42);
  EXPECT_EQ(rejection(c, p), "k has an invalid dtype (42)");
  // Strided views whose rows stay aligned are taken (a slice of a fused
  // [T, 2, heads, dim] KV projection).
  p = good;
  p.k.strides[0] = 2 * 8 * 128;
  p.k.sizes[0] = 2;
  p.v.sizes[0] = 2;
  p.slotMapping.sizes[0] = 2;
  EXPECT_TRUE(appender(c)->append(p, nullptr));
}

TEST_F(AppendStandinTest, CachesAreCheckedAgainstTheConfig) {
  AppendSpec c = plainSpec();
  AppendParams good = params(c, 4);
  AppendParams p = good;
  p.kCache.sizes[2] = 4;
  EXPECT_EQ(rejection(c, p),
            "k_cache has shape [8, 16, 4, 128], expected [num_pages, "
            "page_size, num_kv_heads, head_dim]");
  p = good;
  p.vCache.sizes[0] = 4;
  EXPECT_EQ(rejection(c, p),
            "v_cache has shape [4, 16, 8, 128], expected [num_pages, "
            "page_size, num_kv_heads, head_dim]");
  p = good;
  p.kCache.dtype = DType::F8E4M3FN;
  EXPECT_EQ(rejection(c, p), "k_cache has dtype f8e4m3fn, expected bf16");
  p = good;
  p.vCache = p.kCache;
  EXPECT_EQ(rejection(c, p),
            "k_cache and v_cache are the same memory: append writes both");
  AppendSpec hnd = c;
  hnd.layout = Layout::HND;
  // The library holds no bf16 hnd append.
  std::unique_ptr<Appender> none;
  EXPECT_EQ(Appender::create(library, hnd, &none).code(), StatusCode::NotFound);
}

TEST_F(AppendStandinTest, ScalesAreGivenExactlyForQuantisedCaches) {
  AppendSpec plain = plainSpec();
  AppendParams p = params(plain, 2);
  AppendParams scaled = params(fp8Spec(KVScaleKind::Tensor), 2);
  p.kScale = scaled.kScale;
  EXPECT_EQ(rejection(plain, p),
            "k_scale is given, but append config kv8_d128_p16_bf16_nhd has no "
            "quantised KV cache (its caches are bf16)");

  AppendSpec tensor = fp8Spec(KVScaleKind::Tensor);
  p = params(tensor, 2);
  p.vScale = Tensor();
  EXPECT_EQ(rejection(tensor, p), "v_scale is a null pointer");
  p = params(tensor, 2);
  p.kScale.rank = 1;
  p.kScale.sizes[0] = 8;
  p.kScale.strides[0] = 1;
  EXPECT_EQ(rejection(tensor, p), "k_scale must have rank 0 ([]), got 1");
  p = params(tensor, 2);
  p.kScale.dtype = DType::BF16;
  EXPECT_EQ(rejection(tensor, p), "k_scale has dtype bf16, expected f32");

  AppendSpec head = fp8Spec(KVScaleKind::Head);
  p = params(head, 2);
  p.vScale.sizes[0] = 4;
  EXPECT_EQ(rejection(head, p), "v_scale has shape [4], expected "
                                "[num_kv_heads]");
  // The caches of the quantised config are fp8.
  p = params(head, 2);
  p.kCache.dtype = DType::BF16;
  EXPECT_EQ(rejection(head, p), "k_cache has dtype bf16, expected f8e4m3fn");

  AppendSpec token = fp8Spec(KVScaleKind::Token, Layout::HND);
  p = params(token, 2);
  p.kScale.sizes[0] = 7;
  EXPECT_EQ(rejection(token, p),
            "k_scale has shape [7, 8, 16], expected [num_pages of k_cache, "
            "num_kv_heads, page_size]");
  // Per token the scales are written: one tensor for both is refused.
  p = params(token, 2);
  p.vScale = p.kScale;
  EXPECT_EQ(rejection(token, p), "k_scale and v_scale are the same memory: a "
                                 "per-token append writes both");
  // Per tensor and per head they are read: one tensor may serve both.
  p = params(head, 2);
  p.vScale = p.kScale;
  EXPECT_TRUE(appender(head)->append(p, nullptr));
}

//===----------------------------------------------------------------------===//
// The C API
//===----------------------------------------------------------------------===//

paged_attn_append_params toC(const AppendParams &cpp) {
  paged_attn_append_params p{};
  p.k = capi::toC(cpp.k);
  p.v = capi::toC(cpp.v);
  p.slot_mapping = capi::toC(cpp.slotMapping);
  p.k_cache = capi::toC(cpp.kCache);
  p.v_cache = capi::toC(cpp.vCache);
  p.k_scale = capi::toC(cpp.kScale);
  p.v_scale = capi::toC(cpp.vScale);
  return p;
}

TEST_F(AppendStandinTest, CApiCreatesAndLaunches) {
  paged_attn_library lib = nullptr;
  ASSERT_EQ(
      paged_attn_library_load((directory() / "appends.json").c_str(), &lib),
      PAGED_ATTN_OK)
      << paged_attn_last_error();
  paged_attn_append_config config = {8,
                                     128,
                                     16,
                                     PAGED_ATTN_BF16,
                                     PAGED_ATTN_NHD,
                                     PAGED_ATTN_KV_SCALE_TOKEN,
                                     PAGED_ATTN_F8E4M3FN};
  paged_attn_appender appender = nullptr;
  ASSERT_EQ(paged_attn_appender_create(lib, &config, &appender), PAGED_ATTN_OK)
      << paged_attn_last_error();
  AppendParams cpp = params(fp8Spec(KVScaleKind::Token), 5);
  paged_attn_append_params p = toC(cpp);
  ASSERT_EQ(paged_attn_append(appender, &p, nullptr), PAGED_ATTN_OK)
      << paged_attn_last_error();
  EXPECT_STREQ(paged_attn_last_error(), "");
  ASSERT_EQ(standin.launchCount(), 1u);
  paged_attn_standin_launch launch;
  ASSERT_TRUE(standin.getLaunch(0, &launch));
  EXPECT_EQ(launch.grid[0], 10u); // 5 tokens x 8 heads / 4

  // Errors come back with their messages.
  p.slot_mapping.dtype = PAGED_ATTN_I32;
  EXPECT_EQ(paged_attn_append(appender, &p, nullptr),
            PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_STREQ(paged_attn_last_error(),
               "slot_mapping has dtype i32, expected i64");
  p.slot_mapping.dtype = static_cast<paged_attn_dtype>(9);
  EXPECT_EQ(paged_attn_append(appender, &p, nullptr),
            PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_STREQ(paged_attn_last_error(),
               "slot_mapping has an invalid dtype (9)");
  p = toC(cpp);
  p.k.rank = 5;
  EXPECT_EQ(paged_attn_append(appender, &p, nullptr),
            PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_STREQ(paged_attn_last_error(),
               "k is not a valid tensor: its rank (5) is outside [0, 4]");
  EXPECT_EQ(paged_attn_append(appender, nullptr, nullptr),
            PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_STREQ(paged_attn_last_error(), "params is null");
  EXPECT_EQ(paged_attn_append(nullptr, &p, nullptr),
            PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_STREQ(paged_attn_last_error(), "appender is null");
  paged_attn_appender_destroy(appender);

  // Configs: the decode's spelling of the quantisation, and its checks.
  paged_attn_append_config bad = config;
  bad.kv_scale = 7;
  EXPECT_EQ(paged_attn_appender_create(lib, &bad, &appender),
            PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_STREQ(paged_attn_last_error(),
               "unknown kv_scale 7 (0: unquantised, 1: per tensor, 2: per "
               "head, 3: per token)");
  bad = config;
  bad.kv_dtype = PAGED_ATTN_BF16;
  EXPECT_EQ(paged_attn_appender_create(lib, &bad, &appender),
            PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_STREQ(paged_attn_last_error(),
               "kv_dtype must be PAGED_ATTN_F8E4M3FN or PAGED_ATTN_F8E5M2 when "
               "kv_scale is set, got bf16");
  bad = config;
  bad.layout = static_cast<paged_attn_layout>(3);
  EXPECT_EQ(paged_attn_appender_create(lib, &bad, &appender),
            PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_STREQ(paged_attn_last_error(), "unknown layout");
  bad = config;
  bad.kv_scale = PAGED_ATTN_KV_UNQUANTIZED;
  bad.head_dim = 64;
  EXPECT_EQ(paged_attn_appender_create(lib, &bad, &appender),
            PAGED_ATTN_NOT_FOUND);
  EXPECT_EQ(std::string(paged_attn_last_error())
                .rfind("no append kernel for config kv8_d64_p16_bf16_nhd", 0),
            0u);
  EXPECT_EQ(paged_attn_appender_create(lib, nullptr, &appender),
            PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_STREQ(paged_attn_last_error(), "config is null");
  paged_attn_library_destroy(lib);
}

} // namespace
