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
#include "PagedAttn/Testing/Reference.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/ExecutionEngine/CRunnerUtils.h"
#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/TargetSelect.h"

#include <gtest/gtest.h>

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

class CpuLoopsTest : public ::testing::TestWithParam<LoopsCase> {
protected:
  static void SetUpTestSuite() {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
  }
};

TEST_P(CpuLoopsTest, MatchesFloat64Reference) {
  const LoopsCase &c = GetParam();
  DialectRegistry registry;
  mlir::paged_attn::registerAllDialects(registry);
  MLIRContext ctx(registry);
  ctx.loadAllAvailableDialects();

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

  PassManager pm(&ctx);
  mlir::paged_attn::buildPagedAttnToCPUPipeline(pm);
  ASSERT_TRUE(succeeded(pm.run(**module)));
  ExecutionEngineOptions options;
  auto engine = ExecutionEngine::create(**module, options);
  ASSERT_TRUE(bool(engine)) << llvm::toString(engine.takeError());
  auto fn = (*engine)->lookup("_mlir_ciface_" + name);
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

} // namespace
