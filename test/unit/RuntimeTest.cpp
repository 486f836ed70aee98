//===- RuntimeTest.cpp - runtime checks that need no GPU
//-------------------===//
//
// Manifests, argument validation and its messages, the C API, the float64
// reference and the host f16/bf16 conversions. Launches are not run here:
// where a call would reach the GPU, a machine without a driver must answer
// StatusCode::NoDriver.
//
//===----------------------------------------------------------------------===//

#include "PagedAttn-c/Runtime.h"
#include "CApiTensors.h"
#include "PagedAttn/InitAll.h"
#include "PagedAttn/Runtime/Runtime.h"
#include "PagedAttn/Target/KernelCompiler.h"
#include "PagedAttn/Testing/Float16.h"
#include "PagedAttn/Testing/Float8.h"
#include "PagedAttn/Testing/Reference.h"

#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>

#include <limits>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>

using namespace paged_attn;

namespace {

/// Compiles one config into a temporary directory once for the suite.
class RuntimeTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    mlir::DialectRegistry registry;
    mlir::paged_attn::registerAllDialects(registry);
    mlir::MLIRContext ctx(registry);
    ctx.loadAllAvailableDialects();
    KernelConfig c;
    c.numHeads = 32;
    c.numKVHeads = 8;
    c.headDim = 128;
    c.pageSize = 16;
    c.dtype = DType::BF16;
    c.layout = Layout::NHD;
    auto compiled = mlir::paged_attn::compileDecodeKernels(
        &ctx, {c}, mlir::paged_attn::KernelCompileOptions(), "k.ptx");
    ASSERT_TRUE(mlir::succeeded(compiled));
    llvm::SmallString<128> dir;
    ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("paged-attn-test", dir));
    directory = std::string(dir);
    std::error_code ec;
    llvm::raw_fd_ostream ptx(directory + "/k.ptx", ec);
    ptx << compiled->ptx;
    llvm::raw_fd_ostream json(directory + "/k.json", ec);
    json << llvm::formatv("{0:2}", compiled->manifest);
    // A manifest with a decode and two merges, as one module.
    mlir::paged_attn::KernelSet set;
    set.decodes.push_back(c);
    set.merges.push_back(MergeConfig::forOp(32, 128, DType::BF16, false, true));
    set.merges.push_back(MergeConfig::forOp(8, 64, DType::F32, true, false));
    auto mixed = mlir::paged_attn::compileKernels(
        &ctx, set, mlir::paged_attn::KernelCompileOptions(), "m.ptx");
    ASSERT_TRUE(mlir::succeeded(mixed));
    llvm::raw_fd_ostream mixedPtx(directory + "/m.ptx", ec);
    mixedPtx << mixed->ptx;
    llvm::raw_fd_ostream mixedJson(directory + "/m.json", ec);
    mixedJson << llvm::formatv("{0:2}", mixed->manifest);
  }
  static void TearDownTestSuite() {
    llvm::sys::fs::remove_directories(directory);
  }

  void SetUp() override {
    ASSERT_TRUE(KernelLibrary::load(directory + "/k.json", &library));
    config.numHeads = 32;
    config.numKVHeads = 8;
    config.headDim = 128;
    config.pageSize = 16;
    config.dtype = DType::BF16;
    config.layout = Layout::NHD;
    ASSERT_TRUE(Decoder::create(library, config, &decoder));
  }

  /// Well-formed parameters over fake, aligned device addresses.
  DecodeParams validParams(int64_t batch = 4) {
    DecodeParams p;
    char *base = reinterpret_cast<char *>(uintptr_t(1) << 40);
    p.q = Tensor::contiguous(base, DType::BF16, {batch, 32, 128});
    p.kCache =
        Tensor::contiguous(base + (1 << 20), DType::BF16, {100, 16, 8, 128});
    p.vCache =
        Tensor::contiguous(base + (1 << 26), DType::BF16, {100, 16, 8, 128});
    p.blockTable =
        Tensor::contiguous(base + (1 << 27), DType::I32, {batch, 10});
    p.seqLens = Tensor::contiguous(base + (1 << 28), DType::I32, {batch});
    p.out = Tensor::contiguous(base + (1 << 29), DType::BF16, {batch, 32, 128});
    p.numSplits = 1;
    return p;
  }

  /// The message of loading a copy of the suite's manifest changed by
  /// `edit` (`entry` is its one kernel entry), which must fail to parse.
  static std::string
  refusal(const std::function<void(llvm::json::Object &root,
                                   llvm::json::Object &entry)> &edit) {
    std::ifstream in(directory + "/k.json");
    std::string text((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    llvm::Expected<llvm::json::Value> root = llvm::json::parse(text);
    if (!root) {
      ADD_FAILURE() << llvm::toString(root.takeError());
      return "";
    }
    llvm::json::Object &object = *root->getAsObject();
    edit(object, *(*object.getArray("kernels"))[0].getAsObject());
    std::string edited = directory + "/edited.json";
    {
      std::error_code ec;
      llvm::raw_fd_ostream out(edited, ec);
      out << llvm::formatv("{0:2}", *root);
    }
    std::shared_ptr<KernelLibrary> lib;
    Status s = KernelLibrary::load(edited, &lib);
    std::remove(edited.c_str());
    EXPECT_EQ(s.code(), StatusCode::ParseError) << s.message();
    std::string prefix = edited + ": ";
    if (s.message().compare(0, prefix.size(), prefix) == 0)
      return s.message().substr(prefix.size());
    return s.message();
  }

  /// The refusal of a manifest whose kernel entry has `value` at `key` of
  /// its object `section` ("config", "decode", ...).
  static std::string refusalWith(const char *section, const char *key,
                                 llvm::json::Value value) {
    return refusal([&](llvm::json::Object &, llvm::json::Object &entry) {
      (*entry.getObject(section))[key] = std::move(value);
    });
  }

  /// The message (without the path) of loading a copy of the suite's
  /// manifest `name` with the first `from` replaced by `to`, which must
  /// fail to parse.
  static std::string refusalOfEdit(const std::string &name,
                                   const std::string &from,
                                   const std::string &to) {
    std::ifstream in(directory + "/" + name);
    std::string text((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos)
      text.replace(at, from.size(), to);
    std::string changed = directory + "/changed.json";
    std::ofstream(changed) << text;
    std::shared_ptr<KernelLibrary> lib;
    Status s = KernelLibrary::load(changed, &lib);
    std::remove(changed.c_str());
    EXPECT_EQ(s.code(), StatusCode::ParseError) << s.message();
    std::string prefix = changed + ": ";
    if (s.message().compare(0, prefix.size(), prefix) == 0)
      return s.message().substr(prefix.size());
    return s.message();
  }

  /// The message of a decode that must fail validation.
  std::string rejection(const DecodeParams &p) {
    Status s = decoder->decode(p, nullptr);
    EXPECT_EQ(s.code(), StatusCode::InvalidArgument) << s.message();
    return s.message();
  }

  static std::string directory;
  std::shared_ptr<KernelLibrary> library;
  KernelConfig config;
  std::unique_ptr<Decoder> decoder;
};
std::string RuntimeTest::directory;

TEST_F(RuntimeTest, LibraryListsItsConfig) {
  auto configs = library->configs();
  ASSERT_EQ(configs.size(), 1u);
  EXPECT_EQ(configs[0].name(), "h32_kv8_d128_p16_bf16_nhd_w4");
}

TEST_F(RuntimeTest, UnknownConfigNamesWhatTheLibraryHolds) {
  KernelConfig other = config;
  other.headDim = 64;
  std::unique_ptr<Decoder> d;
  Status s = Decoder::create(library, other, &d);
  EXPECT_EQ(s.code(), StatusCode::NotFound);
  EXPECT_NE(s.message().find("h32_kv8_d64_p16_bf16_nhd_w4"), std::string::npos);
  EXPECT_NE(s.message().find("library holds: h32_kv8_d128_p16_bf16_nhd_w4"),
            std::string::npos);
}

// A config that breaks one of the op's rules gets the rule's message, not
// a missing kernel.
TEST_F(RuntimeTest, ConfigRulesComeBeforeKernelLookup) {
  auto message = [&](KernelConfig c) {
    std::unique_ptr<Decoder> d;
    Status s = Decoder::create(library, c, &d);
    EXPECT_EQ(s.code(), StatusCode::InvalidArgument) << s.message();
    return s.message();
  };
  KernelConfig gqa = config;
  gqa.numKVHeads = 3;
  EXPECT_EQ(message(gqa), "num_heads (32) must be a multiple of num_kv_heads "
                          "(3)");
  KernelConfig dtype = config;
  dtype.dtype = DType::I32;
  EXPECT_EQ(message(dtype), "the element type must be f16, bf16 or f32, got "
                            "i32");
  KernelConfig large = config;
  large.headDim = 264;
  EXPECT_EQ(message(large), "head_dim (264) must be at most 256");
  KernelConfig row = config;
  row.headDim = 36;
  EXPECT_EQ(message(row), "a row of head_dim (36) 'bf16' elements is 72 "
                          "bytes; it must be a multiple of 16 bytes");
  KernelConfig empty = config;
  empty.pageSize = 0;
  EXPECT_EQ(message(empty), "page_size must be at least 1, got 0");
}

TEST_F(RuntimeTest, ValidParamsPassValidation) {
  if (hasDriver())
    GTEST_SKIP() << "fake pointers must not reach a real GPU";
  Status s = decoder->decode(validParams(), nullptr);
  EXPECT_EQ(s.code(), StatusCode::NoDriver) << s.message();
  EXPECT_NE(s.message().find("no CUDA driver"), std::string::npos);
}

TEST_F(RuntimeTest, RejectsNullPointer) {
  DecodeParams p = validParams();
  p.vCache.data = nullptr;
  EXPECT_EQ(rejection(p), "v_cache is a null pointer");
}

TEST_F(RuntimeTest, RejectsWrongDType) {
  DecodeParams p = validParams();
  p.q.dtype = DType::F16;
  EXPECT_EQ(rejection(p), "q has dtype f16, expected bf16");
  p = validParams();
  p.seqLens.dtype = DType::F32;
  EXPECT_EQ(rejection(p), "seq_lens has dtype f32, expected i32");
}

TEST_F(RuntimeTest, RejectsWrongRankAndShape) {
  DecodeParams p = validParams();
  p.q.rank = 2;
  EXPECT_EQ(rejection(p),
            "q must have rank 3 ([batch, num_heads, head_dim]), got 2");
  p = validParams();
  p.kCache.sizes[2] = 4;
  EXPECT_EQ(rejection(p), "k_cache has shape [100, 16, 4, 128], expected "
                          "[num_pages, page_size, num_kv_heads, head_dim]");
  p = validParams();
  p.out.sizes[0] = 3;
  EXPECT_EQ(rejection(p),
            "out has shape [3, 32, 128], expected the shape of q");
  p = validParams();
  p.blockTable.sizes[0] = 5;
  EXPECT_EQ(rejection(p),
            "block_table has shape [5, 10], expected [batch, max_pages]");
}

TEST_F(RuntimeTest, RejectsMisalignment) {
  DecodeParams p = validParams();
  p.kCache.data = static_cast<char *>(p.kCache.data) + 2;
  EXPECT_EQ(rejection(p), "k_cache data pointer is not 16-byte aligned");
  p = validParams();
  p.q.strides[2] = 2;
  EXPECT_EQ(rejection(p),
            "q must have unit stride in its last dimension, got 2");
  p = validParams();
  p.vCache.strides[0] = 16 * 8 * 128 + 3;
  EXPECT_EQ(rejection(p), "v_cache stride of dim 0 (16387 elements) is not a "
                          "multiple of 16 bytes");
}

TEST_F(RuntimeTest, RejectsMisalignedInt32Operands) {
  // Page numbers and lengths are loaded as whole i32s.
  DecodeParams p = validParams();
  p.blockTable.data = static_cast<char *>(p.blockTable.data) + 2;
  EXPECT_EQ(rejection(p), "block_table data pointer is not 4-byte aligned");
  p = validParams();
  p.seqLens.data = static_cast<char *>(p.seqLens.data) + 1;
  EXPECT_EQ(rejection(p), "seq_lens data pointer is not 4-byte aligned");
}

// Strides are checked in arithmetic that cannot overflow, and a view whose
// elements lie beyond what an i64 byte offset or an address reaches is
// refused.
TEST_F(RuntimeTest, RejectsStridesPastTheAddressSpace) {
  DecodeParams p = validParams();
  // 2^62 elements of 2 bytes: 2^63 bytes, which wrapped to a multiple of
  // 16 in int64_t arithmetic and passed.
  p.kCache.strides[0] = int64_t(1) << 62;
  EXPECT_EQ(rejection(p),
            "k_cache of shape [100, 16, 8, 128] and strides "
            "[4611686018427387904, 1024, 128, 1] spans more memory than an "
            "address can reach");
  p = validParams();
  p.blockTable.strides[0] = int64_t(1) << 62;
  EXPECT_EQ(rejection(p), "block_table of shape [4, 10] and strides "
                          "[4611686018427387904, 1] spans more memory than an "
                          "address can reach");
  p = validParams();
  p.seqLens.strides[0] = -(int64_t(1) << 61);
  EXPECT_NE(rejection(p).find("seq_lens of shape [4] and strides "
                              "[-2305843009213693952] spans more memory"),
            std::string::npos);
  // A view that fits in i64 offsets but wraps past the top of memory.
  p = validParams();
  p.out.data = reinterpret_cast<void *>(uintptr_t(0) - 4096);
  EXPECT_NE(rejection(p).find("out of shape [4, 32, 128]"), std::string::npos);
  // Large strides along a dimension of one element are never followed.
  if (!hasDriver()) {
    p = validParams(1);
    p.q.strides[0] = int64_t(1) << 62;
    EXPECT_EQ(decoder->decode(p, nullptr).code(), StatusCode::NoDriver);
  }
}

TEST_F(RuntimeTest, RejectsCapacityThatOverflows) {
  DecodeParams p = validParams();
  // Stride 0: one page number repeated, so the view itself is small.
  p.blockTable.sizes[1] = INT64_MAX / 8;
  p.blockTable.strides[0] = p.blockTable.strides[1] = 0;
  EXPECT_EQ(rejection(p), "the page table's capacity (" +
                              std::to_string(INT64_MAX / 8) +
                              " pages of 16 tokens) overflows int64");
}

TEST_F(RuntimeTest, RejectsInvalidTensors) {
  DecodeParams p = validParams();
  p.q.rank = -1;
  EXPECT_EQ(rejection(p),
            "q is not a valid tensor: its rank (-1) is outside [0, 4]");
  p = validParams();
  p.out.rank = 5;
  EXPECT_EQ(rejection(p),
            "out is not a valid tensor: its rank (5) is outside [0, 4]");
  p = validParams();
  p.seqLens.dtype = static_cast<DType>(9);
  EXPECT_EQ(rejection(p), "seq_lens has an invalid dtype (9)");
  // Views Tensor::contiguous cannot make.
  p = validParams();
  p.q = Tensor::contiguous(p.q.data, DType::BF16, {1, 2, 3, 4, 5});
  EXPECT_EQ(p.q.rank, -1);
  EXPECT_NE(rejection(p).find("q is not a valid tensor"), std::string::npos);
  Tensor huge =
      Tensor::contiguous(p.q.data, DType::BF16, {INT64_MAX / 2, 32, 128});
  EXPECT_EQ(huge.rank, -1);
  Tensor t = Tensor::contiguous(p.q.data, DType::BF16, {4, 32, 128});
  EXPECT_EQ(t.numElements(), 4 * 32 * 128);
  t.sizes[0] = INT64_MAX / 2;
  EXPECT_EQ(t.numElements(), -1);
}

TEST_F(RuntimeTest, AcceptsStridedCaches) {
  if (hasDriver())
    GTEST_SKIP() << "fake pointers must not reach a real GPU";
  // K and V as halves of one [pages, 2, page, heads, dim] pool.
  DecodeParams p = validParams();
  p.kCache.strides[0] = 2 * 16 * 8 * 128;
  p.vCache = p.kCache;
  p.vCache.data = static_cast<char *>(p.kCache.data) + 16 * 8 * 128 * 2;
  EXPECT_EQ(decoder->decode(p, nullptr).code(), StatusCode::NoDriver);
}

TEST_F(RuntimeTest, RejectsMaxSeqLenBeyondCapacity) {
  DecodeParams p = validParams();
  p.maxSeqLen = 161;
  EXPECT_EQ(rejection(p), "max_seq_len 161 exceeds the page table's capacity "
                          "(10 pages of 16 = 160 tokens)");
}

TEST_F(RuntimeTest, VariantValuesMatchTheConfig) {
  // The plain config's kernels have no variant: a value for one is refused,
  // not ignored.
  DecodeParams p = validParams();
  p.window = 128;
  EXPECT_EQ(rejection(p), "window is given, but config "
                          "h32_kv8_d128_p16_bf16_nhd_w4 has no such variant");
  p = validParams();
  p.softCap = 30;
  EXPECT_NE(rejection(p).find("soft_cap is given"), std::string::npos);
  p = validParams();
  p.sinks = Tensor::contiguous(p.q.data, DType::F32, {32});
  EXPECT_NE(rejection(p).find("sinks is given"), std::string::npos);

  // A config with every variant needs every value, each well-formed.
  mlir::DialectRegistry registry;
  mlir::paged_attn::registerAllDialects(registry);
  mlir::MLIRContext ctx(registry);
  ctx.loadAllAvailableDialects();
  KernelConfig all = config;
  all.variants = {true, true, true, true, true};
  auto compiled = mlir::paged_attn::compileDecodeKernels(
      &ctx, {all}, mlir::paged_attn::KernelCompileOptions(), "v.ptx");
  ASSERT_TRUE(mlir::succeeded(compiled));
  {
    std::error_code ec;
    llvm::raw_fd_ostream ptx(directory + "/v.ptx", ec);
    ptx << compiled->ptx;
    llvm::raw_fd_ostream json(directory + "/v.json", ec);
    json << llvm::formatv("{0:2}", compiled->manifest);
  }
  std::shared_ptr<KernelLibrary> lib;
  ASSERT_TRUE(KernelLibrary::load(directory + "/v.json", &lib));
  std::unique_ptr<Decoder> variantDecoder;
  ASSERT_TRUE(Decoder::create(lib, all, &variantDecoder));
  char *base = reinterpret_cast<char *>(uintptr_t(1) << 41);
  auto withValues = [&] {
    DecodeParams v = validParams();
    v.window = 4096;
    v.softCap = 50;
    v.alibiSlopes = Tensor::contiguous(base, DType::F32, {32});
    v.sinks = Tensor::contiguous(base + 4096, DType::F32, {32});
    v.lse = Tensor::contiguous(base + 8192, DType::F32, {4, 32});
    return v;
  };
  auto refusal = [&](const DecodeParams &v) {
    Status s = variantDecoder->decode(v, nullptr);
    EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
    return s.message();
  };
  DecodeParams v = withValues();
  v.window = 0;
  EXPECT_EQ(refusal(v), "config " + all.name() +
                            " has a window: window must be at least 1, got 0");
  v = withValues();
  v.softCap = std::numeric_limits<float>::quiet_NaN();
  EXPECT_NE(refusal(v).find("soft_cap must be finite and positive"),
            std::string::npos);
  v = withValues();
  v.alibiSlopes.sizes[0] = 8;
  EXPECT_EQ(refusal(v), "alibi_slopes has shape [8], expected [num_heads]");
  v = withValues();
  v.sinks = Tensor();
  EXPECT_EQ(refusal(v), "sinks is a null pointer");
  v = withValues();
  v.lse = Tensor::contiguous(base + 8192, DType::F32, {3, 32});
  EXPECT_EQ(refusal(v), "lse has shape [3, 32], expected [batch, num_heads]");
  v = withValues();
  v.lse.dtype = DType::BF16;
  EXPECT_EQ(refusal(v), "lse has dtype bf16, expected f32");
  if (!hasDriver()) {
    Status s = variantDecoder->decode(withValues(), nullptr);
    EXPECT_EQ(s.code(), StatusCode::NoDriver) << s.message();
  }
}

TEST_F(RuntimeTest, RejectsBadScaleAndSplits) {
  DecodeParams p = validParams();
  p.scale = -1;
  EXPECT_NE(rejection(p).find("scale must be finite and positive"),
            std::string::npos);
  p = validParams();
  p.numSplits = -2;
  EXPECT_EQ(rejection(p), "num_splits must be in [0, 65535], got -2");
  p = validParams();
  p.numSplits = 2;
  p.splitChunk = -64;
  EXPECT_EQ(rejection(p), "split_chunk must be at least 0, got -64");
  p = validParams();
  p.numSplits = 0;
  p.splitChunk = 64;
  EXPECT_EQ(rejection(p),
            "split_chunk 64 needs num_splits; an automatic split chooses its "
            "own");
  std::vector<int32_t> lengths(size_t(p.q.sizes[0]), 7);
  p = validParams();
  p.hostSeqLens = lengths.data();
  p.numSplits = 3;
  EXPECT_EQ(rejection(p), "host_seq_lens plan an automatic split; with "
                          "num_splits 3 given, give split_chunk instead");
  lengths.back() = -1;
  p.numSplits = 0;
  EXPECT_EQ(rejection(p), "host_seq_lens[" +
                              std::to_string(lengths.size() - 1) +
                              "] must be at least 0, got -1");
}

TEST_F(RuntimeTest, WorkspaceSizes) {
  EXPECT_EQ(decoder->workspaceSize(4, 1), 0u);
  // 4*32*3 rows of 128 f32, then 4*32*3 f32, each rounded up to 256 bytes.
  EXPECT_EQ(decoder->workspaceSize(4, 3), size_t(4 * 32 * 3 * 128 * 4) + 1536u);
}

// The counts of the best measured times on an H200 (bench/NOTES.md 44),
// the CTAs as 8 KV heads per sequence here.
TEST_F(RuntimeTest, SplitHeuristic) {
  // 128 x 8 KV heads = 1024 CTAs, two full waves at 4 per SM: no split.
  EXPECT_EQ(decoder->chooseNumSplits(128, 2048, 132, 4), 1);
  // 256 CTAs, two an SM: they stream at DRAM's pace, although 4 per SM
  // would fit (head_dim 64: 73.2 us unsplit, 76.7 split two ways).
  EXPECT_EQ(decoder->chooseNumSplits(32, 4096, 132, 4), 1);
  EXPECT_EQ(decoder->chooseNumSplits(32, 4096, 132, 3), 1);
  // 128 CTAs, about one an SM, stream too (28/4: 72.2 against 75.2).
  EXPECT_EQ(decoder->chooseNumSplits(16, 4096, 132, 2), 1);
  // 64 CTAs leave half the SMs idle: four chunks, two CTAs an SM (MQA
  // 32/1: 50.4 against 62.0 split two ways and 101.7 unsplit; 8 x 8k:
  // 74.3 against 111.5 unsplit).
  EXPECT_EQ(decoder->chooseNumSplits(8, 4096, 132, 2), 4);
  EXPECT_EQ(decoder->chooseNumSplits(8, 8192, 132, 2), 4);
  // 512 CTAs at 3 per SM: a second, partial wave, but every SM streams.
  EXPECT_EQ(decoder->chooseNumSplits(64, 8192, 132, 3), 1);
  // One sequence: split to fill the SMs, bounded by the length.
  EXPECT_GT(decoder->chooseNumSplits(1, 32768, 132, 4), 16);
  EXPECT_EQ(decoder->chooseNumSplits(1, 100, 132, 4), 1);
  EXPECT_EQ(decoder->chooseNumSplits(1, 0, 132, 4), 1);
}

// The host's lengths plan one chunk length for the batch (64-key loop
// iterations here): equal lengths split as chooseNumSplits does; a ragged
// batch splits its long sequences more than an even split would.
TEST_F(RuntimeTest, SplitPlanFromHostLengths) {
  std::vector<int32_t> equal(8, 8192);
  Decoder::SplitPlan plan = decoder->planSplits(8, equal.data(), 8192, 132, 2);
  EXPECT_EQ(plan.numSplits, decoder->chooseNumSplits(8, 8192, 132, 2));
  EXPECT_EQ(plan.numSplits, 4);
  EXPECT_EQ(plan.splitChunk, 2048);
  equal.assign(32, 4096);
  plan = decoder->planSplits(32, equal.data(), 4096, 132, 4);
  EXPECT_EQ(plan.numSplits, 1);
  EXPECT_EQ(plan.splitChunk, 0);
  // 8 x 8 KV heads at 2 CTAs per SM: an even split takes 4 chunks of every
  // sequence (256 CTAs, the longest's 4032 keys each). Chunks of 1792 keys
  // take 9 of the longest and 33 in all: 264 CTAs, one wave.
  std::vector<int32_t> ragged = {16000, 12000, 9000, 7000,
                                 5000,  3000,  1000, 100};
  EXPECT_EQ(decoder->chooseNumSplits(8, 16000, 132, 2), 4);
  plan = decoder->planSplits(8, ragged.data(), 16000, 132, 2);
  EXPECT_EQ(plan.numSplits, 9);
  EXPECT_EQ(plan.splitChunk, 1792);
  EXPECT_EQ(splitChunkLength(16000, plan.numSplits, plan.splitChunk, 64), 1792);
  // One long sequence among short ones: an even split, which takes all 16
  // as long as the longest, leaves their 128 CTAs unsplit (one an SM,
  // streaming); the plan splits the long one 18 ways and leaves the short
  // ones' other 17 chunks empty.
  std::vector<int32_t> oneLong(16, 512);
  oneLong[0] = 32768;
  EXPECT_EQ(decoder->chooseNumSplits(16, 32768, 132, 2), 1);
  plan = decoder->planSplits(16, oneLong.data(), 32768, 132, 2);
  EXPECT_EQ(plan.numSplits, 18);
  EXPECT_EQ(plan.splitChunk, 1856);
  // Lengths past max_seq_len count as max_seq_len; no keys, no split.
  std::vector<int32_t> longer = {50000};
  plan = decoder->planSplits(1, longer.data(), 4096, 132, 4);
  EXPECT_EQ(plan.numSplits, decoder->chooseNumSplits(1, 4096, 132, 4));
  EXPECT_EQ(plan.splitChunk, splitChunkLength(4096, plan.numSplits, 0, 64));
  std::vector<int32_t> empty(4, 0);
  plan = decoder->planSplits(4, empty.data(), 4096, 132, 4);
  EXPECT_EQ(plan.numSplits, 1);
  EXPECT_EQ(plan.splitChunk, 0);
}

TEST(SplitChunkTest, EvenShareOrTheLeastChunkInWholeIterations) {
  EXPECT_EQ(splitChunkLength(1000, 4, 0, 64), 256);
  EXPECT_EQ(splitChunkLength(1000, 4, 300, 64), 320);
  EXPECT_EQ(splitChunkLength(100, 4, 300, 64), 320);
  EXPECT_EQ(splitChunkLength(0, 4, 0, 64), 0);
  // num_splits chunks cover the keys whatever the least chunk.
  for (int64_t keys : {1, 63, 64, 65, 4095, 100000})
    for (int64_t splits : {1, 3, 7, 256})
      for (int64_t least : {0, 1, 64, 5000})
        EXPECT_GE(splits * splitChunkLength(keys, splits, least, 64), keys);
}

/// Merge params over fake, aligned device addresses: `n` partials of
/// `batch` sequences of 32 heads of 128 bf16, with an lse output.
static MergeParams mergeParams(int64_t n = 2, int64_t batch = 4) {
  MergeParams p;
  char *base = reinterpret_cast<char *>(uintptr_t(1) << 40);
  p.partialOut = Tensor::contiguous(base, DType::BF16, {n, batch, 32, 128});
  p.partialLse =
      Tensor::contiguous(base + (1 << 24), DType::F32, {n, batch, 32});
  p.out = Tensor::contiguous(base + (1 << 25), DType::BF16, {batch, 32, 128});
  p.lse = Tensor::contiguous(base + (1 << 26), DType::F32, {batch, 32});
  return p;
}

TEST_F(RuntimeTest, MixedManifestHoldsDecodesAndMerges) {
  std::shared_ptr<KernelLibrary> lib;
  Status s = KernelLibrary::load(directory + "/m.json", &lib);
  ASSERT_TRUE(s) << s.message();
  ASSERT_EQ(lib->configs().size(), 1u);
  std::vector<MergeConfig> merges = lib->mergeConfigs();
  ASSERT_EQ(merges.size(), 2u);
  EXPECT_EQ(merges[0].name(), "h32_d128_bf16_ln_lse");
  EXPECT_EQ(merges[1].name(), "h8_d64_f32_ln_sinks");
  std::unique_ptr<Decoder> dec;
  EXPECT_TRUE(Decoder::create(lib, config, &dec));
  std::unique_ptr<Merger> merger;
  EXPECT_TRUE(Merger::create(lib, merges[1], &merger));
  // A config the library lacks is named with those it has; one that
  // breaks the op's rules gets the rule.
  s = Merger::create(lib, MergeConfig::forOp(32, 128, DType::BF16, true, true),
                     &merger);
  EXPECT_EQ(s.code(), StatusCode::NotFound);
  EXPECT_EQ(s.message(),
            "no merge kernel for config h32_d128_bf16_ln_sinks_lse "
            "(library holds: h32_d128_bf16_ln_lse, "
            "h8_d64_f32_ln_sinks)");
  s = Merger::create(lib, MergeConfig::forOp(8, 4, DType::BF16, false, false),
                     &merger);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
  EXPECT_NE(s.message().find("must be a multiple of 16 bytes"),
            std::string::npos)
      << s.message();
  s = Merger::create(library, merges[0], &merger);
  EXPECT_EQ(s.code(), StatusCode::NotFound);
  EXPECT_NE(s.message().find("(library holds: none)"), std::string::npos);
}

// A merge entry is checked as a decode's is: its config against the op's
// rules and its name, its kernel's parameters and launch shape.
TEST_F(RuntimeTest, MergeEntriesAreCheckedAtLoad) {
  auto loadWith = [](const std::string &from, const std::string &to) {
    return refusalOfEdit("m.json", from, to);
  };
  EXPECT_EQ(loadWith("\"rows_per_cta\": 8", "\"rows_per_cta\": 0"),
            "'merge.rows_per_cta' must be an integer in [1, 32], got 0");
  EXPECT_EQ(loadWith("\"name\": \"h32_d128_bf16_ln_lse\"",
                     "\"name\": \"h32_d128_bf16_ln\""),
            "merge 'config.name' is 'h32_d128_bf16_ln', but its fields make "
            "h32_d128_bf16_ln_lse");
  EXPECT_EQ(loadWith("\"natural_lse\": true", "\"natural_lse\": 1"),
            "merge config has no boolean 'natural_lse'");
  EXPECT_EQ(
      loadWith("\"partial_dtype\": \"bf16\"", "\"partial_dtype\": \"f64\""),
      "merge config has no partial_dtype f16, bf16 or f32");
  EXPECT_EQ(loadWith("\"merges\": [", "\"merges\": 3, \"x\": ["),
            "no 'kernels', 'merges' or 'appends' entries");
}

TEST_F(RuntimeTest, MergeChecksItsTensors) {
  std::shared_ptr<KernelLibrary> lib;
  ASSERT_TRUE(KernelLibrary::load(directory + "/m.json", &lib));
  std::unique_ptr<Merger> merger;
  ASSERT_TRUE(Merger::create(
      lib, MergeConfig::forOp(32, 128, DType::BF16, false, true), &merger));
  auto rejection = [&](const MergeParams &p) {
    Status s = merger->merge(p, nullptr);
    EXPECT_EQ(s.code(), StatusCode::InvalidArgument) << s.message();
    return s.message();
  };
  MergeParams p = mergeParams();
  p.partialOut =
      Tensor::contiguous(p.partialOut.data, DType::BF16, {2, 4, 32, 64});
  EXPECT_EQ(rejection(p), "partial_out has shape [2, 4, 32, 64], expected "
                          "[N, batch, 32, 128]");
  p = mergeParams();
  p.partialOut.dtype = DType::F16;
  EXPECT_EQ(rejection(p), "partial_out must be bf16 ([N, batch, 32, 128])");
  p = mergeParams();
  p.partialLse = Tensor::contiguous(p.partialLse.data, DType::F32, {3, 4, 32});
  EXPECT_EQ(rejection(p), "partial_lse has shape [3, 4, 32], expected "
                          "[2, 4, 32]");
  p = mergeParams();
  p.out = Tensor::contiguous(p.out.data, DType::BF16, {4, 32});
  EXPECT_EQ(rejection(p), "out must have rank 3 ([4, 32, 128]), got 2");
  p = mergeParams();
  p.lse = Tensor();
  EXPECT_EQ(rejection(p), "lse must have rank 2 ([4, 32]), got 0");
  p = mergeParams();
  p.sinks = Tensor::contiguous(p.lse.data, DType::F32, {32});
  EXPECT_EQ(rejection(p), "sinks is given, but merge config "
                          "h32_d128_bf16_ln_lse has none");
  // The kernel loads 16-byte rows of every partial.
  p = mergeParams();
  p.partialOut.strides[0] += 1;
  EXPECT_EQ(rejection(p), "partial_out stride of dim 0 (16385 elements) is "
                          "not a multiple of 16 bytes");
  p = mergeParams();
  p.partialOut.strides[3] = 2;
  EXPECT_EQ(rejection(p), "partial_out must have unit stride in its last "
                          "dimension, got 2");
  p = mergeParams();
  p.out.data = static_cast<char *>(p.out.data) + 2;
  EXPECT_EQ(rejection(p), "out data pointer is not 16-byte aligned");
  p = mergeParams(2, 65536);
  EXPECT_EQ(rejection(p), "batch 65536 exceeds the grid limit of 65535 "
                          "sequences per launch");
}

TEST_F(RuntimeTest, CApiMergeTakesTheRulesAndReportsErrors) {
  paged_attn_library lib = nullptr;
  ASSERT_EQ(paged_attn_library_load((directory + "/m.json").c_str(), &lib),
            PAGED_ATTN_OK);
  paged_attn_merger merger = nullptr;
  paged_attn_merge_config c = {32, 128, PAGED_ATTN_BF16,
                               PAGED_ATTN_VARIANT_WINDOW};
  EXPECT_EQ(paged_attn_merger_create(lib, &c, &merger),
            PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_STREQ(paged_attn_last_error(),
               "a merge takes the sinks and lse variants only, got flags 1");
  c.variants = PAGED_ATTN_VARIANT_LSE;
  int bad = 9;
  std::memcpy(&c.dtype, &bad, sizeof bad);
  EXPECT_EQ(paged_attn_merger_create(lib, &c, &merger),
            PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_STREQ(paged_attn_last_error(), "unknown dtype");
  c.dtype = PAGED_ATTN_BF16;
  c.head_dim = 4;
  EXPECT_EQ(paged_attn_merger_create(lib, &c, &merger),
            PAGED_ATTN_INVALID_ARGUMENT);
  c.head_dim = 128;
  c.variants |= PAGED_ATTN_VARIANT_SINKS;
  EXPECT_EQ(paged_attn_merger_create(lib, &c, &merger), PAGED_ATTN_NOT_FOUND);
  EXPECT_EQ(merger, nullptr);
  c.variants = PAGED_ATTN_VARIANT_LSE;
  ASSERT_EQ(paged_attn_merger_create(lib, &c, &merger), PAGED_ATTN_OK)
      << paged_attn_last_error();
  EXPECT_EQ(paged_attn_merge(merger, nullptr, nullptr),
            PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_STREQ(paged_attn_last_error(), "params is null");
  paged_attn_merge_params p = capi::toC(mergeParams());
  p.partial_lse.rank = 7;
  EXPECT_EQ(paged_attn_merge(merger, &p, nullptr),
            PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_STREQ(paged_attn_last_error(), "partial_lse is not a valid tensor: "
                                        "its rank (7) is outside [0, 4]");
  p = capi::toC(mergeParams());
  p.out.sizes[0] = 5;
  EXPECT_EQ(paged_attn_merge(merger, &p, nullptr),
            PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_STREQ(paged_attn_last_error(),
               "out has shape [5, 32, 128], expected [4, 32, 128]");
  paged_attn_merger_destroy(merger);
  paged_attn_library_destroy(lib);
}

TEST_F(RuntimeTest, ManifestErrors) {
  std::shared_ptr<KernelLibrary> lib;
  Status s = KernelLibrary::load(directory + "/missing.json", &lib);
  EXPECT_EQ(s.code(), StatusCode::NotFound);
  std::string bad = directory + "/bad.json";
  std::ofstream(bad) << "{\"format\": \"paged_attn.manifest\", \"version\": 1,";
  s = KernelLibrary::load(bad, &lib);
  EXPECT_EQ(s.code(), StatusCode::ParseError);
  EXPECT_NE(s.message().find("invalid JSON"), std::string::npos);
  std::ofstream(bad) << "{\"format\": \"something else\"}";
  s = KernelLibrary::load(bad, &lib);
  EXPECT_EQ(s.code(), StatusCode::ParseError);
  EXPECT_NE(s.message().find("not a paged_attn manifest"), std::string::npos);
  // A manifest field of the wrong type names the field, and its kernel.
  std::ifstream in(directory + "/k.json");
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  const std::string key = "\"programmatic_launch\": ";
  size_t at = 0;
  for (const char *kernel : {"decode", "merge"}) {
    at = text.find(key, at);
    ASSERT_NE(at, std::string::npos) << kernel;
    size_t valueAt = at + key.size();
    std::string wrong = text;
    wrong.replace(valueAt, text.find_first_of(",\n}", valueAt) - valueAt,
                  "\"yes\"");
    std::ofstream(bad) << wrong;
    s = KernelLibrary::load(bad, &lib);
    EXPECT_EQ(s.code(), StatusCode::ParseError);
    EXPECT_NE(s.message().find(std::string("programmatic_launch of the ") +
                               kernel + " kernel is not a boolean"),
              std::string::npos)
        << s.message();
    at = valueAt;
  }
  std::remove(bad.c_str());
  s = KernelLibrary::loadDirectory(directory + "/nowhere", &lib);
  EXPECT_EQ(s.code(), StatusCode::NotFound);
}

// Manifests are checked against the Spec when loaded: the config against
// the op's rules, each kernel's parameters against the lists launches pack.
TEST_F(RuntimeTest, ManifestsAreCheckedAgainstTheSpec) {
  auto loadWith = [](const std::string &from, const std::string &to) {
    return refusalOfEdit("k.json", from, to);
  };
  EXPECT_EQ(loadWith("\"num_kv_heads\": 8", "\"num_kv_heads\": 3"),
            "num_heads (32) must be a multiple of num_kv_heads "
            "(3)");
  EXPECT_EQ(loadWith("\"head_dim\": 128", "\"head_dim\": 128.5"),
            "config has no integer 'head_dim'");
  EXPECT_EQ(loadWith("\"layout\": \"nhd\"", "\"layout\": \"nchw\""),
            "config has no layout nhd or hnd");
  EXPECT_EQ(loadWith("\"name\": \"num_pages\"", "\"name\": \"pages\""),
            "check kernel parameter 2 is 'pages', this runtime "
            "expects 'num_pages'");
  EXPECT_EQ(loadWith("\"type\": \"i32\"", "\"type\": \"i64\""),
            "check kernel parameter 'num_pages' is not a scalar "
            "i32, as this runtime passes it");
  EXPECT_EQ(loadWith("\"element_type\": \"bf16\"", "\"element_type\": \"f16\""),
            "decode kernel parameter 'q' is not a rank-3 memref "
            "of bf16, as this runtime passes it");
}

// Every number a launch or the split-count model uses is checked when the
// manifest is loaded: an integer, in the range the kernels can have.
TEST_F(RuntimeTest, ManifestNumbersAreCheckedAtLoad) {
  // tokens_per_iteration 0 used to load, and the split-count model divided
  // by it on the first automatic decode.
  EXPECT_EQ(refusalWith("split_kv", "tokens_per_iteration", 0),
            "'split_kv.tokens_per_iteration' must be an integer in [1, "
            "1048576], got 0");
  EXPECT_EQ(refusalWith("split_kv", "tokens_per_iteration", 2.5),
            "'split_kv.tokens_per_iteration' must be an integer in [1, "
            "1048576], got 2.5");
  EXPECT_EQ(refusalWith("split_kv", "tokens_per_iteration", "64"),
            "'split_kv.tokens_per_iteration' must be an integer in [1, "
            "1048576], got '64'");
  EXPECT_EQ(refusal([](llvm::json::Object &, llvm::json::Object &entry) {
              entry.getObject("split_kv")->erase("tokens_per_iteration");
            }),
            "no 'split_kv.tokens_per_iteration'");
  // 32 query heads over 8 KV heads: 4 per KV head to share out.
  EXPECT_EQ(refusalWith("decode", "ctas_per_kv_head", 0),
            "'decode.ctas_per_kv_head' must be an integer in [1, 4], got 0");
  EXPECT_EQ(refusalWith("decode", "ctas_per_kv_head", 2),
            "'decode.ctas_per_kv_head' (2) must be num_heads / num_kv_heads "
            "(4) / heads_per_cta (4)");
  EXPECT_EQ(refusal([](llvm::json::Object &, llvm::json::Object &entry) {
              llvm::json::Object &decode = *entry.getObject("decode");
              decode.erase("heads_per_cta");
              decode["ctas_per_kv_head"] = 3;
            }),
            "'decode.ctas_per_kv_head' (3) must divide num_heads / "
            "num_kv_heads (4)");
  EXPECT_EQ(refusalWith("decode", "heads_per_cta", 1e300),
            "'decode.heads_per_cta' must be an integer in [1, 4], got "
            "1e+300");
  EXPECT_EQ(refusalWith("decode", "dynamic_shared_memory_bytes", -1),
            "'decode.dynamic_shared_memory_bytes' must be an integer in [0, "
            "232448], got -1");
  EXPECT_EQ(refusalWith("decode", "dynamic_shared_memory_bytes", 300000),
            "'decode.dynamic_shared_memory_bytes' must be an integer in [0, "
            "232448], got 300000");
  EXPECT_EQ(refusalWith("decode", "static_shared_memory_bytes", 200000),
            "the decode kernel's shared memory (200000 static + 98304 "
            "dynamic bytes) is more than any supported chip gives a CTA "
            "(232448)");
  EXPECT_EQ(refusalWith("merge", "dynamic_shared_memory_bytes", 1024),
            "'merge.dynamic_shared_memory_bytes' must be an integer in [0, "
            "0], got 1024");
}

TEST_F(RuntimeTest, ManifestBlocksAreCheckedAtLoad) {
  const char *decodeRule =
      "'decode.block' must be [x, 1, 1] with x a multiple of 32 in [1, 1024]";
  EXPECT_EQ(refusalWith("decode", "block", llvm::json::Array{100, 1, 1}),
            std::string(decodeRule) + ", got 100");
  EXPECT_EQ(refusalWith("decode", "block", llvm::json::Array{2048, 1, 1}),
            decodeRule);
  EXPECT_EQ(refusalWith("decode", "block", llvm::json::Array{128, 2, 1}),
            decodeRule);
  EXPECT_EQ(refusalWith("decode", "block", llvm::json::Array{128.5, 1, 1}),
            decodeRule);
  EXPECT_EQ(refusalWith("merge", "block", llvm::json::Array{0, 1, 1}),
            "'merge.block' must be [x, 1, 1] with x in [1, 1024]");
  EXPECT_EQ(refusalWith("check", "block", llvm::json::Array{128}),
            "'check.block' must be [x, 1, 1] with x in [1, 1024]");
}

TEST_F(RuntimeTest, ManifestVersionAndNamesAreCheckedAtLoad) {
  // 1.5 used to be read as version 1.
  auto version = [](llvm::json::Value v) {
    return refusal([&](llvm::json::Object &root, llvm::json::Object &) {
      root["version"] = std::move(v);
    });
  };
  EXPECT_EQ(version(1.5), "unsupported manifest version 1.5");
  EXPECT_EQ(version(2), "unsupported manifest version 2");
  EXPECT_EQ(version("1"), "unsupported manifest version '1'");
  // The Spec reads the config's sizes as integers int64_t holds exactly.
  EXPECT_EQ(refusalWith("config", "num_heads", 1e300),
            "config has no integer 'num_heads'");
  EXPECT_EQ(refusalWith("config", "page_size", -16),
            "page_size must be at least 1, got -16");
  // Configs are found by their fields and named by their name: the two
  // must agree.
  EXPECT_EQ(refusalWith("config", "name", "h32_kv8_d128_p16_f16_nhd_w4"),
            "'config.name' is 'h32_kv8_d128_p16_f16_nhd_w4', but its fields "
            "make h32_kv8_d128_p16_bf16_nhd_w4");
  EXPECT_EQ(refusalWith("decode", "name", ""),
            "no kernel name in 'decode.name'");
  EXPECT_EQ(refusalWith("decode", "params", llvm::json::Array{}),
            "decode kernel parameters do not match this runtime");
}

// The PTX a manifest names is refused at load, naming the file, when it is
// not a file of PTX that defines the manifest's kernels: not found out by
// the JIT on the first launch.
TEST_F(RuntimeTest, ManifestPtxIsCheckedAtLoad) {
  std::ifstream in(directory + "/k.ptx");
  std::string ptx((std::istreambuf_iterator<char>(in)),
                  std::istreambuf_iterator<char>());
  std::string manifest = directory + "/k.json";
  auto loadWithPtx = [&](const std::function<void(const std::string &)> &make) {
    std::string ptxPath = directory + "/other.ptx";
    make(ptxPath);
    std::ifstream m(manifest);
    std::string text((std::istreambuf_iterator<char>(m)),
                     std::istreambuf_iterator<char>());
    std::string from = "\"ptx\": \"k.ptx\"";
    size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos);
    text.replace(at, from.size(), "\"ptx\": \"other.ptx\"");
    std::string path = directory + "/other.json";
    std::ofstream(path) << text;
    std::shared_ptr<KernelLibrary> lib;
    Status s = KernelLibrary::load(path, &lib);
    llvm::sys::fs::remove_directories(ptxPath);
    std::remove(path.c_str());
    EXPECT_FALSE(s) << "loaded";
    return s;
  };
  std::string named = "PTX '" + directory + "/other.ptx' named by '" +
                      directory + "/other.json' ";
  auto withText = [&](const std::string &text) {
    return [text](const std::string &path) { std::ofstream(path) << text; };
  };
  Status s = loadWithPtx(
      [](const std::string &path) { llvm::sys::fs::create_directory(path); });
  EXPECT_EQ(s.code(), StatusCode::NotFound);
  EXPECT_EQ(s.message(), "cannot read PTX '" + directory +
                             "/other.ptx' named by '" + directory +
                             "/other.json': it is a directory");
  s = loadWithPtx(withText(""));
  EXPECT_EQ(s.code(), StatusCode::ParseError);
  EXPECT_EQ(s.message(), named + "is empty");
  s = loadWithPtx(withText("garbage\n"));
  EXPECT_EQ(s.message(), named + "is not PTX (no .version directive)");
  s = loadWithPtx(withText(".version 8.0\n// .target sm_90\n"));
  EXPECT_EQ(s.message(), named + "is not PTX (no .target directive)");
  // The merge kernel renamed: the manifest lists a kernel the PTX lacks.
  std::string merge = "paged_attn_merge_h32_kv8_d128_p16_bf16_nhd_w4";
  std::string renamed = ptx;
  for (size_t at = 0; (at = renamed.find(merge, at)) != std::string::npos;)
    renamed[at + merge.size() - 1] = '5';
  s = loadWithPtx(withText(renamed));
  EXPECT_EQ(s.code(), StatusCode::ParseError);
  EXPECT_EQ(s.message(),
            named + "has no kernel '" + merge + "' (no .entry of that name)");
  // A kernel named only in a comment is not defined.
  s = loadWithPtx(withText(renamed + "\n// .entry " + merge + "(\n"));
  EXPECT_EQ(s.message(),
            named + "has no kernel '" + merge + "' (no .entry of that name)");
  // The manifest itself: a directory is not one.
  std::shared_ptr<KernelLibrary> lib;
  s = KernelLibrary::load(directory, &lib);
  EXPECT_EQ(s.code(), StatusCode::NotFound);
  EXPECT_EQ(s.message(),
            "cannot read manifest '" + directory + "': it is a directory");
}

TEST_F(RuntimeTest, WorkspaceTooLargeForMemory) {
  // No size would be right: 0, and decode() would say why.
  EXPECT_EQ(decoder->workspaceSize(int64_t(1) << 50, 65535), 0u);
  EXPECT_EQ(decoder->workspaceSize(-1, 4), 0u);
  EXPECT_EQ(decoder->workspaceSize(INT64_MAX, INT_MAX), 0u);
}

// The Status overload says why there is no size.
TEST_F(RuntimeTest, WorkspaceSizeSaysWhy) {
  size_t bytes = 7;
  Status s = decoder->workspaceSize(int64_t(1) << 40, 1 << 20, &bytes);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
  EXPECT_EQ(s.message(), "batch 1099511627776 exceeds the grid limit of "
                         "65535 sequences per launch");
  s = decoder->workspaceSize(4, 1 << 20, &bytes);
  EXPECT_EQ(s.message(), "num_splits must be in [0, 65535], got 1048576");
  s = decoder->workspaceSize(INT64_MAX, INT64_MAX, &bytes);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
  s = decoder->workspaceSize(-1, 2, &bytes);
  EXPECT_EQ(s.message(), "batch must be at least 0, got -1");
  EXPECT_EQ(bytes, 7u) << "written on failure";
  ASSERT_TRUE(decoder->workspaceSize(4, 3, &bytes));
  EXPECT_EQ(bytes, size_t(4 * 32 * 3 * 128 * 4) + 1536u);
  ASSERT_TRUE(decoder->workspaceSize(65535, 65535, &bytes));
  // Each of the two arrays rounded up to 256 bytes.
  size_t rows = size_t(65535) * 32 * 65535;
  EXPECT_GE(bytes, rows * 129 * 4);
  EXPECT_LT(bytes, rows * 129 * 4 + 512);
  // The bounds the workspace needs no device for.
  s = decoder->maxWorkspaceSize(65536, 1024, &bytes);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument) << s.message();
  int splits = 0;
  s = decoder->defaultNumSplits(-1, 1024, &splits);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument) << s.message();
}

// The split-count model takes any numbers without overflowing (the
// sanitizer build checks).
TEST_F(RuntimeTest, SplitHeuristicAtTheLimits) {
  for (int64_t batch : {int64_t(0), int64_t(1), int64_t(65535), INT64_MAX})
    for (int64_t len : {int64_t(-1), int64_t(1) << 31, INT64_MAX})
      for (int sms : {0, 1, INT_MAX}) {
        int splits = decoder->chooseNumSplits(batch, len, sms, INT_MAX);
        EXPECT_GE(splits, 1);
        EXPECT_LE(splits, 256);
      }
  EXPECT_EQ(decoder->chooseNumSplits(8, 8192, 132, 2), 4);
}

TEST_F(RuntimeTest, CApiTakesTheRulesFromTheSpec) {
  paged_attn_library lib = nullptr;
  ASSERT_EQ(paged_attn_library_load((directory + "/k.json").c_str(), &lib),
            PAGED_ATTN_OK);
  paged_attn_config c = {32, 8, 128, 16, PAGED_ATTN_I32, PAGED_ATTN_NHD, 0};
  paged_attn_decoder dec = nullptr;
  EXPECT_EQ(paged_attn_decoder_create(lib, &c, &dec),
            PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_STREQ(paged_attn_last_error(),
               "the element type must be f16, bf16 or f32, got i32");
  c.dtype = static_cast<paged_attn_dtype>(9);
  EXPECT_EQ(paged_attn_decoder_create(lib, &c, &dec),
            PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_STREQ(paged_attn_last_error(), "unknown dtype");
  c.dtype = PAGED_ATTN_BF16;
  c.layout = PAGED_ATTN_HND;
  EXPECT_EQ(paged_attn_decoder_create(lib, &c, &dec), PAGED_ATTN_NOT_FOUND);
  EXPECT_NE(std::string(paged_attn_last_error())
                .find("no kernel for config h32_kv8_d128_p16_bf16_hnd_w4"),
            std::string::npos);
  paged_attn_library_destroy(lib);
}

TEST_F(RuntimeTest, CApiReportsErrors) {
  paged_attn_library lib = nullptr;
  EXPECT_EQ(paged_attn_library_load(nullptr, &lib),
            PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_STREQ(paged_attn_last_error(), "manifest_path is null");
  EXPECT_EQ(paged_attn_library_load((directory + "/k.json").c_str(), &lib),
            PAGED_ATTN_OK);
  EXPECT_STREQ(paged_attn_last_error(), "");
  paged_attn_config c = {32, 8, 128, 16, PAGED_ATTN_BF16, PAGED_ATTN_NHD, 0};
  paged_attn_decoder dec = nullptr;
  ASSERT_EQ(paged_attn_decoder_create(lib, &c, &dec), PAGED_ATTN_OK);
  paged_attn_decode_params params;
  paged_attn_decode_params_init(&params);
  EXPECT_EQ(params.max_seq_len, -1);
  EXPECT_EQ(paged_attn_decode(dec, &params, nullptr),
            PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_STREQ(paged_attn_last_error(), "q is a null pointer");
  c.head_dim = 96;
  paged_attn_decoder missing = nullptr;
  EXPECT_EQ(paged_attn_decoder_create(lib, &c, &missing), PAGED_ATTN_NOT_FOUND);
  EXPECT_EQ(missing, nullptr);
  EXPECT_EQ(paged_attn_decoder_workspace_size(dec, 4, 3),
            size_t(4 * 32 * 3 * 128 * 4) + 1536u);
  paged_attn_decoder_destroy(dec);
  paged_attn_library_destroy(lib);
}

// paged_attn_tensor_contiguous used to read through a null `sizes`; now
// such a view has rank -1, every call refuses it, and the reason is in
// last_error.
TEST_F(RuntimeTest, CApiRefusesInvalidTensors) {
  paged_attn_library lib = nullptr;
  ASSERT_EQ(paged_attn_library_load((directory + "/k.json").c_str(), &lib),
            PAGED_ATTN_OK);
  paged_attn_config c = {32, 8, 128, 16, PAGED_ATTN_BF16, PAGED_ATTN_NHD, 0};
  paged_attn_decoder dec = nullptr;
  ASSERT_EQ(paged_attn_decoder_create(lib, &c, &dec), PAGED_ATTN_OK);
  DecodeParams cpp = validParams();
  paged_attn_decode_params p = capi::toC(cpp);
  p.num_splits = 1;
  auto message = [&] {
    EXPECT_EQ(paged_attn_decode(dec, &p, nullptr), PAGED_ATTN_INVALID_ARGUMENT);
    return std::string(paged_attn_last_error());
  };

  paged_attn_tensor good = p.q;
  p.q = paged_attn_tensor_contiguous(good.data, PAGED_ATTN_BF16, 3, nullptr);
  EXPECT_EQ(p.q.rank, -1);
  EXPECT_STREQ(paged_attn_last_error(),
               "paged_attn_tensor_contiguous: sizes is null");
  EXPECT_EQ(message(),
            "q is not a valid tensor: its rank (-1) is outside [0, 4]");
  const int64_t sizes[5] = {4, 32, 128, 1, 1};
  p.q = paged_attn_tensor_contiguous(good.data, PAGED_ATTN_BF16, 5, sizes);
  EXPECT_EQ(p.q.rank, -1);
  EXPECT_STREQ(paged_attn_last_error(),
               "paged_attn_tensor_contiguous: rank 5 is outside [0, 4]");
  p.q = paged_attn_tensor_contiguous(good.data, PAGED_ATTN_BF16, -3, sizes);
  EXPECT_EQ(p.q.rank, -1);
  const int64_t huge[3] = {INT64_MAX, INT64_MAX, 2};
  p.q = paged_attn_tensor_contiguous(good.data, PAGED_ATTN_BF16, 3, huge);
  EXPECT_EQ(p.q.rank, -1);
  EXPECT_STREQ(paged_attn_last_error(), "paged_attn_tensor_contiguous: the "
                                        "product of the sizes overflows int64");
  // A rank-0 view needs no sizes.
  paged_attn_tensor scalar =
      paged_attn_tensor_contiguous(good.data, PAGED_ATTN_F32, 0, nullptr);
  EXPECT_EQ(scalar.rank, 0);
  p.q =
      paged_attn_tensor_contiguous(good.data, PAGED_ATTN_BF16, 3, cpp.q.sizes);
  EXPECT_EQ(p.q.rank, 3);
  EXPECT_EQ(p.q.strides[0], 32 * 128);

  // An out-of-range rank or dtype set by hand is named, not cast.
  p.q.rank = 7;
  EXPECT_EQ(message(),
            "q is not a valid tensor: its rank (7) is outside [0, 4]");
  p.q = good;
  p.seq_lens.dtype = static_cast<paged_attn_dtype>(8);
  EXPECT_EQ(message(), "seq_lens has an invalid dtype (8)");
  // The fp8 dtypes are C dtypes, for caches only.
  p.seq_lens.dtype = PAGED_ATTN_F8E5M2;
  EXPECT_EQ(message(), "seq_lens has dtype f8e5m2, expected i32");
  // i64 is a C dtype too (an append's slot_mapping).
  p.seq_lens.dtype = PAGED_ATTN_I64;
  EXPECT_EQ(message(), "seq_lens has dtype i64, expected i32");
  p.seq_lens.dtype = PAGED_ATTN_I32;
  p.block_table.data = static_cast<char *>(p.block_table.data) + 2;
  EXPECT_EQ(message(), "block_table data pointer is not 4-byte aligned");
  paged_attn_decoder_destroy(dec);
  paged_attn_library_destroy(lib);
}

// The bare-size workspace call returns 0 with the reason in last_error
// (and "" after a size); the status call returns the reason.
TEST_F(RuntimeTest, CApiWorkspaceSizeErrors) {
  paged_attn_library lib = nullptr;
  ASSERT_EQ(paged_attn_library_load((directory + "/k.json").c_str(), &lib),
            PAGED_ATTN_OK);
  paged_attn_config c = {32, 8, 128, 16, PAGED_ATTN_BF16, PAGED_ATTN_NHD, 0};
  paged_attn_decoder dec = nullptr;
  ASSERT_EQ(paged_attn_decoder_create(lib, &c, &dec), PAGED_ATTN_OK);
  EXPECT_EQ(paged_attn_decoder_workspace_size(dec, int64_t(1) << 40, 1 << 20),
            0u);
  EXPECT_STREQ(paged_attn_last_error(), "batch 1099511627776 exceeds the grid "
                                        "limit of 65535 sequences per launch");
  EXPECT_EQ(paged_attn_decoder_workspace_size(dec, 4, 1), 0u);
  EXPECT_STREQ(paged_attn_last_error(), "");
  EXPECT_EQ(paged_attn_decoder_workspace_size(dec, INT64_MAX, INT32_MAX), 0u);
  EXPECT_STRNE(paged_attn_last_error(), "");
  EXPECT_EQ(paged_attn_decoder_workspace_size(nullptr, 4, 3), 0u);
  EXPECT_STREQ(paged_attn_last_error(), "decoder is null");

  size_t bytes = 0;
  EXPECT_EQ(paged_attn_decoder_get_workspace_size(dec, 4, -2, &bytes),
            PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_STREQ(paged_attn_last_error(),
               "num_splits must be in [0, 65535], got -2");
  EXPECT_EQ(paged_attn_decoder_get_workspace_size(dec, 4, 3, nullptr),
            PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_STREQ(paged_attn_last_error(), "bytes is null");
  EXPECT_EQ(paged_attn_decoder_get_workspace_size(dec, 4, 3, &bytes),
            PAGED_ATTN_OK);
  EXPECT_EQ(bytes, size_t(4 * 32 * 3 * 128 * 4) + 1536u);
  paged_attn_decoder_destroy(dec);
  paged_attn_library_destroy(lib);
}

//===----------------------------------------------------------------------===//
// Quantised (fp8) KV caches
//===----------------------------------------------------------------------===//

/// The suite's config (32/8 heads, head_dim 128, page 16, bf16 q) with fp8
/// caches of `dtype` scaled at `scale`, in `layout`.
static KernelConfig quantisedConfig(DType dtype, KVScaleKind scale,
                                    Layout layout = Layout::NHD) {
  KernelConfig c;
  c.numHeads = 32;
  c.numKVHeads = 8;
  c.headDim = 128;
  c.pageSize = 16;
  c.dtype = DType::BF16;
  c.layout = layout;
  c.kvQuant = KVQuant{dtype, scale};
  return c;
}

/// A contiguous view of any rank up to 4 (Tensor::contiguous takes a
/// brace list).
static Tensor contiguousOf(void *data, DType dtype,
                           const std::vector<int64_t> &sizes) {
  Tensor t;
  t.data = data;
  t.dtype = dtype;
  t.rank = int(sizes.size());
  int64_t stride = 1;
  for (int d = t.rank - 1; d >= 0; --d) {
    t.sizes[d] = sizes[d];
    t.strides[d] = stride;
    stride *= sizes[d];
  }
  return t;
}

class QuantisedRuntimeTest : public RuntimeTest {
protected:
  /// One granularity of each kind, both formats and both layouts.
  static std::vector<KernelConfig> quantisedConfigs() {
    return {quantisedConfig(DType::F8E4M3FN, KVScaleKind::Tensor),
            quantisedConfig(DType::F8E5M2, KVScaleKind::Head),
            quantisedConfig(DType::F8E4M3FN, KVScaleKind::Token),
            quantisedConfig(DType::F8E5M2, KVScaleKind::Token, Layout::HND)};
  }

  /// Their kernels, compiled into one manifest once for the suite.
  static void SetUpTestSuite() {
    RuntimeTest::SetUpTestSuite();
    mlir::DialectRegistry registry;
    mlir::paged_attn::registerAllDialects(registry);
    mlir::MLIRContext ctx(registry);
    ctx.loadAllAvailableDialects();
    auto compiled = mlir::paged_attn::compileDecodeKernels(
        &ctx, quantisedConfigs(), mlir::paged_attn::KernelCompileOptions(),
        "q.ptx");
    ASSERT_TRUE(mlir::succeeded(compiled));
    std::error_code ec;
    llvm::raw_fd_ostream ptx(directory + "/q.ptx", ec);
    ptx << compiled->ptx;
    llvm::raw_fd_ostream json(directory + "/q.json", ec);
    json << llvm::formatv("{0:2}", compiled->manifest);
  }

  void SetUp() override {
    RuntimeTest::SetUp();
    ASSERT_TRUE(KernelLibrary::load(directory + "/q.json", &quantised));
  }

  std::unique_ptr<Decoder> decoderFor(const KernelConfig &c) {
    std::unique_ptr<Decoder> d;
    Status s = Decoder::create(quantised, c, &d);
    EXPECT_TRUE(s) << s.message();
    return d;
  }

  /// validParams() with `c`'s fp8 caches and scales over fake, aligned
  /// device addresses (100 pages).
  DecodeParams quantisedParams(const KernelConfig &c, int64_t batch = 4) {
    DecodeParams p = validParams(batch);
    std::array<int64_t, 4> cache = c.cacheShape(100);
    p.kCache = Tensor::contiguous(p.kCache.data, c.cacheDType(),
                                  {cache[0], cache[1], cache[2], cache[3]});
    p.vCache = Tensor::contiguous(p.vCache.data, c.cacheDType(),
                                  {cache[0], cache[1], cache[2], cache[3]});
    char *base = reinterpret_cast<char *>(uintptr_t(1) << 41);
    p.kScale = contiguousOf(base, DType::F32, c.kvScaleShape(100));
    p.vScale = contiguousOf(base + (1 << 20), DType::F32, c.kvScaleShape(100));
    return p;
  }

  /// The message of `d`'s decode of `p`, which must fail validation.
  static std::string refusal(const Decoder &d, const DecodeParams &p) {
    Status s = d.decode(p, nullptr);
    EXPECT_EQ(s.code(), StatusCode::InvalidArgument) << s.message();
    return s.message();
  }

  std::shared_ptr<KernelLibrary> quantised;
};

// The manifest holds the quantisation: each config comes back with its
// kv_dtype and kv_scale, named by them, and is found only as itself.
TEST_F(QuantisedRuntimeTest, LibraryHoldsQuantisedConfigs) {
  std::vector<KernelConfig> held = quantised->configs();
  std::vector<KernelConfig> expected = quantisedConfigs();
  ASSERT_EQ(held.size(), expected.size());
  for (size_t i = 0; i < held.size(); ++i) {
    EXPECT_EQ(held[i], expected[i]) << held[i].name();
    EXPECT_TRUE(held[i].kvQuant.has_value()) << held[i].name();
  }
  EXPECT_EQ(held[0].name(), "h32_kv8_d128_p16_bf16_nhd_w4_f8e4m3fn_tensor");
  EXPECT_EQ(held[3].name(), "h32_kv8_d128_p16_bf16_hnd_w4_f8e5m2_token");
  // The unquantised config and another granularity are other configs.
  std::unique_ptr<Decoder> d;
  Status s = Decoder::create(quantised, config, &d);
  EXPECT_EQ(s.code(), StatusCode::NotFound);
  EXPECT_NE(s.message().find("no kernel for config "
                             "h32_kv8_d128_p16_bf16_nhd_w4 (library holds: "
                             "h32_kv8_d128_p16_bf16_nhd_w4_f8e4m3fn_tensor"),
            std::string::npos)
      << s.message();
  s = Decoder::create(quantised,
                      quantisedConfig(DType::F8E4M3FN, KVScaleKind::Head), &d);
  EXPECT_EQ(s.code(), StatusCode::NotFound) << s.message();
  s = Decoder::create(
      library, quantisedConfig(DType::F8E4M3FN, KVScaleKind::Tensor), &d);
  EXPECT_EQ(s.code(), StatusCode::NotFound) << s.message();
}

// The decode kernel's parameters are checked at load against the Spec's:
// fp8 caches, then f32 scales last.
TEST_F(QuantisedRuntimeTest, ManifestsAreCheckedAgainstTheSpec) {
  auto loadWith = [](const std::string &from, const std::string &to) {
    return refusalOfEdit("q.json", from, to);
  };
  EXPECT_EQ(loadWith("\"kv_scale\": \"tensor\"", "\"kv_scale\": \"row\""),
            "config's 'kv_scale' must be tensor, head or token");
  EXPECT_EQ(loadWith("\"kv_dtype\": \"f8e4m3fn\"", "\"kv_dtype\": \"bf16\""),
            "config's 'kv_dtype' must be f8e4m3fn or f8e5m2");
  EXPECT_EQ(loadWith("\"name\": \"k_scale\"", "\"name\": \"scale_k\""),
            "decode kernel parameter 11 is 'scale_k', this runtime expects "
            "'k_scale'");
}

TEST_F(QuantisedRuntimeTest, ConfigRulesComeBeforeKernelLookup) {
  auto message = [&](KernelConfig c) {
    std::unique_ptr<Decoder> d;
    Status s = Decoder::create(quantised, c, &d);
    EXPECT_EQ(s.code(), StatusCode::InvalidArgument) << s.message();
    return s.message();
  };
  KernelConfig f32 = quantisedConfig(DType::F8E4M3FN, KVScaleKind::Head);
  f32.dtype = DType::F32;
  EXPECT_EQ(message(f32), "fp8 KV caches need an f16 or bf16 'q', got f32");
  KernelConfig row = quantisedConfig(DType::F8E5M2, KVScaleKind::Token);
  row.headDim = 8;
  EXPECT_EQ(message(row), "a row of head_dim (8) 'f8e5m2' elements is 8 "
                          "bytes; it must be a multiple of 16 bytes");
  KernelConfig q8 = quantisedConfig(DType::F8E5M2, KVScaleKind::Token);
  q8.dtype = DType::F8E4M3FN;
  q8.kvQuant.reset();
  EXPECT_EQ(message(q8),
            "the element type must be f16, bf16 or f32, got f8e4m3fn");
}

TEST_F(QuantisedRuntimeTest, ValidParamsPassValidation) {
  if (hasDriver())
    GTEST_SKIP() << "fake pointers must not reach a real GPU";
  for (const KernelConfig &c : quantisedConfigs()) {
    SCOPED_TRACE(c.name());
    auto d = decoderFor(c);
    ASSERT_TRUE(d);
    Status s = d->decode(quantisedParams(c), nullptr);
    EXPECT_EQ(s.code(), StatusCode::NoDriver) << s.message();
  }
}

// Caches of the fp8 dtype where the config is quantised, and q's elsewhere;
// q and out keep q's dtype.
TEST_F(QuantisedRuntimeTest, CachesHaveTheConfigsDType) {
  KernelConfig c = quantisedConfig(DType::F8E4M3FN, KVScaleKind::Tensor);
  auto d = decoderFor(c);
  ASSERT_TRUE(d);
  DecodeParams p = quantisedParams(c);
  p.kCache.dtype = DType::BF16;
  EXPECT_EQ(refusal(*d, p), "k_cache has dtype bf16, expected f8e4m3fn");
  p = quantisedParams(c);
  p.vCache.dtype = DType::F8E5M2;
  EXPECT_EQ(refusal(*d, p), "v_cache has dtype f8e5m2, expected f8e4m3fn");
  p = quantisedParams(c);
  p.q.dtype = DType::F8E4M3FN;
  EXPECT_EQ(refusal(*d, p), "q has dtype f8e4m3fn, expected bf16");
  p = quantisedParams(c);
  p.out.dtype = DType::F8E4M3FN;
  EXPECT_EQ(refusal(*d, p), "out has dtype f8e4m3fn, expected bf16");
  // fp8 rows are 16-byte vectors too.
  p = quantisedParams(c);
  p.kCache.data = static_cast<char *>(p.kCache.data) + 8;
  EXPECT_EQ(refusal(*d, p), "k_cache data pointer is not 16-byte aligned");
  p = quantisedParams(c);
  p.vCache.strides[0] = 16 * 8 * 128 + 8;
  EXPECT_EQ(refusal(*d, p), "v_cache stride of dim 0 (16392 elements) is not "
                            "a multiple of 16 bytes");
  // An unquantised config's caches are q's.
  p = validParams();
  p.kCache.dtype = DType::F8E4M3FN;
  EXPECT_EQ(rejection(p), "k_cache has dtype f8e4m3fn, expected bf16");
}

// A scale for caches of q's dtype would be ignored: it is refused, naming
// the config, as a variant's value is.
TEST_F(QuantisedRuntimeTest, ScalesOnlyForQuantisedConfigs) {
  char *base = reinterpret_cast<char *>(uintptr_t(1) << 41);
  DecodeParams p = validParams();
  p.kScale = contiguousOf(base, DType::F32, {});
  EXPECT_EQ(rejection(p), "k_scale is given, but config "
                          "h32_kv8_d128_p16_bf16_nhd_w4 has no quantised KV "
                          "cache (its caches are bf16)");
  p = validParams();
  p.vScale = contiguousOf(base, DType::F32, {8});
  EXPECT_EQ(rejection(p), "v_scale is given, but config "
                          "h32_kv8_d128_p16_bf16_nhd_w4 has no quantised KV "
                          "cache (its caches are bf16)");
  // And a quantised config needs both.
  KernelConfig c = quantisedConfig(DType::F8E5M2, KVScaleKind::Head);
  auto d = decoderFor(c);
  ASSERT_TRUE(d);
  p = quantisedParams(c);
  p.kScale = Tensor();
  EXPECT_EQ(refusal(*d, p), "k_scale is a null pointer");
  p = quantisedParams(c);
  p.vScale.data = nullptr;
  EXPECT_EQ(refusal(*d, p), "v_scale is a null pointer");
}

TEST_F(QuantisedRuntimeTest, ScalesHaveTheGranularitysShape) {
  KernelConfig tensor = quantisedConfig(DType::F8E4M3FN, KVScaleKind::Tensor);
  KernelConfig head = quantisedConfig(DType::F8E5M2, KVScaleKind::Head);
  KernelConfig token = quantisedConfig(DType::F8E4M3FN, KVScaleKind::Token);
  KernelConfig tokenHnd =
      quantisedConfig(DType::F8E5M2, KVScaleKind::Token, Layout::HND);
  auto tensorDecoder = decoderFor(tensor), headDecoder = decoderFor(head),
       tokenDecoder = decoderFor(token), hndDecoder = decoderFor(tokenHnd);
  ASSERT_TRUE(tensorDecoder && headDecoder && tokenDecoder && hndDecoder);

  // Per tensor: one f32, rank 0.
  DecodeParams p = quantisedParams(tensor);
  p.kScale = contiguousOf(p.kScale.data, DType::F32, {1});
  EXPECT_EQ(refusal(*tensorDecoder, p), "k_scale must have rank 0 ([]), got 1");
  p = quantisedParams(tensor);
  p.vScale.dtype = DType::BF16;
  EXPECT_EQ(refusal(*tensorDecoder, p), "v_scale has dtype bf16, expected f32");

  // Per head: [num_kv_heads].
  p = quantisedParams(head);
  p.kScale.sizes[0] = 32;
  EXPECT_EQ(refusal(*headDecoder, p),
            "k_scale has shape [32], expected [num_kv_heads]");
  p = quantisedParams(head);
  p.vScale = contiguousOf(p.vScale.data, DType::F32, {});
  EXPECT_EQ(refusal(*headDecoder, p),
            "v_scale must have rank 1 ([num_kv_heads]), got 0");

  // Per token: the cache's first three dims, its pages k_cache's.
  p = quantisedParams(token);
  p.kScale.sizes[0] = 99;
  EXPECT_EQ(refusal(*tokenDecoder, p),
            "k_scale has shape [99, 16, 8], expected [num_pages of k_cache, "
            "page_size, num_kv_heads]");
  p = quantisedParams(token);
  p.vScale.sizes[2] = 4;
  EXPECT_EQ(refusal(*tokenDecoder, p),
            "v_scale has shape [100, 16, 4], expected [num_pages of k_cache, "
            "page_size, num_kv_heads]");
  p = quantisedParams(token);
  p.kScale = contiguousOf(p.kScale.data, DType::F32, {8});
  EXPECT_EQ(refusal(*tokenDecoder, p),
            "k_scale must have rank 3 ([num_pages of k_cache, page_size, "
            "num_kv_heads]), got 1");
  p = quantisedParams(tokenHnd);
  p.kScale = contiguousOf(p.kScale.data, DType::F32, {100, 16, 8});
  EXPECT_EQ(refusal(*hndDecoder, p),
            "k_scale has shape [100, 16, 8], expected [num_pages of k_cache, "
            "num_kv_heads, page_size]");
  // A smaller pool of pages: the scales follow k_cache.
  if (!hasDriver()) {
    p = quantisedParams(tokenHnd);
    for (Tensor *t : {&p.kCache, &p.vCache, &p.kScale, &p.vScale})
      t->sizes[0] = 7;
    EXPECT_EQ(hndDecoder->decode(p, nullptr).code(), StatusCode::NoDriver);
  }
}

// Scales are loaded one f32 at a time from anywhere in memory: 4-byte
// alignment and any strides whose elements an address reaches.
TEST_F(QuantisedRuntimeTest, ScalesAreAlignedAndReachable) {
  KernelConfig token = quantisedConfig(DType::F8E4M3FN, KVScaleKind::Token);
  KernelConfig tensor = quantisedConfig(DType::F8E4M3FN, KVScaleKind::Tensor);
  auto tokenDecoder = decoderFor(token), tensorDecoder = decoderFor(tensor);
  ASSERT_TRUE(tokenDecoder && tensorDecoder);
  DecodeParams p = quantisedParams(tensor);
  p.kScale.data = static_cast<char *>(p.kScale.data) + 2;
  EXPECT_EQ(refusal(*tensorDecoder, p),
            "k_scale data pointer is not 4-byte aligned");
  p = quantisedParams(token);
  p.vScale.data = static_cast<char *>(p.vScale.data) + 1;
  EXPECT_EQ(refusal(*tokenDecoder, p),
            "v_scale data pointer is not 4-byte aligned");
  p = quantisedParams(token);
  p.kScale.strides[0] = int64_t(1) << 62;
  EXPECT_EQ(refusal(*tokenDecoder, p),
            "k_scale of shape [100, 16, 8] and strides [4611686018427387904, "
            "8, 1] spans more memory than an address can reach");
  if (!hasDriver()) {
    // K's and V's scales interleaved in one [pages, page, kv_heads, 2]
    // pool: an innermost stride of 2, for no unit stride is needed.
    p = quantisedParams(token);
    p.kScale.strides[0] = 16 * 8 * 2;
    p.kScale.strides[1] = 8 * 2;
    p.kScale.strides[2] = 2;
    p.vScale = p.kScale;
    p.vScale.data = static_cast<char *>(p.kScale.data) + 4;
    Status s = tokenDecoder->decode(p, nullptr);
    EXPECT_EQ(s.code(), StatusCode::NoDriver) << s.message();
  }
}

// The C API's config takes the quantisation (kv_scale, then kv_dtype) and
// its decode parameters the scales; each bad value is named.
TEST_F(QuantisedRuntimeTest, CApiTakesQuantisedCaches) {
  paged_attn_library lib = nullptr;
  ASSERT_EQ(paged_attn_library_load((directory + "/q.json").c_str(), &lib),
            PAGED_ATTN_OK);
  paged_attn_config c = {32, 8, 128, 16, PAGED_ATTN_BF16, PAGED_ATTN_HND, 0};
  c.kv_scale = PAGED_ATTN_KV_SCALE_TOKEN;
  c.kv_dtype = PAGED_ATTN_F8E5M2;
  paged_attn_decoder dec = nullptr;
  ASSERT_EQ(paged_attn_decoder_create(lib, &c, &dec), PAGED_ATTN_OK)
      << paged_attn_last_error();
  paged_attn_decoder other = nullptr;
  auto createMessage = [&] {
    EXPECT_EQ(paged_attn_decoder_create(lib, &c, &other),
              PAGED_ATTN_INVALID_ARGUMENT);
    EXPECT_EQ(other, nullptr);
    return std::string(paged_attn_last_error());
  };
  c.kv_scale = 4;
  EXPECT_EQ(createMessage(), "unknown kv_scale 4 (0: unquantised, 1: per "
                             "tensor, 2: per head, 3: per token)");
  c.kv_scale = PAGED_ATTN_KV_SCALE_HEAD;
  c.kv_dtype = PAGED_ATTN_BF16;
  EXPECT_EQ(createMessage(), "kv_dtype must be PAGED_ATTN_F8E4M3FN or "
                             "PAGED_ATTN_F8E5M2 when kv_scale is set, got "
                             "bf16");
  int bad = 9;
  std::memcpy(&c.kv_dtype, &bad, sizeof bad);
  EXPECT_EQ(createMessage(), "kv_dtype must be PAGED_ATTN_F8E4M3FN or "
                             "PAGED_ATTN_F8E5M2 when kv_scale is set, got 9");
  // Unquantised, kv_dtype is not read.
  c.kv_scale = PAGED_ATTN_KV_UNQUANTIZED;
  EXPECT_EQ(paged_attn_decoder_create(lib, &c, &other), PAGED_ATTN_NOT_FOUND);
  EXPECT_NE(std::string(paged_attn_last_error())
                .find("no kernel for config h32_kv8_d128_p16_bf16_hnd_w4 "),
            std::string::npos)
      << paged_attn_last_error();
  // fp8 is a cache's dtype, not q's.
  c.kv_scale = PAGED_ATTN_KV_SCALE_TENSOR;
  c.kv_dtype = PAGED_ATTN_F8E4M3FN;
  c.dtype = PAGED_ATTN_F8E4M3FN;
  EXPECT_EQ(createMessage(),
            "the element type must be f16, bf16 or f32, got f8e4m3fn");

  // The decode's scales travel with the other tensors.
  KernelConfig cpp =
      quantisedConfig(DType::F8E5M2, KVScaleKind::Token, Layout::HND);
  DecodeParams cppParams = quantisedParams(cpp);
  paged_attn_decode_params p = capi::toC(cppParams);
  p.num_splits = 1;
  EXPECT_EQ(p.k_cache.dtype, PAGED_ATTN_F8E5M2);
  EXPECT_EQ(p.k_scale.rank, 3);
  EXPECT_EQ(p.k_scale.sizes[1], 8);
  EXPECT_EQ(p.k_scale.sizes[2], 16);
  if (!hasDriver()) {
    EXPECT_EQ(paged_attn_decode(dec, &p, nullptr), PAGED_ATTN_NO_DRIVER)
        << paged_attn_last_error();
  }
  auto decodeMessage = [&] {
    EXPECT_EQ(paged_attn_decode(dec, &p, nullptr), PAGED_ATTN_INVALID_ARGUMENT);
    return std::string(paged_attn_last_error());
  };
  p.v_scale = paged_attn_tensor{};
  EXPECT_EQ(decodeMessage(), "v_scale is a null pointer");
  p = capi::toC(cppParams);
  std::memcpy(&p.k_scale.dtype, &bad, sizeof bad);
  EXPECT_EQ(decodeMessage(), "k_scale has an invalid dtype (9)");
  p = capi::toC(cppParams);
  p.k_scale.rank = 5;
  EXPECT_EQ(decodeMessage(),
            "k_scale is not a valid tensor: its rank (5) is outside [0, 4]");
  p = capi::toC(cppParams);
  p.k_cache.dtype = PAGED_ATTN_BF16;
  EXPECT_EQ(decodeMessage(), "k_cache has dtype bf16, expected f8e5m2");
  paged_attn_decoder_destroy(dec);

  // An unquantised decoder refuses scales.
  c = {32, 8, 128, 16, PAGED_ATTN_BF16, PAGED_ATTN_NHD, 0};
  paged_attn_library plain = nullptr;
  ASSERT_EQ(paged_attn_library_load((directory + "/k.json").c_str(), &plain),
            PAGED_ATTN_OK);
  ASSERT_EQ(paged_attn_decoder_create(plain, &c, &dec), PAGED_ATTN_OK)
      << paged_attn_last_error();
  p = capi::toC(validParams());
  p.num_splits = 1;
  p.k_scale = capi::toC(cppParams.kScale);
  EXPECT_EQ(decodeMessage(), "k_scale is given, but config "
                             "h32_kv8_d128_p16_bf16_nhd_w4 has no quantised "
                             "KV cache (its caches are bf16)");
  paged_attn_decoder_destroy(dec);
  paged_attn_library_destroy(plain);
  paged_attn_library_destroy(lib);
}

// A merge's partials and result are q's dtype, never fp8.
TEST_F(RuntimeTest, MergeRefusesFp8) {
  std::shared_ptr<KernelLibrary> lib;
  ASSERT_TRUE(KernelLibrary::load(directory + "/m.json", &lib));
  std::unique_ptr<Merger> merger;
  Status s = Merger::create(
      lib, MergeConfig::forOp(32, 128, DType::F8E4M3FN, false, true), &merger);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
  EXPECT_EQ(s.message(), "the element types must be f16, bf16 or f32");
  ASSERT_TRUE(Merger::create(
      lib, MergeConfig::forOp(32, 128, DType::BF16, false, true), &merger));
  MergeParams p = mergeParams();
  p.partialOut.dtype = DType::F8E4M3FN;
  s = merger->merge(p, nullptr);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
  EXPECT_EQ(s.message(), "partial_out must be bf16 ([N, batch, 32, 128])");
  paged_attn_library cLib = nullptr;
  ASSERT_EQ(paged_attn_library_load((directory + "/m.json").c_str(), &cLib),
            PAGED_ATTN_OK);
  paged_attn_merge_config c = {32, 128, PAGED_ATTN_F8E5M2,
                               PAGED_ATTN_VARIANT_LSE};
  paged_attn_merger cMerger = nullptr;
  EXPECT_EQ(paged_attn_merger_create(cLib, &c, &cMerger),
            PAGED_ATTN_INVALID_ARGUMENT);
  EXPECT_STREQ(paged_attn_last_error(),
               "the element types must be f16, bf16 or f32");
  paged_attn_library_destroy(cLib);
}

TEST(ReferenceTest, UniformKeysAverageValues) {
  // Equal logits: the output is the mean of the V rows.
  ReferenceProblem p;
  p.batch = 1;
  p.numHeads = 2;
  p.numKVHeads = 1;
  p.headDim = 2;
  p.pageSize = 2;
  p.numPages = 2;
  p.maxPages = 2;
  p.scale = 1;
  p.q = {1, 1, 0, 0};
  p.kCache.assign(8, 0.0);
  p.vCache = {1, 2, 3, 4, 5, 6, 100, 100};
  p.blockTable = {1, 0}; // logical 0 -> physical 1, logical 1 -> physical 0
  p.seqLens = {3};
  std::vector<double> out = referenceDecode(p);
  // Tokens: page 1 slots 0,1 = (5,6), (100,100); page 0 slot 0 = (1,2).
  EXPECT_DOUBLE_EQ(out[0], (5 + 100 + 1) / 3.0);
  EXPECT_DOUBLE_EQ(out[1], (6 + 100 + 2) / 3.0);
  EXPECT_DOUBLE_EQ(out[2], out[0]);
}

TEST(ReferenceTest, EmptySequenceGivesZeros) {
  ReferenceProblem p;
  p.batch = 1;
  p.numHeads = 1;
  p.numKVHeads = 1;
  p.headDim = 2;
  p.pageSize = 1;
  p.numPages = 1;
  p.maxPages = 1;
  p.scale = 1;
  p.q = {1, 1};
  p.kCache = {1, 1};
  p.vCache = {3, 3};
  p.blockTable = {0};
  p.seqLens = {0};
  EXPECT_EQ(referenceDecode(p), std::vector<double>({0, 0}));
}

TEST(Float16Test, RoundTripsAndRounds) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1000, 1000);
  for (int i = 0; i < 10000; ++i) {
    float f = u(rng);
    float h = f16ToFloat(floatToF16(f));
    EXPECT_LE(std::fabs(h - f), std::fabs(f) * (1.0f / 2048)) << f;
    float b = bf16ToFloat(floatToBf16(f));
    EXPECT_LE(std::fabs(b - f), std::fabs(f) * (1.0f / 256)) << f;
  }
  EXPECT_EQ(floatToF16(1.0f), 0x3c00);
  EXPECT_EQ(floatToF16(65520.0f), 0x7c00);              // overflow to inf
  EXPECT_EQ(f16ToFloat(0x0001), std::ldexp(1.0f, -24)); // smallest subnormal
  EXPECT_EQ(floatToBf16(1.0f), 0x3f80);
  EXPECT_TRUE(std::isnan(bf16ToFloat(floatToBf16(NAN))));
}

/// The formats' landmarks, as OCP's 8-bit floating point specification
/// lists them.
TEST(Float8Test, DecodesTheFormatsLandmarks) {
  const DType e4m3 = DType::F8E4M3FN, e5m2 = DType::F8E5M2;
  EXPECT_EQ(fp8ToDouble(0x7e, e4m3), 448.0);
  EXPECT_EQ(fp8ToDouble(0xfe, e4m3), -448.0);
  EXPECT_EQ(fp8ToDouble(0x08, e4m3), std::ldexp(1.0, -6)); // smallest normal
  EXPECT_EQ(fp8ToDouble(0x01, e4m3), std::ldexp(1.0, -9)); // subnormal
  EXPECT_EQ(fp8ToDouble(0x38, e4m3), 1.0);
  EXPECT_TRUE(std::isnan(fp8ToDouble(0x7f, e4m3)));
  EXPECT_TRUE(std::isnan(fp8ToDouble(0xff, e4m3)));
  EXPECT_EQ(fp8ToDouble(0x78, e4m3), 256.0); // all-ones exponent: normal
  EXPECT_EQ(fp8ToDouble(0x7b, e5m2), 57344.0);
  EXPECT_EQ(fp8ToDouble(0x04, e5m2), std::ldexp(1.0, -14));
  EXPECT_EQ(fp8ToDouble(0x01, e5m2), std::ldexp(1.0, -16));
  EXPECT_EQ(fp8ToDouble(0x3c, e5m2), 1.0);
  EXPECT_EQ(fp8ToDouble(0x7c, e5m2), std::numeric_limits<double>::infinity());
  EXPECT_EQ(fp8ToDouble(0xfc, e5m2), -std::numeric_limits<double>::infinity());
  for (int nan : {0x7d, 0x7e, 0x7f, 0xfd})
    EXPECT_TRUE(std::isnan(fp8ToDouble(uint8_t(nan), e5m2))) << nan;
  EXPECT_EQ(Fp8Format::of(e4m3).maxFinite(), 448.0);
  EXPECT_EQ(Fp8Format::of(e5m2).maxFinite(), 57344.0);
}

/// Encoding against a search over every finite code: the nearest value,
/// ties to the even code (an even mantissa), on random values, every code's
/// value, and every midpoint between neighbours; past the largest finite
/// value saturated or NaN / infinity as asked.
TEST(Float8Test, EncodesToTheNearestCodeTiesToEven) {
  for (DType dtype : {DType::F8E4M3FN, DType::F8E5M2}) {
    std::vector<std::pair<double, uint8_t>> finite;
    for (int code = 0; code < 256; ++code) {
      double v = fp8ToDouble(uint8_t(code), dtype);
      if (std::isfinite(v) && !(v == 0.0 && code == 0x80))
        finite.push_back({v, uint8_t(code)});
    }
    double maxFinite = Fp8Format::of(dtype).maxFinite();
    auto nearest = [&](double x) {
      uint8_t best = 0;
      double bestError = std::numeric_limits<double>::infinity();
      for (auto [v, code] : finite) {
        double error = std::fabs(v - x);
        if (error < bestError || (error == bestError && !(code & 1))) {
          best = code;
          bestError = error;
        }
      }
      // A negative value that rounds to zero keeps its sign.
      return (best == 0 && std::signbit(x)) ? uint8_t(0x80) : best;
    };
    std::vector<double> inputs;
    std::mt19937_64 rng(5);
    std::uniform_real_distribution<double> u(-maxFinite, maxFinite);
    for (int i = 0; i < 20000; ++i)
      inputs.push_back(u(rng) * std::ldexp(1.0, -int(rng() % 24)));
    std::vector<double> values;
    for (auto [v, code] : finite)
      values.push_back(v);
    std::sort(values.begin(), values.end());
    for (size_t i = 0; i < values.size(); ++i) {
      inputs.push_back(values[i]);
      if (i + 1 < values.size())
        inputs.push_back((values[i] + values[i + 1]) / 2);
    }
    for (double x : inputs) {
      if (std::fabs(x) > maxFinite)
        continue;
      uint8_t code = doubleToFp8(x, dtype, /*saturate=*/true);
      ASSERT_EQ(code, nearest(x)) << dtypeName(dtype) << " " << x;
      ASSERT_EQ(doubleToFp8(x, dtype, /*saturate=*/false), code);
    }
    EXPECT_EQ(fp8ToDouble(doubleToFp8(1e9, dtype, true), dtype), maxFinite);
    EXPECT_EQ(fp8ToDouble(doubleToFp8(-1e9, dtype, true), dtype), -maxFinite);
    double big = fp8ToDouble(doubleToFp8(1e9, dtype, false), dtype);
    if (dtype == DType::F8E5M2)
      EXPECT_EQ(big, std::numeric_limits<double>::infinity());
    else
      EXPECT_TRUE(std::isnan(big));
    EXPECT_TRUE(std::isnan(fp8ToDouble(doubleToFp8(NAN, dtype, true), dtype)));
  }
}

} // namespace
