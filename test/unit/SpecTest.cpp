//===- SpecTest.cpp - the LLVM-free description of a decode ---------------===//
//
// DecodeSpec (names, rules and their messages, layouts, manifest fields),
// the kernels' parameter ABI and split workspace, and the chip table.
//
//===----------------------------------------------------------------------===//

#include "PagedAttn/Spec/DecodeSpec.h"
#include "PagedAttn/Spec/Json.h"
#include "PagedAttn/Spec/KernelABI.h"
#include "PagedAttn/Spec/TargetInfo.h"

#include <algorithm>

#include <gtest/gtest.h>

#include <cstdint>
#include <variant>

using namespace paged_attn;

namespace {

DecodeSpec llama() {
  DecodeSpec s;
  s.numHeads = 32;
  s.numKVHeads = 8;
  s.headDim = 128;
  s.pageSize = 16;
  s.dtype = DType::BF16;
  s.layout = Layout::NHD;
  return s;
}

TEST(DecodeSpecTest, NameAndDTypes) {
  EXPECT_EQ(llama().name(), "h32_kv8_d128_p16_bf16_nhd_w4");
  for (DType t :
       {DType::F16, DType::BF16, DType::F32, DType::I32, DType::I64, DType::I8})
    EXPECT_EQ(parseDType(dtypeName(t)), t);
  EXPECT_EQ(parseDType("f64"), std::nullopt);
  EXPECT_EQ(dtypeBytes(DType::BF16), 2u);
  EXPECT_TRUE(isDataDType(DType::F32));
  EXPECT_FALSE(isDataDType(DType::I32));
}

TEST(DecodeSpecTest, LayoutsPlacePagesAndKVHeads) {
  EXPECT_EQ(cacheDims(Layout::NHD).page, 1);
  EXPECT_EQ(cacheDims(Layout::NHD).kvHeads, 2);
  EXPECT_EQ(cacheDims(Layout::HND).page, 2);
  EXPECT_EQ(cacheDims(Layout::HND).kvHeads, 1);
  DecodeSpec hnd = llama();
  hnd.layout = Layout::HND;
  EXPECT_EQ(hnd.cacheShape(100), (std::array<int64_t, 4>{100, 8, 16, 128}));
  const int64_t q[3] = {4, 32, 128}, cache[4] = {100, 8, 16, 128};
  EXPECT_EQ(DecodeSpec::fromShapes(q, cache, DType::BF16, Layout::HND), hnd);
  EXPECT_EQ(parseLayout("hnd"), Layout::HND);
  EXPECT_EQ(parseLayout("nchw"), std::nullopt);
}

TEST(DecodeSpecTest, RulesGiveTheVerifiersMessages) {
  EXPECT_EQ(llama().validate(), "");
  auto with = [](auto change) {
    DecodeSpec s = llama();
    change(s);
    return s.validate();
  };
  EXPECT_EQ(with([](DecodeSpec &s) { s.pageSize = 0; }),
            "page_size must be at least 1, got 0");
  EXPECT_EQ(with([](DecodeSpec &s) { s.numKVHeads = 3; }),
            "num_heads (32) must be a multiple of num_kv_heads (3)");
  EXPECT_EQ(with([](DecodeSpec &s) { s.numKVHeads = 64; }),
            "with layout nhd, num_kv_heads is 'k_cache' dim 2: got 64, more "
            "than num_heads (32); does the cache use layout hnd?");
  EXPECT_EQ(with([](DecodeSpec &s) { s.headDim = 264; }),
            "head_dim (264) must be at most 256");
  EXPECT_EQ(with([](DecodeSpec &s) { s.headDim = 36; }),
            "a row of head_dim (36) 'bf16' elements is 72 bytes; it must be a "
            "multiple of 16 bytes");
  EXPECT_EQ(with([](DecodeSpec &s) { s.dtype = DType::I32; }),
            "the element type must be f16, bf16 or f32, got i32");
  EXPECT_EQ(with([](DecodeSpec &s) { s.queryLen = 0; }),
            "query_len must be at least 1, got 0");
  EXPECT_EQ(with([](DecodeSpec &s) { s.queryLen = 17; }),
            "query_len (17) must be at most 16");
  // Sizes that would overflow a row's byte count stop at the bound first.
  EXPECT_EQ(with([](DecodeSpec &s) {
              s.dtype = DType::F32;
              s.headDim = int64_t(1) << 62;
            }),
            "head_dim (4611686018427387904) must be at most 256");
}

TEST(DecodeSpecTest, VariantsNameKernelsAndPlainDecodeIsUnchanged) {
  DecodeSpec spec = llama();
  EXPECT_EQ(spec.name(), "h32_kv8_d128_p16_bf16_nhd_w4");
  EXPECT_EQ(specConfigFields(spec).size(), 8u);
  spec.variants.window = spec.variants.sinks = spec.variants.lse = true;
  EXPECT_EQ(spec.name(), "h32_kv8_d128_p16_bf16_nhd_w4_win_sinks_lse");
  spec.variants.softCap = spec.variants.alibi = true;
  EXPECT_EQ(spec.name(),
            "h32_kv8_d128_p16_bf16_nhd_w4_win_cap_alibi_sinks_lse");
  EXPECT_NE(spec, llama());
}

TEST(DecodeSpecTest, MultiTokenNamesAndSingleTokenIsUnchanged) {
  DecodeSpec spec = llama();
  spec.queryLen = 4;
  spec.variants.treeMask = spec.variants.lse = true;
  EXPECT_EQ(spec.name(), "h32_kv8_d128_p16_bf16_nhd_w4_l4_lse_tree");
  std::vector<ConfigField> fields = specConfigFields(spec);
  EXPECT_NE(std::find(fields.begin(), fields.end(),
                      ConfigField{"query_len", int64_t(4)}),
            fields.end());
  EXPECT_NE(std::find(fields.begin(), fields.end(),
                      ConfigField{"tree_mask", true}),
            fields.end());
  // One query token: no field, no suffix (the manifests of before).
  spec.queryLen = 1;
  spec.variants = DecodeVariants();
  EXPECT_EQ(spec, llama());
  EXPECT_EQ(specConfigFields(spec).size(), 8u);
}

TEST(DecodeSpecTest, ManifestFieldsRoundTrip) {
  DecodeSpec spec = llama();
  spec.layout = Layout::HND;
  spec.variants.window = spec.variants.alibi = spec.variants.lse = true;
  spec.variants.treeMask = true;
  spec.queryLen = 8;
  std::string text = "{";
  for (const ConfigField &field : specConfigFields(spec)) {
    text += (text.size() > 1 ? ", \"" : "\"") + field.first + "\": ";
    if (auto *i = std::get_if<int64_t>(&field.second))
      text += std::to_string(*i);
    else if (auto *b = std::get_if<bool>(&field.second))
      text += *b ? "true" : "false";
    else
      text += "\"" + std::get<std::string>(field.second) + "\"";
  }
  text += "}";
  json::Value config;
  std::string error;
  ASSERT_TRUE(json::parse(text, config, error)) << error;
  DecodeSpec read;
  EXPECT_EQ(specFromConfig(config, &read), "");
  EXPECT_EQ(read, spec);

  ASSERT_TRUE(json::parse(R"({"num_heads": 1e300})", config, error));
  EXPECT_EQ(specFromConfig(config, &read),
            "config has no integer 'num_heads'");
  ASSERT_TRUE(json::parse(R"({"num_heads": 30, "num_kv_heads": 8,
      "head_dim": 128, "page_size": 16, "num_warps": 4, "dtype": "bf16",
      "layout": "nhd"})",
                          config, error));
  EXPECT_EQ(specFromConfig(config, &read),
            "num_heads (30) must be a multiple of num_kv_heads (8)");
  ASSERT_TRUE(json::parse(R"({"num_heads": 32, "num_kv_heads": 8,
      "head_dim": 128, "page_size": 16, "num_warps": 4, "dtype": "bf16",
      "layout": "nhd", "query_len": "4"})",
                          config, error));
  EXPECT_EQ(specFromConfig(config, &read),
            "config's 'query_len' must be an integer");
}

TEST(KernelABITest, DecodeParametersInLaunchOrder) {
  std::vector<KernelParam> params = decodeKernelParams(llama());
  const char *names[] = {"q",   "k_cache",     "v_cache",     "block_table",
                         "seq_lens", "out", "partial_out", "partial_lse",
                         "scale", "num_splits"};
  ASSERT_EQ(params.size(), std::size(names));
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_STREQ(params[i].name, names[i]);
  EXPECT_EQ(params[1].shape,
            (std::vector<int64_t>{kDynamicSize, 16, 8, 128}));
  EXPECT_EQ(params[6].dtype, DType::F32);
  EXPECT_FALSE(params[8].isMemRef);
  EXPECT_EQ(mergeKernelParams(llama()).size(), 4u);
  EXPECT_EQ(checkKernelParams(llama()).back().dtype, DType::I64);

  // The variants' parameters follow, in the Spec's order, only where the
  // spec has them.
  DecodeSpec all = llama();
  all.variants = {true, true, true, true, true};
  std::vector<KernelParam> withVariants = decodeKernelParams(all);
  const char *variantNames[] = {"window", "soft_cap", "alibi_slopes", "sinks",
                                "lse"};
  ASSERT_EQ(withVariants.size(), std::size(names) + 5);
  for (size_t i = 0; i < 5; ++i)
    EXPECT_STREQ(withVariants[std::size(names) + i].name, variantNames[i]);
  EXPECT_EQ(withVariants[std::size(names)].dtype, DType::I64);
  EXPECT_EQ(withVariants.back().shape,
            (std::vector<int64_t>{kDynamicSize, 32}));
  std::vector<KernelParam> merge = mergeKernelParams(all);
  ASSERT_EQ(merge.size(), 6u);
  EXPECT_STREQ(merge[4].name, "sinks");
  EXPECT_STREQ(merge[5].name, "lse");
}

TEST(KernelABITest, SplitWorkspaceIsCheckedArithmetic) {
  SplitWorkspace w;
  ASSERT_EQ(layOutSplitWorkspace(llama(), 4, 3, &w), "");
  // 4 * 32 * 3 rows of 128 floats, then 384 floats, 256-byte aligned.
  EXPECT_EQ(w.lseOffset, 196608u);
  EXPECT_EQ(w.bytes, 196608u + 1536u);
  EXPECT_EQ(w.outStrides[0], 32 * 3 * 128);
  ASSERT_EQ(layOutSplitWorkspace(llama(), 4, 1, &w), "");
  EXPECT_EQ(w.bytes, 0u);
  EXPECT_NE(layOutSplitWorkspace(llama(), int64_t(1) << 40, int64_t(1) << 20,
                                 &w),
            "");
  EXPECT_NE(layOutSplitWorkspace(llama(), INT64_MAX, 2, &w), "");
  EXPECT_NE(layOutSplitWorkspace(llama(), 4, 0, &w), "");
}

TEST(TargetInfoTest, OneTableOfChips) {
  EXPECT_EQ(supportedChipList(), "sm_80, sm_86, sm_89, sm_90 or sm_90a");
  const TargetInfo *sm90 = lookupTarget("sm_90");
  ASSERT_NE(sm90, nullptr);
  EXPECT_EQ(sm90->defaultPTXVersion, 80);
  EXPECT_EQ(sm90->sharedMemoryPerBlockOptIn, 227 * 1024);
  EXPECT_TRUE(sm90->programmaticLaunch);
  EXPECT_EQ(lookupTarget("SM_90"), nullptr);
  EXPECT_EQ(lookupTarget(""), nullptr);
  EXPECT_EQ(targetForComputeCapability(8, 6), lookupTarget("sm_86"));
  EXPECT_EQ(targetForComputeCapability(7, 5), nullptr);
  EXPECT_EQ(ptxVersionOf("+ptx80"), 80);
  EXPECT_EQ(ptxVersionOf("+sm_90,+ptx74"), 74);
  EXPECT_EQ(ptxVersionOf("garbage"), 0);
  EXPECT_EQ(ptxFeature(74), "+ptx74");
}

} // namespace
