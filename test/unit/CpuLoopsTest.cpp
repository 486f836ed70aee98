//===- CpuLoopsTest.cpp - the op's meaning, checked on the CPU
//-------------===//
//
// Lowers memref-form decode ops through convert-paged-attn-to-loops to LLVM,
// runs them with the MLIR ExecutionEngine on random inputs (shuffled block
// tables; lengths 0, 1, page-1, page, page+1 and random; GQA ratios 1, 4, 8;
// both layouts; f32, f16 and bf16) and compares with the float64 reference.
//
// Limits (relative L2 error): the reference sees the same rounded inputs,
// so the error is f32 accumulation plus the output's rounding: f32 1e-5,
// f16 2e-3 (2^-11 rounding), bf16 1e-2 (2^-8 rounding).
//
//===----------------------------------------------------------------------===//

#include "PagedAttn/Dialect/PagedAttn/IR/PagedAttn.h"
#include "PagedAttn/InitAll.h"
#include "PagedAttn/Pipelines/Pipelines.h"
#include "PagedAttn/Target/KernelCompiler.h"
#include "PagedAttn/Testing/Float16.h"
#include "PagedAttn/Testing/Float8.h"
#include "PagedAttn/Testing/Reference.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Parser/Parser.h"
#include "mlir/ExecutionEngine/CRunnerUtils.h"
#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/TargetSelect.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <tuple>

using namespace mlir;
using namespace ::paged_attn;

namespace {

struct LoopsCase {
  DType dtype;
  int64_t group;
  bool hnd;
  int64_t pageSize;
  int64_t headDim;
};

std::string describe(const LoopsCase &c) {
  return std::string(dtypeName(c.dtype)) + "_g" + std::to_string(c.group) +
         (c.hnd ? "_hnd" : "_nhd") + "_p" + std::to_string(c.pageSize) + "_d" +
         std::to_string(c.headDim);
}

std::string caseName(const ::testing::TestParamInfo<LoopsCase> &info) {
  return describe(info.param);
}

// Short names in test listings instead of the struct's bytes.
[[maybe_unused]] void PrintTo(const LoopsCase &c, std::ostream *os) {
  *os << describe(c);
}

double limitFor(DType dtype) {
  return dtype == DType::F32 ? 1e-5 : dtype == DType::F16 ? 2e-3 : 1e-2;
}

template <int N>
StridedMemRefType<char, N> descriptor(void *data,
                                      std::array<int64_t, N> sizes) {
  StridedMemRefType<char, N> d;
  d.basePtr = d.data = static_cast<char *>(data);
  d.offset = 0;
  int64_t stride = 1;
  for (int i = N - 1; i >= 0; --i) {
    d.sizes[i] = sizes[i];
    d.strides[i] = stride;
    stride *= sizes[i];
  }
  return d;
}

/// What the fixtures share: the native target for the ExecutionEngine, a
/// context with every dialect the pipeline needs, and a module lowered by
/// paged-attn-to-cpu and JIT-compiled.
template <typename Param>
class JitTest : public ::testing::TestWithParam<Param> {
protected:
  static void SetUpTestSuite() {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
  }

  JitTest() : ctx(allDialects()) { ctx.loadAllAvailableDialects(); }

  /// `module` lowered to LLVM and JIT-compiled; null, with the failure
  /// added to the test, where either step fails.
  std::unique_ptr<ExecutionEngine> compile(ModuleOp module) {
    PassManager pm(&ctx);
    mlir::paged_attn::buildPagedAttnToCPUPipeline(pm);
    if (failed(pm.run(module))) {
      ADD_FAILURE() << "paged-attn-to-cpu failed";
      return nullptr;
    }
    auto engine = ExecutionEngine::create(module, ExecutionEngineOptions());
    if (!engine) {
      ADD_FAILURE() << llvm::toString(engine.takeError());
      return nullptr;
    }
    return std::move(*engine);
  }

  MLIRContext ctx;

private:
  static DialectRegistry allDialects() {
    DialectRegistry registry;
    mlir::paged_attn::registerAllDialects(registry);
    return registry;
  }
};

class CpuLoopsTest : public JitTest<LoopsCase> {};

TEST_P(CpuLoopsTest, MatchesFloat64Reference) {
  const LoopsCase &c = GetParam();

  const int64_t numKVHeads = 2, numHeads = numKVHeads * c.group;
  ::paged_attn::DecodeSpec spec;
  spec.numHeads = numHeads;
  spec.numKVHeads = numKVHeads;
  spec.headDim = c.headDim;
  spec.pageSize = c.pageSize;
  spec.dtype = c.dtype;
  spec.layout = c.hnd ? Layout::HND : Layout::NHD;
  auto module = mlir::paged_attn::buildDecodeModule(&ctx, {spec});
  ASSERT_TRUE(succeeded(module));
  auto func = *(**module).getOps<func::FuncOp>().begin();
  func->setAttr("llvm.emit_c_interface", UnitAttr::get(&ctx));
  std::string name = func.getName().str();

  std::unique_ptr<ExecutionEngine> engine = compile(**module);
  ASSERT_TRUE(engine);
  auto fn = engine->lookup("_mlir_ciface_" + name);
  ASSERT_TRUE(bool(fn)) << llvm::toString(fn.takeError());
  using CFn =
      void (*)(StridedMemRefType<char, 3> *, StridedMemRefType<char, 4> *,
               StridedMemRefType<char, 4> *, StridedMemRefType<char, 2> *,
               StridedMemRefType<char, 1> *, StridedMemRefType<char, 3> *);
  auto decode = reinterpret_cast<CFn>(*fn);

  // Two random problems per config, with the page edges in each.
  for (uint64_t seed : {1u, 2u}) {
    std::mt19937 rng(seed * 977 + c.group * 31 + c.pageSize);
    int32_t page = int32_t(c.pageSize);
    std::vector<int32_t> lens = {
        0,
        1,
        page + 1,
        page,
        page > 1 ? page - 1 : 2,
        int32_t(std::uniform_int_distribution<>(2, 300)(rng))};
    RandomProblemOptions o;
    o.numHeads = numHeads;
    o.numKVHeads = numKVHeads;
    o.headDim = c.headDim;
    o.pageSize = c.pageSize;
    o.hnd = c.hnd;
    o.seqLens = lens;
    o.seed = seed;
    ReferenceProblem p = makeRandomProblem(o);
    std::vector<uint8_t> q = roundToDType(c.dtype, p.q);
    std::vector<uint8_t> k = roundToDType(c.dtype, p.kCache);
    std::vector<uint8_t> v = roundToDType(c.dtype, p.vCache);
    std::vector<uint8_t> out(q.size(), 0xff); // NaN: every row must be written
    std::array<int64_t, 4> cacheShape =
        c.hnd ? std::array<int64_t, 4>{p.numPages, numKVHeads, c.pageSize,
                                       c.headDim}
              : std::array<int64_t, 4>{p.numPages, c.pageSize, numKVHeads,
                                       c.headDim};
    auto qd = descriptor<3>(q.data(), {p.batch, numHeads, c.headDim});
    auto kd = descriptor<4>(k.data(), cacheShape);
    auto vd = descriptor<4>(v.data(), cacheShape);
    auto btd = descriptor<2>(p.blockTable.data(), {p.batch, p.maxPages});
    auto sld = descriptor<1>(p.seqLens.data(), {p.batch});
    auto od = descriptor<3>(out.data(), {p.batch, numHeads, c.headDim});
    decode(&qd, &kd, &vd, &btd, &sld, &od);

    std::vector<double> got = widenFromDType(c.dtype, out.data(), p.q.size());
    std::vector<double> expected = referenceDecode(p);
    double err = relativeError(got, expected);
    EXPECT_LE(err, limitFor(c.dtype)) << "seed " << seed;
    // The empty sequence (batch row 0) yields exact zeros.
    for (int64_t i = 0; i < numHeads * c.headDim; ++i)
      ASSERT_EQ(got[i], 0.0) << "element " << i << " of the empty sequence";
  }
}

std::vector<LoopsCase> allCases() {
  std::vector<LoopsCase> cases;
  for (DType dtype : {DType::F32, DType::F16, DType::BF16})
    for (int64_t group : {1, 4, 8})
      for (bool hnd : {false, true})
        cases.push_back({dtype, group, hnd, 16, 64});
  // Page size 1 and a larger head dim.
  cases.push_back({DType::BF16, 4, false, 1, 128});
  cases.push_back({DType::F32, 8, true, 128, 128});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Loops, CpuLoopsTest, ::testing::ValuesIn(allCases()),
                         caseName);

//===----------------------------------------------------------------------===//
// Variants
//===----------------------------------------------------------------------===//

struct VariantCase {
  DType dtype;
  int64_t group;
  bool hnd;
  DecodeVariants variants;
  int64_t window; // with the window variant
  /// New query tokens per sequence for a multi-token decode (q of rank 4);
  /// 0 for the single-token form (rank 3).
  int64_t queryLen = 0;
  /// The tree mask's element type: i1 (one byte each, 0 or 1) or i8.
  bool maskI1 = false;
};

std::string describeVariant(const VariantCase &c) {
  std::string name = std::string(dtypeName(c.dtype)) + "_g" +
                     std::to_string(c.group) + (c.hnd ? "_hnd" : "_nhd") +
                     c.variants.nameSuffix();
  if (c.variants.window)
    name += std::to_string(c.window);
  if (c.queryLen)
    name += "_l" + std::to_string(c.queryLen);
  if (c.maskI1)
    name += "_i1";
  return name;
}

[[maybe_unused]] void PrintTo(const VariantCase &c, std::ostream *os) {
  *os << describeVariant(c);
}

class CpuLoopsVariantsTest : public JitTest<VariantCase> {};

/// The memref-form decode of `c` as a function, its window and cap as
/// the op's attributes: q, k, v, block_table, seq_lens, out, then the
/// slopes, the sinks, the tree mask and the log-sum-exp where `c` has them.
/// A multi-token case's q and out are [batch, L, heads, head_dim].
std::string variantModule(const VariantCase &c, int64_t numHeads,
                          int64_t numKVHeads, int64_t page, int64_t headDim,
                          double softCap) {
  std::string t = dtypeName(c.dtype);
  std::string d = std::to_string(headDim), h = std::to_string(numHeads),
              kv = std::to_string(numKVHeads), p = std::to_string(page);
  std::string l = c.queryLen ? std::to_string(c.queryLen) + "x" : "";
  std::string q = "memref<?x" + l + h + "x" + d + "x" + t + ">";
  std::string cache = c.hnd ? "memref<?x" + kv + "x" + p + "x" + d + "x" + t + ">"
                            : "memref<?x" + p + "x" + kv + "x" + d + "x" + t + ">";
  std::string perHead = "memref<" + h + "xf32>";
  std::string lseType = "memref<?x" + l + h + "xf32>";
  std::string maskType =
      "memref<?x" + l + l + (c.maskI1 ? "i1>" : "i8>");
  std::string args = "%q: " + q + ", %k: " + cache + ", %v: " + cache +
                     ", %bt: memref<?x?xi32>, %sl: memref<?xi32>, %o: " + q;
  std::string operands, outs, attrs = "layout = #paged_attn.kv_layout<" +
                                      std::string(c.hnd ? "hnd" : "nhd") + ">";
  if (c.variants.alibi) {
    args += ", %a: " + perHead;
    operands += " alibi_slopes(%a : " + perHead + ")";
  }
  if (c.variants.sinks) {
    args += ", %s: " + perHead;
    operands += " sinks(%s : " + perHead + ")";
  }
  if (c.variants.treeMask) {
    args += ", %m: " + maskType;
    operands += " tree_mask(%m : " + maskType + ")";
  }
  if (c.variants.lse) {
    args += ", %l: " + lseType;
    outs = " lse(%l : " + lseType + ")";
  }
  if (c.variants.window)
    attrs += ", window = " + std::to_string(c.window) + " : i64";
  if (c.variants.softCap) {
    char cap[32];
    std::snprintf(cap, sizeof(cap), "%.9g", softCap);
    attrs += std::string(", soft_cap = ") + cap + " : f32";
  }
  return "func.func @decode(" + args +
         ") attributes {llvm.emit_c_interface} {\n"
         "  paged_attn.decode %q, %k, %v, %bt, %sl" +
         operands + " outs(%o : " + q + ")" + outs + " {" + attrs + "} : " +
         q + ", " + cache + ", " + cache +
         ", memref<?x?xi32>, memref<?xi32>\n  return\n}\n";
}

// Each variant and the combinations models use, run by the loops lowering
// against the float64 reference: windows shorter than most sequences (not
// a multiple of the page, equal to one sequence's length) and longer than
// all; the log-sum-exp to 1e-4 where both are finite, -inf for the empty
// sequence.
TEST_P(CpuLoopsVariantsTest, MatchesFloat64Reference) {
  const VariantCase &c = GetParam();
  const int64_t numKVHeads = 2, numHeads = numKVHeads * c.group, page = 16,
                headDim = 64;
  const double softCap = 0.3;
  OwningOpRef<ModuleOp> module = parseSourceString<ModuleOp>(
      variantModule(c, numHeads, numKVHeads, page, headDim, softCap), &ctx);
  ASSERT_TRUE(module);
  std::unique_ptr<ExecutionEngine> engine = compile(*module);
  ASSERT_TRUE(engine);

  RandomProblemOptions o;
  o.numHeads = numHeads;
  o.numKVHeads = numKVHeads;
  o.headDim = headDim;
  o.pageSize = page;
  o.hnd = c.hnd;
  o.seqLens = {0, 1, 17, 16, 15, 7, 300, int32_t(c.window)};
  o.seed = 5;
  o.variants = c.variants;
  o.window = c.window;
  o.softCap = softCap;
  o.queryLen = std::max<int64_t>(c.queryLen, 1);
  ReferenceProblem p = makeRandomProblem(o);
  const int64_t l = p.queryLen;
  std::vector<uint8_t> q = roundToDType(c.dtype, p.q);
  std::vector<uint8_t> k = roundToDType(c.dtype, p.kCache);
  std::vector<uint8_t> v = roundToDType(c.dtype, p.vCache);
  std::vector<uint8_t> out(q.size(), 0xff);
  std::vector<float> slopes(p.alibiSlopes.begin(), p.alibiSlopes.end());
  std::vector<float> sinks(p.sinks.begin(), p.sinks.end());
  std::vector<float> lse(p.batch * l * numHeads,
                         std::numeric_limits<float>::quiet_NaN());
  std::array<int64_t, 4> cacheShape =
      c.hnd ? std::array<int64_t, 4>{p.numPages, numKVHeads, page, headDim}
            : std::array<int64_t, 4>{p.numPages, page, numKVHeads, headDim};
  // q, out and the log-sum-exp of the rank the case has.
  auto qd = descriptor<3>(q.data(), {p.batch, numHeads, headDim});
  auto od = descriptor<3>(out.data(), {p.batch, numHeads, headDim});
  auto ld = descriptor<2>(lse.data(), {p.batch, numHeads});
  auto q4d = descriptor<4>(q.data(), {p.batch, l, numHeads, headDim});
  auto o4d = descriptor<4>(out.data(), {p.batch, l, numHeads, headDim});
  auto l3d = descriptor<3>(lse.data(), {p.batch, l, numHeads});
  bool rank4 = c.queryLen != 0;
  auto kd = descriptor<4>(k.data(), cacheShape);
  auto vd = descriptor<4>(v.data(), cacheShape);
  auto btd = descriptor<2>(p.blockTable.data(), {p.batch, p.maxPages});
  auto sld = descriptor<1>(p.seqLens.data(), {p.batch});
  auto ad = descriptor<1>(slopes.data(), {numHeads});
  auto sd = descriptor<1>(sinks.data(), {numHeads});
  auto md = descriptor<3>(p.treeMask.data(), {p.batch, l, l});
  // The C interface takes a pointer to each descriptor; invokePacked takes
  // a pointer to each argument.
  SmallVector<void *> descriptors = {rank4 ? (void *)&q4d : (void *)&qd,
                                     &kd,
                                     &vd,
                                     &btd,
                                     &sld,
                                     rank4 ? (void *)&o4d : (void *)&od};
  if (c.variants.alibi)
    descriptors.push_back(&ad);
  if (c.variants.sinks)
    descriptors.push_back(&sd);
  if (c.variants.treeMask)
    descriptors.push_back(&md);
  if (c.variants.lse)
    descriptors.push_back(rank4 ? (void *)&l3d : (void *)&ld);
  SmallVector<void *> args;
  for (void *&d : descriptors)
    args.push_back(&d);
  llvm::Error error = engine->invokePacked("_mlir_ciface_decode", args);
  ASSERT_FALSE(bool(error)) << llvm::toString(std::move(error));

  std::vector<double> expectedLse;
  std::vector<double> expected = referenceDecode(p, &expectedLse);
  std::vector<double> got = widenFromDType(c.dtype, out.data(), p.q.size());
  EXPECT_LE(relativeError(got, expected), limitFor(c.dtype));
  for (int64_t i = 0; i < l * numHeads * headDim; ++i)
    ASSERT_EQ(got[i], 0.0) << "element " << i << " of the empty sequence";
  if (!c.variants.lse)
    return;
  for (size_t i = 0; i < lse.size(); ++i) {
    if (std::isinf(expectedLse[i])) {
      EXPECT_TRUE(std::isinf(lse[i]) && lse[i] < 0) << "lse " << i;
      continue;
    }
    EXPECT_NEAR(lse[i], expectedLse[i], 1e-4) << "lse " << i;
  }
}

std::vector<VariantCase> variantCases() {
  auto variants = [](bool window, bool softCap, bool alibi, bool sinks,
                     bool lse) {
    DecodeVariants v;
    v.window = window;
    v.softCap = softCap;
    v.alibi = alibi;
    v.sinks = sinks;
    v.lse = lse;
    return v;
  };
  const DecodeVariants combos[] = {
      variants(true, false, false, false, false),
      variants(false, true, false, false, false),
      variants(false, false, true, false, false),
      variants(false, false, false, true, false),
      variants(false, false, false, false, true),
      variants(true, false, false, true, true), // gpt-oss
      variants(true, true, false, false, false), // Gemma 2
      variants(true, true, true, true, true)};
  std::vector<VariantCase> cases;
  int i = 0;
  for (const DecodeVariants &v : combos)
    for (DType dtype : {DType::F32, DType::BF16})
      for (int64_t window : {int64_t(7), int64_t(1000)}) {
        if (!v.window && window != 7)
          continue;
        cases.push_back({dtype, i % 2 ? 4 : 1, i % 3 == 0, v, window});
        ++i;
      }
  return cases;
}

std::string variantCaseName(const ::testing::TestParamInfo<VariantCase> &info) {
  return describeVariant(info.param);
}

INSTANTIATE_TEST_SUITE_P(Variants, CpuLoopsVariantsTest,
                         ::testing::ValuesIn(variantCases()), variantCaseName);

// Multi-token decodes: L = 1 (of rank 4) to 16 new tokens, with and without
// tree masks (entries above the diagonal set, to be ignored), composed with
// the variants; the lengths include 0, 1 and 7, shorter than L = 8 and 16.
std::vector<VariantCase> multiTokenCases() {
  auto with = [](std::initializer_list<const char *> keys) {
    DecodeVariants v;
    for (const char *key : keys)
      v.enable(key);
    return v;
  };
  return {
      {DType::F32, 4, false, with({}), 0, 1},
      {DType::BF16, 4, false, with({"lse"}), 0, 2},
      {DType::F32, 1, true, with({"tree_mask"}), 0, 4},
      {DType::BF16, 4, false, with({"tree_mask", "lse"}), 0, 8},
      {DType::F32, 4, true, with({"window", "alibi_slopes", "lse"}), 7, 3},
      {DType::F32, 1, false, with({"window", "sinks", "tree_mask", "lse"}), 7,
       4},
      {DType::BF16, 4, true,
       with({"window", "soft_cap", "alibi_slopes", "sinks", "tree_mask",
             "lse"}),
       1000, 8},
      {DType::F16, 1, false, with({"tree_mask", "lse"}), 0, 16},
      {DType::F32, 4, false, with({"tree_mask"}), 0, 5, /*maskI1=*/true},
  };
}

INSTANTIATE_TEST_SUITE_P(MultiToken, CpuLoopsVariantsTest,
                         ::testing::ValuesIn(multiTokenCases()),
                         variantCaseName);


//===----------------------------------------------------------------------===//
// Merge
//===----------------------------------------------------------------------===//

struct MergeCase {
  DType dtype;
  bool sinks, lse;
};

std::string describeMerge(const MergeCase &c) {
  return std::string(dtypeName(c.dtype)) + (c.sinks ? "_sinks" : "") +
         (c.lse ? "_lse" : "");
}

[[maybe_unused]] void PrintTo(const MergeCase &c, std::ostream *os) {
  *os << describeMerge(c);
}

class CpuLoopsMergeTest : public JitTest<MergeCase> {};

// paged_attn.merge through the loops lowering against float64 on three
// partials of four sequences: partial 1 is empty for every sequence
// (lse -inf, neutral), sequence 2 has no partial with keys (zeros, -inf),
// the others' log-sum-exps differ by up to 30 (weights far apart).
TEST_P(CpuLoopsMergeTest, MatchesFloat64Reference) {
  const MergeCase &c = GetParam();
  const int64_t n = 3, batch = 4, heads = 4, dim = 64;
  std::string t = dtypeName(c.dtype);
  std::string parts = "memref<3x4x4x64x" + t + ">";
  std::string out = "memref<4x4x64x" + t + ">";
  std::string text = "func.func @merge(%p: " + parts +
                     ", %l: memref<3x4x4xf32>, %o: " + out +
                     ", %s: memref<4xf32>, %lo: memref<4x4xf32>) "
                     "attributes {llvm.emit_c_interface} {\n"
                     "  paged_attn.merge %p, %l" +
                     std::string(c.sinks ? " sinks(%s : memref<4xf32>)" : "") +
                     " outs(%o : " + out + ")" +
                     std::string(c.lse ? " lse(%lo : memref<4x4xf32>)" : "") +
                     " : " + parts + ", memref<3x4x4xf32>\n  return\n}\n";
  OwningOpRef<ModuleOp> module = parseSourceString<ModuleOp>(text, &ctx);
  ASSERT_TRUE(module);
  std::unique_ptr<ExecutionEngine> engine = compile(*module);
  ASSERT_TRUE(engine);

  std::mt19937 rng(11);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0), spread(-15, 15);
  std::vector<double> partials(n * batch * heads * dim);
  for (double &x : partials)
    x = uniform(rng);
  std::vector<uint8_t> partialBytes = roundToDType(c.dtype, partials);
  std::vector<float> lses(n * batch * heads), sinks(heads);
  const float negInf = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t h = 0; h < heads; ++h)
        lses[(i * batch + b) * heads + h] =
            (i == 1 || b == 2) ? negInf : float(spread(rng));
  for (float &x : sinks)
    x = float(spread(rng));
  std::vector<uint8_t> outBytes(batch * heads * dim * dtypeBytes(c.dtype),
                                0xff);
  std::vector<float> lseOut(batch * heads,
                            std::numeric_limits<float>::quiet_NaN());
  auto pd = descriptor<4>(partialBytes.data(), {n, batch, heads, dim});
  auto ld = descriptor<3>(lses.data(), {n, batch, heads});
  auto od = descriptor<3>(outBytes.data(), {batch, heads, dim});
  auto sd = descriptor<1>(sinks.data(), {heads});
  auto lod = descriptor<2>(lseOut.data(), {batch, heads});
  SmallVector<void *> descriptors = {&pd, &ld, &od, &sd, &lod};
  SmallVector<void *> args;
  for (void *&d : descriptors)
    args.push_back(&d);
  llvm::Error error = engine->invokePacked("_mlir_ciface_merge", args);
  ASSERT_FALSE(bool(error)) << llvm::toString(std::move(error));

  std::vector<double> expected(batch * heads * dim, 0.0);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h) {
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t i = 0; i < n; ++i)
        m = std::max(m, double(lses[(i * batch + b) * heads + h]));
      double sum = 0, denominator = 0;
      std::vector<double> acc(dim, 0.0);
      if (std::isfinite(m)) {
        for (int64_t i = 0; i < n; ++i) {
          double w = std::exp(double(lses[(i * batch + b) * heads + h]) - m);
          sum += w;
          for (int64_t d = 0; d < dim; ++d)
            acc[d] += w * partials[((i * batch + b) * heads + h) * dim + d];
        }
        denominator = sum + (c.sinks ? std::exp(double(sinks[h]) - m) : 0);
        for (int64_t d = 0; d < dim; ++d)
          expected[(b * heads + h) * dim + d] = acc[d] / denominator;
      }
      if (!c.lse)
        continue;
      float got = lseOut[b * heads + h];
      if (!std::isfinite(m))
        EXPECT_TRUE(std::isinf(got) && got < 0) << "lse " << b << ", " << h;
      else
        EXPECT_NEAR(got, m + std::log(sum), 1e-4) << "lse " << b << ", " << h;
    }
  std::vector<double> got =
      widenFromDType(c.dtype, outBytes.data(), batch * heads * dim);
  EXPECT_LE(relativeError(got, expected), limitFor(c.dtype));
  for (int64_t i = 0; i < heads * dim; ++i)
    ASSERT_EQ(got[2 * heads * dim + i], 0.0)
        << "element " << i << " of the sequence with no keys";
}

std::string mergeCaseName(const ::testing::TestParamInfo<MergeCase> &info) {
  return describeMerge(info.param);
}

INSTANTIATE_TEST_SUITE_P(
    Merge, CpuLoopsMergeTest,
    ::testing::Values(MergeCase{DType::F32, false, false},
                      MergeCase{DType::F32, true, true},
                      MergeCase{DType::BF16, false, true},
                      MergeCase{DType::BF16, true, false},
                      MergeCase{DType::F16, true, true}),
    mergeCaseName);

//===----------------------------------------------------------------------===//
// fp8 caches
//===----------------------------------------------------------------------===//

struct Fp8Case {
  DType format;
  KVScaleKind scale;
  DType dtype; // q's
  int64_t group;
  bool hnd;
};

std::string describeFp8(const Fp8Case &c) {
  return std::string(dtypeName(c.format)) + "_" + kvScaleKindName(c.scale) +
         "_" + dtypeName(c.dtype) + "_g" + std::to_string(c.group) +
         (c.hnd ? "_hnd" : "_nhd");
}

[[maybe_unused]] void PrintTo(const Fp8Case &c, std::ostream *os) {
  *os << describeFp8(c);
}

/// A JIT test of quantised decodes: their functions take the scales last.
template <typename Param> class Fp8JitTest : public JitTest<Param> {
protected:
  /// The C interface of `spec`'s decode function (q, k, v, block_table,
  /// seq_lens, out, k_scale, v_scale: pointers to descriptors), compiled.
  using CFn = void (*)(void *, void *, void *, void *, void *, void *, void *,
                       void *);
  CFn compileDecode(const ::paged_attn::DecodeSpec &spec) {
    auto module = mlir::paged_attn::buildDecodeModule(&this->ctx, {spec});
    if (failed(module)) {
      ADD_FAILURE() << "no module";
      return nullptr;
    }
    ModuleOp built = **module;
    auto func = *built.getOps<func::FuncOp>().begin();
    func->setAttr("llvm.emit_c_interface", UnitAttr::get(&this->ctx));
    std::string name = func.getName().str();
    module_ = std::move(*module);
    engine_ = this->compile(*module_);
    if (!engine_)
      return nullptr;
    auto fn = engine_->lookup("_mlir_ciface_" + name);
    if (!fn) {
      ADD_FAILURE() << llvm::toString(fn.takeError());
      return nullptr;
    }
    return reinterpret_cast<CFn>(*fn);
  }

private:
  OwningOpRef<ModuleOp> module_;
  std::unique_ptr<ExecutionEngine> engine_;
};

class CpuLoopsFp8Test : public Fp8JitTest<Fp8Case> {};

/// Scales of each granularity: the descriptor of `values` as the kernel's
/// k_scale / v_scale ([], [num_kv_heads] or the cache's first three dims).
struct ScaleDescriptors {
  StridedMemRefType<char, 0> tensor;
  StridedMemRefType<char, 1> head;
  StridedMemRefType<char, 3> token;
  void *get(KVScaleKind kind) {
    return kind == KVScaleKind::Tensor ? static_cast<void *>(&tensor)
           : kind == KVScaleKind::Head ? static_cast<void *>(&head)
                                       : static_cast<void *>(&token);
  }
};

ScaleDescriptors scaleDescriptors(std::vector<float> &values,
                                  std::array<int64_t, 4> cacheShape) {
  ScaleDescriptors d;
  d.tensor.basePtr = d.tensor.data = reinterpret_cast<char *>(values.data());
  d.tensor.offset = 0;
  d.head = descriptor<1>(values.data(), {int64_t(values.size())});
  d.token = descriptor<3>(values.data(),
                          {cacheShape[0], cacheShape[1], cacheShape[2]});
  return d;
}

TEST_P(CpuLoopsFp8Test, MatchesFloat64ReferenceOnDequantisedValues) {
  const Fp8Case &c = GetParam();
  const int64_t numKVHeads = 2, numHeads = numKVHeads * c.group, headDim = 32,
                pageSize = 16;
  ::paged_attn::DecodeSpec spec;
  spec.numHeads = numHeads;
  spec.numKVHeads = numKVHeads;
  spec.headDim = headDim;
  spec.pageSize = pageSize;
  spec.dtype = c.dtype;
  spec.layout = c.hnd ? Layout::HND : Layout::NHD;
  spec.kvQuant = KVQuant{c.format, c.scale};
  CFn decode = compileDecode(spec);
  ASSERT_TRUE(decode);

  for (uint64_t seed : {1u, 2u}) {
    RandomProblemOptions o;
    o.numHeads = numHeads;
    o.numKVHeads = numKVHeads;
    o.headDim = headDim;
    o.pageSize = pageSize;
    o.hnd = c.hnd;
    o.seqLens = {0, 1, 17, 16, 15, int32_t(40 + 50 * seed)};
    o.seed = seed;
    ReferenceProblem p = makeRandomProblem(o);
    QuantizedCaches caches = quantizeCaches(p, *spec.kvQuant, seed + 100);
    std::vector<uint8_t> q = roundToDType(c.dtype, p.q);
    std::vector<uint8_t> out(q.size(), 0xff); // NaN: every row must be written
    std::array<int64_t, 4> cacheShape = spec.cacheShape(p.numPages);
    auto qd = descriptor<3>(q.data(), {p.batch, numHeads, headDim});
    auto kd = descriptor<4>(caches.k.data(), cacheShape);
    auto vd = descriptor<4>(caches.v.data(), cacheShape);
    auto btd = descriptor<2>(p.blockTable.data(), {p.batch, p.maxPages});
    auto sld = descriptor<1>(p.seqLens.data(), {p.batch});
    auto od = descriptor<3>(out.data(), {p.batch, numHeads, headDim});
    ScaleDescriptors ks = scaleDescriptors(caches.kScale, cacheShape);
    ScaleDescriptors vs = scaleDescriptors(caches.vScale, cacheShape);
    decode(&qd, &kd, &vd, &btd, &sld, &od, ks.get(c.scale), vs.get(c.scale));

    std::vector<double> got = widenFromDType(c.dtype, out.data(), p.q.size());
    EXPECT_LE(relativeError(got, referenceDecode(p)), limitFor(c.dtype))
        << "seed " << seed;
  }
}

/// Every code of the format read back exactly: sequence b has one key,
/// whose K row is zero and whose V row holds codes 16 b to 16 b + 15, so
/// its output is those codes' values (exact in f16), NaNs and infinities
/// included.
class CpuLoopsFp8CodesTest : public Fp8JitTest<DType> {};

TEST_P(CpuLoopsFp8CodesTest, ReadsEveryCodeExactly) {
  const DType format = GetParam();
  const int64_t headDim = 16, batch = 256 / headDim;
  ::paged_attn::DecodeSpec spec;
  spec.numHeads = spec.numKVHeads = 1;
  spec.headDim = headDim;
  spec.pageSize = 1;
  spec.dtype = DType::F16;
  spec.kvQuant = KVQuant{format, KVScaleKind::Tensor};
  CFn decode = compileDecode(spec);
  ASSERT_TRUE(decode);

  std::vector<uint16_t> q(batch * headDim, floatToF16(1.0f));
  std::vector<uint8_t> k(batch * headDim, 0), v(batch * headDim);
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = uint8_t(i);
  std::vector<int32_t> blockTable(batch), seqLens(batch, 1);
  for (int64_t b = 0; b < batch; ++b)
    blockTable[b] = int32_t(b);
  std::vector<float> scale = {1.0f};
  std::vector<uint16_t> out(q.size());
  auto qd = descriptor<3>(q.data(), {batch, 1, headDim});
  auto kd = descriptor<4>(k.data(), {batch, 1, 1, headDim});
  auto vd = descriptor<4>(v.data(), {batch, 1, 1, headDim});
  auto btd = descriptor<2>(blockTable.data(), {batch, 1});
  auto sld = descriptor<1>(seqLens.data(), {batch});
  auto od = descriptor<3>(out.data(), {batch, 1, headDim});
  ScaleDescriptors s = scaleDescriptors(scale, {1, 1, 1, headDim});
  decode(&qd, &kd, &vd, &btd, &sld, &od, s.get(KVScaleKind::Tensor),
         s.get(KVScaleKind::Tensor));
  for (int code = 0; code < 256; ++code) {
    double expected = fp8ToDouble(uint8_t(code), format);
    double got = f16ToFloat(out[code]);
    if (std::isnan(expected))
      EXPECT_TRUE(std::isnan(got)) << "code " << code;
    else
      EXPECT_EQ(got, expected) << "code " << code;
  }
}

std::vector<Fp8Case> fp8Cases() {
  std::vector<Fp8Case> cases;
  for (DType format : {DType::F8E4M3FN, DType::F8E5M2})
    for (KVScaleKind scale :
         {KVScaleKind::Tensor, KVScaleKind::Head, KVScaleKind::Token})
      for (bool hnd : {false, true})
        cases.push_back({format, scale, DType::F16, 1, hnd});
  // bf16 q and grouped heads.
  for (KVScaleKind scale : {KVScaleKind::Head, KVScaleKind::Token})
    cases.push_back({DType::F8E4M3FN, scale, DType::BF16, 4, false});
  cases.push_back({DType::F8E5M2, KVScaleKind::Token, DType::BF16, 4, true});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Fp8, CpuLoopsFp8Test, ::testing::ValuesIn(fp8Cases()),
                         [](const ::testing::TestParamInfo<Fp8Case> &info) {
                           return describeFp8(info.param);
                         });

INSTANTIATE_TEST_SUITE_P(Fp8, CpuLoopsFp8CodesTest,
                         ::testing::Values(DType::F8E4M3FN, DType::F8E5M2),
                         [](const ::testing::TestParamInfo<DType> &info) {
                           return std::string(dtypeName(info.param));
                         });

//===----------------------------------------------------------------------===//
// append
//===----------------------------------------------------------------------===//

struct AppendCase {
  DType dtype; // k's and v's
  std::optional<KVQuant> quant;
  bool hnd;
};

std::string describeAppend(const AppendCase &c) {
  return std::string(dtypeName(c.dtype)) +
         (c.quant ? c.quant->nameSuffix() : std::string("_copy")) +
         (c.hnd ? "_hnd" : "_nhd");
}

[[maybe_unused]] void PrintTo(const AppendCase &c, std::ostream *os) {
  *os << describeAppend(c);
}

class CpuLoopsAppendTest : public JitTest<AppendCase> {};

/// The codes the op's semantics give for row `x` (already rounded to k's
/// dtype) with scale `scale`, computed independently in f32 and rounded by
/// Testing/Float8.h.
std::vector<uint8_t> expectedCodes(const std::vector<double> &x, float scale,
                                   DType format) {
  float reciprocal = 1.0f / scale;
  std::vector<uint8_t> codes;
  for (double value : x)
    codes.push_back(
        doubleToFp8(double(float(value) * reciprocal), format, true));
  return codes;
}

/// Appends T new tokens (ragged magnitudes, a zero row, values past the
/// largest finite one for the given scales, padding and out-of-cache slots,
/// a shuffled slot order) into sentinel-filled caches and checks every
/// byte: written rows bit for bit against the semantics, the others
/// untouched; per-token scales against their rule, and the codes read back
/// within the format's rounding.
TEST_P(CpuLoopsAppendTest, WritesTheRowsTheSlotsName) {
  const AppendCase &c = GetParam();
  AppendSpec spec;
  spec.numKVHeads = 2;
  spec.headDim = 32;
  spec.pageSize = 4;
  spec.dtype = c.dtype;
  spec.layout = c.hnd ? Layout::HND : Layout::NHD;
  spec.kvQuant = c.quant;
  const int64_t numPages = 5, tokens = 9, hkv = spec.numKVHeads,
                d = spec.headDim, capacity = numPages * spec.pageSize;
  mlir::paged_attn::KernelSet set;
  set.appends.push_back(spec);
  auto module = mlir::paged_attn::buildKernelModule(&ctx, set);
  ASSERT_TRUE(succeeded(module));
  auto func = *(**module).getOps<func::FuncOp>().begin();
  func->setAttr("llvm.emit_c_interface", UnitAttr::get(&ctx));
  std::string name = func.getName().str();
  OwningOpRef<ModuleOp> owned = std::move(*module);
  std::unique_ptr<ExecutionEngine> engine = compile(*owned);
  ASSERT_TRUE(engine);
  auto fn = engine->lookup("_mlir_ciface_" + name);
  ASSERT_TRUE(bool(fn)) << llvm::toString(fn.takeError());

  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> exponent(-8.0, 8.0);
  // Slots: distinct, shuffled, with padding (-1) and one past the cache.
  std::vector<int64_t> slots(capacity);
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(slots.begin(), slots.end(), rng);
  slots.resize(tokens);
  slots[2] = -1;
  slots[5] = capacity + 3;
  slots[6] = 0;
  std::vector<double> rows[2];
  for (int side = 0; side < 2; ++side) {
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t h = 0; h < hkv; ++h) {
        double magnitude = std::exp2(exponent(rng));
        for (int64_t i = 0; i < d; ++i)
          rows[side].push_back(t == 3 ? 0.0 : normal(rng) * magnitude);
      }
    // A value past the largest finite one times the given scale (and
    // within f16).
    rows[side][4 * hkv * d + 1] = 6.0e4;
  }
  std::vector<uint8_t> k = roundToDType(c.dtype, rows[0]);
  std::vector<uint8_t> v = roundToDType(c.dtype, rows[1]);
  size_t cacheBytes =
      numPages * spec.pageSize * hkv * d * dtypeBytes(spec.cacheDType());
  std::vector<uint8_t> caches[2] = {std::vector<uint8_t>(cacheBytes, 0x5a),
                                    std::vector<uint8_t>(cacheBytes, 0x5a)};
  std::vector<int64_t> scaleShape = spec.kvScaleShape(numPages);
  size_t scaleCount = 1;
  for (int64_t size : scaleShape)
    scaleCount *= size;
  std::vector<float> scales[2];
  std::uniform_real_distribution<float> given(0.01f, 0.5f);
  for (auto &s : scales)
    for (size_t i = 0; i < scaleCount; ++i)
      s.push_back(c.quant && c.quant->scale == KVScaleKind::Token ? -1.0f
                                                                  : given(rng));

  std::array<int64_t, 4> cacheShape = spec.cacheShape(numPages);
  auto kd = descriptor<3>(k.data(), {tokens, hkv, d});
  auto vd = descriptor<3>(v.data(), {tokens, hkv, d});
  auto sd = descriptor<1>(slots.data(), {tokens});
  auto kcd = descriptor<4>(caches[0].data(), cacheShape);
  auto vcd = descriptor<4>(caches[1].data(), cacheShape);
  if (!c.quant) {
    reinterpret_cast<void (*)(void *, void *, void *, void *, void *)> (*fn)(
        &kd, &vd, &sd, &kcd, &vcd);
  } else {
    ScaleDescriptors ks = scaleDescriptors(scales[0], cacheShape);
    ScaleDescriptors vs = scaleDescriptors(scales[1], cacheShape);
    reinterpret_cast<void (*)(void *, void *, void *, void *, void *, void *,
                              void *)> (*fn)(&kd, &vd, &sd, &kcd, &vcd,
                                             ks.get(c.quant->scale),
                                             vs.get(c.quant->scale));
  }

  // Which token each cache row should hold.
  std::vector<int64_t> writer(capacity, -1);
  for (int64_t t = 0; t < tokens; ++t)
    if (slots[t] >= 0 && slots[t] < capacity)
      writer[slots[t]] = t;
  size_t elemBytes = dtypeBytes(spec.cacheDType());
  size_t srcBytes = dtypeBytes(c.dtype);
  const std::vector<uint8_t> *sources[2] = {&k, &v};
  for (int side = 0; side < 2; ++side) {
    std::vector<double> widened =
        widenFromDType(c.dtype, sources[side]->data(), rows[side].size());
    for (int64_t slot = 0; slot < capacity; ++slot)
      for (int64_t h = 0; h < hkv; ++h) {
        int64_t page = slot / spec.pageSize, offset = slot % spec.pageSize;
        std::array<int64_t, 4> index =
            cacheIndex(spec.layout, page, offset, h, int64_t(0));
        int64_t row =
            ((index[0] * cacheShape[1] + index[1]) * cacheShape[2] + index[2]);
        const uint8_t *got = caches[side].data() + row * d * elemBytes;
        int64_t t = writer[slot];
        std::string where = "side " + std::to_string(side) + " slot " +
                            std::to_string(slot) + " head " + std::to_string(h);
        if (t < 0) {
          for (size_t i = 0; i < d * elemBytes; ++i)
            ASSERT_EQ(got[i], 0x5a) << where << ": a row no slot names";
          continue;
        }
        int64_t source = (t * hkv + h) * d;
        if (!c.quant) {
          ASSERT_EQ(0,
                    std::memcmp(got, sources[side]->data() + source * srcBytes,
                                d * srcBytes))
              << where;
          continue;
        }
        std::vector<double> x(widened.begin() + source,
                              widened.begin() + source + d);
        float scale;
        if (c.quant->scale == KVScaleKind::Token) {
          float amax = 0.0f;
          for (double value : x)
            amax = std::max(amax, float(std::fabs(value)));
          float fmax = float(Fp8Format::of(c.quant->dtype).maxFinite());
          scale = std::max(amax / fmax, 0x1p-126f);
          ASSERT_EQ(scales[side][row], scale) << where << ": its scale";
        } else {
          scale = scales[side][c.quant->scale == KVScaleKind::Head ? h : 0];
        }
        std::vector<uint8_t> expected = expectedCodes(x, scale, c.quant->dtype);
        for (int64_t i = 0; i < d; ++i) {
          ASSERT_EQ(int(got[i]), int(expected[i]))
              << where << " column " << i << " value " << x[i];
          // Read back within half a quantum (a subnormal one at least)
          // where not saturated.
          Fp8Format f = Fp8Format::of(c.quant->dtype);
          double back = fp8ToDouble(got[i], c.quant->dtype) * scale;
          if (std::fabs(x[i]) < f.maxFinite() * scale)
            EXPECT_LE(
                std::fabs(back - x[i]),
                std::max(std::ldexp(std::fabs(x[i]), -f.mantissaBits - 1),
                         std::ldexp(double(scale), -f.bias - f.mantissaBits)) *
                    (1 + 1e-6))
                << where << " column " << i;
        }
      }
    // Per-token scale rows no slot names keep their old value.
    if (c.quant && c.quant->scale == KVScaleKind::Token)
      for (int64_t slot = 0; slot < capacity; ++slot)
        if (writer[slot] < 0)
          for (int64_t h = 0; h < hkv; ++h) {
            std::array<int64_t, 4> index =
                cacheIndex(spec.layout, slot / spec.pageSize,
                           slot % spec.pageSize, h, int64_t(0));
            EXPECT_EQ(scales[side][(index[0] * cacheShape[1] + index[1]) *
                                       cacheShape[2] +
                                   index[2]],
                      -1.0f);
          }
  }
}

std::vector<AppendCase> appendCases() {
  std::vector<AppendCase> cases;
  for (bool hnd : {false, true}) {
    for (DType dtype : {DType::F32, DType::F16, DType::BF16})
      cases.push_back({dtype, std::nullopt, hnd});
    for (DType format : {DType::F8E4M3FN, DType::F8E5M2})
      for (KVScaleKind scale :
           {KVScaleKind::Tensor, KVScaleKind::Head, KVScaleKind::Token})
        cases.push_back(
            {hnd ? DType::F16 : DType::BF16, KVQuant{format, scale}, hnd});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Append, CpuLoopsAppendTest,
                         ::testing::ValuesIn(appendCases()),
                         [](const ::testing::TestParamInfo<AppendCase> &info) {
                           return describeAppend(info.param);
                         });

} // namespace
