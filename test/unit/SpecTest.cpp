//===- SpecTest.cpp - the LLVM-free description of a decode ---------------===//
//
// DecodeSpec (names, rules and their messages, layouts, manifest fields),
// AppendSpec likewise, the kernels' parameter ABI and split workspace, and
// the chip table.
//
//===----------------------------------------------------------------------===//

#include "PagedAttn/Spec/AppendSpec.h"
#include "PagedAttn/Spec/DecodeSpec.h"
#include "PagedAttn/Spec/Json.h"
#include "PagedAttn/Spec/KernelABI.h"
#include "PagedAttn/Spec/TargetInfo.h"

#include <algorithm>
#include <optional>

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

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
  const char *names[] = {"q",        "k_cache",    "v_cache",     "block_table",
                         "seq_lens", "out",        "partial_out", "partial_lse",
                         "scale",    "num_splits", "split_chunk"};
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

// llama() with fp8 caches of `dtype`, scaled at granularity `scale`.
DecodeSpec quantized(DType dtype = DType::F8E4M3FN,
                     KVScaleKind scale = KVScaleKind::Tensor) {
  DecodeSpec s = llama();
  s.kvQuant = KVQuant{dtype, scale};
  return s;
}

// The config section specConfigFields writes, as manifest JSON.
std::string fieldsJson(const std::vector<ConfigField> &fields) {
  std::string text = "{";
  for (const ConfigField &field : fields) {
    text += (text.size() > 1 ? ", \"" : "\"") + field.first + "\": ";
    if (auto *i = std::get_if<int64_t>(&field.second))
      text += std::to_string(*i);
    else if (auto *b = std::get_if<bool>(&field.second))
      text += *b ? "true" : "false";
    else
      text += "\"" + std::get<std::string>(field.second) + "\"";
  }
  return text + "}";
}

std::string configJson(const DecodeSpec &spec) {
  return fieldsJson(specConfigFields(spec));
}

TEST(DecodeSpecTest, Fp8DTypesAreQuantizedCacheDTypesOnly) {
  EXPECT_STREQ(dtypeName(DType::F8E4M3FN), "f8e4m3fn");
  EXPECT_STREQ(dtypeName(DType::F8E5M2), "f8e5m2");
  for (DType t : {DType::F8E4M3FN, DType::F8E5M2}) {
    EXPECT_EQ(parseDType(dtypeName(t)), t);
    EXPECT_EQ(dtypeBytes(t), 1u);
    EXPECT_TRUE(isQuantizedCacheDType(t));
    // Not a dtype of q or out.
    EXPECT_FALSE(isDataDType(t));
  }
  for (DType t :
       {DType::F16, DType::BF16, DType::F32, DType::I32, DType::I64, DType::I8})
    EXPECT_FALSE(isQuantizedCacheDType(t)) << dtypeName(t);
  // The names are the manifests' (lower case), not MLIR's.
  EXPECT_EQ(parseDType("f8E4M3FN"), std::nullopt);
  EXPECT_EQ(parseDType("f8e4m3"), std::nullopt);
  EXPECT_EQ(parseDType("f8e5m2fnuz"), std::nullopt);
}

TEST(DecodeSpecTest, KVScaleKindNames) {
  EXPECT_STREQ(kvScaleKindName(KVScaleKind::Tensor), "tensor");
  EXPECT_STREQ(kvScaleKindName(KVScaleKind::Head), "head");
  EXPECT_STREQ(kvScaleKindName(KVScaleKind::Token), "token");
  for (KVScaleKind k :
       {KVScaleKind::Tensor, KVScaleKind::Head, KVScaleKind::Token})
    EXPECT_EQ(parseKVScaleKind(kvScaleKindName(k)), k);
  EXPECT_EQ(parseKVScaleKind("channel"), std::nullopt);
  EXPECT_EQ(parseKVScaleKind("Token"), std::nullopt);
  EXPECT_EQ(parseKVScaleKind(""), std::nullopt);
  EXPECT_EQ(KVQuant().nameSuffix(), "_f8e4m3fn_tensor");
  EXPECT_EQ((KVQuant{DType::F8E5M2, KVScaleKind::Head}).nameSuffix(),
            "_f8e5m2_head");
}

TEST(DecodeSpecTest, QuantizedCachesNameKernels) {
  DecodeSpec spec = quantized(DType::F8E4M3FN, KVScaleKind::Token);
  EXPECT_EQ(spec.name(), "h32_kv8_d128_p16_bf16_nhd_w4_f8e4m3fn_token");
  EXPECT_EQ(spec.cacheDType(), DType::F8E4M3FN);
  EXPECT_EQ(llama().cacheDType(), DType::BF16);
  EXPECT_NE(spec, llama());
  // The dtype and the granularity each make another kernel.
  EXPECT_NE(spec, quantized(DType::F8E5M2, KVScaleKind::Token));
  EXPECT_NE(spec, quantized(DType::F8E4M3FN, KVScaleKind::Head));
  EXPECT_EQ(spec, quantized(DType::F8E4M3FN, KVScaleKind::Token));
  // After "_l<L>", before the variants' suffix.
  spec.kvQuant = KVQuant{DType::F8E5M2, KVScaleKind::Head};
  spec.variants.window = spec.variants.sinks = true;
  EXPECT_EQ(spec.name(), "h32_kv8_d128_p16_bf16_nhd_w4_f8e5m2_head_win_sinks");
  spec.queryLen = 4;
  spec.variants = DecodeVariants();
  spec.variants.lse = spec.variants.treeMask = true;
  EXPECT_EQ(spec.name(),
            "h32_kv8_d128_p16_bf16_nhd_w4_l4_f8e5m2_head_lse_tree");
  spec.layout = Layout::HND;
  spec.dtype = DType::F16;
  spec.kvQuant = KVQuant{DType::F8E4M3FN, KVScaleKind::Tensor};
  spec.variants = DecodeVariants();
  EXPECT_EQ(spec.name(), "h32_kv8_d128_p16_f16_hnd_w4_l4_f8e4m3fn_tensor");
  // Unquantised names are as they were.
  spec.kvQuant.reset();
  EXPECT_EQ(spec.name(), "h32_kv8_d128_p16_f16_hnd_w4_l4");
}

TEST(DecodeSpecTest, QuantizedCacheRulesGiveTheVerifiersMessages) {
  auto with = [](auto change) {
    DecodeSpec s = quantized();
    change(s);
    return s.validate();
  };
  for (DType t : {DType::F8E4M3FN, DType::F8E5M2})
    for (KVScaleKind k :
         {KVScaleKind::Tensor, KVScaleKind::Head, KVScaleKind::Token})
      EXPECT_EQ(quantized(t, k).validate(), "");
  EXPECT_EQ(with([](DecodeSpec &s) { s.dtype = DType::F16; }), "");
  EXPECT_EQ(with([](DecodeSpec &s) { s.headDim = 16; }), "");
  EXPECT_EQ(with([](DecodeSpec &s) { s.kvQuant->dtype = DType::BF16; }),
            "a quantised KV cache must be f8e4m3fn or f8e5m2, got bf16");
  EXPECT_EQ(with([](DecodeSpec &s) { s.kvQuant->dtype = DType::I8; }),
            "a quantised KV cache must be f8e4m3fn or f8e5m2, got i8");
  EXPECT_EQ(with([](DecodeSpec &s) { s.dtype = DType::F32; }),
            "fp8 KV caches need an f16 or bf16 'q', got f32");
  // q's rows are 48 bytes, the cache's 24.
  EXPECT_EQ(with([](DecodeSpec &s) { s.headDim = 24; }),
            "a row of head_dim (24) 'f8e4m3fn' elements is 24 bytes; it must "
            "be a multiple of 16 bytes");
  EXPECT_EQ(with([](DecodeSpec &s) {
              s.dtype = DType::F16;
              s.headDim = 8;
              s.kvQuant->dtype = DType::F8E5M2;
            }),
            "a row of head_dim (8) 'f8e5m2' elements is 8 bytes; it must be "
            "a multiple of 16 bytes");
  // q's rules come first: its rows, then its dtype.
  EXPECT_EQ(with([](DecodeSpec &s) { s.headDim = 36; }),
            "a row of head_dim (36) 'bf16' elements is 72 bytes; it must be a "
            "multiple of 16 bytes");
  EXPECT_EQ(with([](DecodeSpec &s) {
              s.dtype = DType::F32;
              s.headDim = 4;
            }),
            "fp8 KV caches need an f16 or bf16 'q', got f32");
  EXPECT_EQ(with([](DecodeSpec &s) { s.dtype = DType::F8E4M3FN; }),
            "the element type must be f16, bf16 or f32, got f8e4m3fn");
}

TEST(DecodeSpecTest, KVScaleShapes) {
  EXPECT_EQ(llama().kvScaleShape(100), std::vector<int64_t>{});
  EXPECT_EQ(quantized(DType::F8E4M3FN, KVScaleKind::Tensor).kvScaleShape(100),
            std::vector<int64_t>{});
  EXPECT_EQ(quantized(DType::F8E4M3FN, KVScaleKind::Head).kvScaleShape(100),
            (std::vector<int64_t>{8}));
  DecodeSpec token = quantized(DType::F8E5M2, KVScaleKind::Token);
  EXPECT_EQ(token.kvScaleShape(100), (std::vector<int64_t>{100, 16, 8}));
  EXPECT_EQ(token.kvScaleShape(kDynamicSize),
            (std::vector<int64_t>{kDynamicSize, 16, 8}));
  token.layout = Layout::HND;
  EXPECT_EQ(token.kvScaleShape(100), (std::vector<int64_t>{100, 8, 16}));
  DecodeSpec head = quantized(DType::F8E5M2, KVScaleKind::Head);
  head.layout = Layout::HND;
  EXPECT_EQ(head.kvScaleShape(100), (std::vector<int64_t>{8}));
}

TEST(DecodeSpecTest, QuantizedManifestFieldsRoundTrip) {
  // Unquantised: no kv fields.
  std::vector<ConfigField> plain = specConfigFields(llama());
  for (const ConfigField &field : plain) {
    EXPECT_NE(field.first, "kv_dtype");
    EXPECT_NE(field.first, "kv_scale");
  }
  DecodeSpec spec = quantized(DType::F8E5M2, KVScaleKind::Token);
  std::vector<ConfigField> fields = specConfigFields(spec);
  EXPECT_EQ(fields.size(), plain.size() + 2);
  EXPECT_NE(std::find(fields.begin(), fields.end(),
                      ConfigField{"kv_dtype", std::string("f8e5m2")}),
            fields.end());
  EXPECT_NE(std::find(fields.begin(), fields.end(),
                      ConfigField{"kv_scale", std::string("token")}),
            fields.end());
  EXPECT_NE(
      std::find(fields.begin(), fields.end(), ConfigField{"name", spec.name()}),
      fields.end());

  json::Value config;
  std::string error;
  for (DType t : {DType::F8E4M3FN, DType::F8E5M2})
    for (KVScaleKind k :
         {KVScaleKind::Tensor, KVScaleKind::Head, KVScaleKind::Token}) {
      DecodeSpec s = quantized(t, k);
      s.layout = Layout::HND;
      s.queryLen = 4;
      s.variants.treeMask = s.variants.sinks = true;
      ASSERT_TRUE(json::parse(configJson(s), config, error)) << error;
      DecodeSpec read;
      EXPECT_EQ(specFromConfig(config, &read), "") << s.name();
      EXPECT_EQ(read, s) << s.name();
    }

  // A config without the kv fields reads as unquantised caches, whatever
  // the spec held.
  ASSERT_TRUE(json::parse(configJson(llama()), config, error)) << error;
  DecodeSpec read = quantized();
  EXPECT_EQ(specFromConfig(config, &read), "");
  EXPECT_EQ(read, llama());

  // Both or neither, each well-formed.
  const std::string base = R"({"num_heads": 32, "num_kv_heads": 8,
      "head_dim": 128, "page_size": 16, "num_warps": 4, "dtype": "bf16",
      "layout": "nhd")";
  auto readWith = [&](const std::string &extra) {
    json::Value c;
    std::string e;
    if (!json::parse(base + extra + "}", c, e))
      return "parse error: " + e;
    DecodeSpec s;
    return specFromConfig(c, &s);
  };
  EXPECT_EQ(readWith(R"(, "kv_dtype": "f8e4m3fn", "kv_scale": "head")"), "");
  EXPECT_EQ(readWith(R"(, "kv_dtype": "f8e4m3fn")"),
            "config's 'kv_scale' must be tensor, head or token");
  EXPECT_EQ(readWith(R"(, "kv_scale": "head")"),
            "config's 'kv_dtype' must be f8e4m3fn or f8e5m2");
  EXPECT_EQ(readWith(R"(, "kv_dtype": "bf16", "kv_scale": "head")"),
            "config's 'kv_dtype' must be f8e4m3fn or f8e5m2");
  EXPECT_EQ(readWith(R"(, "kv_dtype": "f8e6m2", "kv_scale": "head")"),
            "config's 'kv_dtype' must be f8e4m3fn or f8e5m2");
  EXPECT_EQ(readWith(R"(, "kv_dtype": 8, "kv_scale": "head")"),
            "config's 'kv_dtype' must be f8e4m3fn or f8e5m2");
  EXPECT_EQ(readWith(R"(, "kv_dtype": "f8e5m2", "kv_scale": "channel")"),
            "config's 'kv_scale' must be tensor, head or token");
  EXPECT_EQ(readWith(R"(, "kv_dtype": "f8e5m2", "kv_scale": true)"),
            "config's 'kv_scale' must be tensor, head or token");
  // Well-formed fields still meet the spec's rules.
  ASSERT_TRUE(json::parse(R"({"num_heads": 32, "num_kv_heads": 8,
      "head_dim": 128, "page_size": 16, "num_warps": 4, "dtype": "f32",
      "layout": "nhd", "kv_dtype": "f8e4m3fn", "kv_scale": "tensor"})",
                          config, error));
  EXPECT_EQ(specFromConfig(config, &read),
            "fp8 KV caches need an f16 or bf16 'q', got f32");
}

TEST(KernelABITest, QuantizedCachesAppendTheirScales) {
  const char *names[] = {"q",        "k_cache",    "v_cache",     "block_table",
                         "seq_lens", "out",        "partial_out", "partial_lse",
                         "scale",    "num_splits", "split_chunk", "k_scale",
                         "v_scale"};
  auto scaleShape = [](const DecodeSpec &s) {
    std::vector<KernelParam> params = decodeKernelParams(s);
    EXPECT_STREQ(params[params.size() - 2].name, "k_scale");
    EXPECT_STREQ(params.back().name, "v_scale");
    EXPECT_EQ(params[params.size() - 2].shape, params.back().shape);
    return params.back().shape;
  };
  DecodeSpec spec = quantized(DType::F8E5M2, KVScaleKind::Head);
  std::vector<KernelParam> params = decodeKernelParams(spec);
  ASSERT_EQ(params.size(), std::size(names));
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_STREQ(params[i].name, names[i]);
  // The caches have the cache dtype; q and out keep q's.
  EXPECT_EQ(params[0].dtype, DType::BF16);
  EXPECT_EQ(params[1].dtype, DType::F8E5M2);
  EXPECT_EQ(params[2].dtype, DType::F8E5M2);
  EXPECT_EQ(params[5].dtype, DType::BF16);
  EXPECT_EQ(params[1].shape, (std::vector<int64_t>{kDynamicSize, 16, 8, 128}));
  EXPECT_TRUE(params[1].unitInnermostStride);
  for (size_t i : {size_t(11), size_t(12)}) {
    EXPECT_TRUE(params[i].isMemRef);
    EXPECT_EQ(params[i].dtype, DType::F32);
    EXPECT_FALSE(params[i].unitInnermostStride);
    EXPECT_EQ(params[i].shape, (std::vector<int64_t>{8}));
  }
  EXPECT_EQ(scaleShape(quantized(DType::F8E4M3FN, KVScaleKind::Tensor)),
            std::vector<int64_t>{});
  EXPECT_EQ(scaleShape(quantized(DType::F8E4M3FN, KVScaleKind::Token)),
            (std::vector<int64_t>{kDynamicSize, 16, 8}));
  DecodeSpec hnd = quantized(DType::F8E4M3FN, KVScaleKind::Token);
  hnd.layout = Layout::HND;
  EXPECT_EQ(scaleShape(hnd), (std::vector<int64_t>{kDynamicSize, 8, 16}));
  EXPECT_EQ(decodeKernelParams(hnd)[1].shape,
            (std::vector<int64_t>{kDynamicSize, 8, 16, 128}));

  // After every variant's parameter, the tree mask included.
  DecodeSpec all = quantized(DType::F8E4M3FN, KVScaleKind::Token);
  all.queryLen = 4;
  all.variants = {true, true, true, true, true, true};
  std::vector<KernelParam> withVariants = decodeKernelParams(all);
  ASSERT_EQ(withVariants.size(), 11u + 6u + 2u);
  EXPECT_STREQ(withVariants[16].name, "tree_mask");
  EXPECT_STREQ(withVariants[17].name, "k_scale");
  EXPECT_STREQ(withVariants[18].name, "v_scale");
  EXPECT_EQ(withVariants[18].shape,
            (std::vector<int64_t>{kDynamicSize, 16, 8}));
  // Unquantised: no scales, caches of q's dtype.
  std::vector<KernelParam> plain = decodeKernelParams(llama());
  EXPECT_EQ(plain.size(), 11u);
  EXPECT_EQ(plain[1].dtype, DType::BF16);
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

//===----------------------------------------------------------------------===//
// AppendSpec
//===----------------------------------------------------------------------===//

TEST(AppendSpecTest, FillsTheCachesOfADecode) {
  DecodeSpec decode = llama();
  decode.layout = Layout::HND;
  decode.kvQuant = KVQuant{DType::F8E4M3FN, KVScaleKind::Token};
  AppendSpec a = AppendSpec::forDecode(decode);
  EXPECT_EQ(a.name(), "kv8_d128_p16_bf16_hnd_f8e4m3fn_token");
  EXPECT_EQ(appendOpKernelName(a),
            "paged_attn_append_kv8_d128_p16_bf16_hnd_f8e4m3fn_token");
  EXPECT_EQ(a.cacheDType(), DType::F8E4M3FN);
  EXPECT_EQ(a.cacheShape(5), decode.cacheShape(5));
  EXPECT_EQ(a.kvScaleShape(5), decode.kvScaleShape(5));
  EXPECT_EQ(a.kvScaleShape(5), (std::vector<int64_t>{5, 8, 16}));
  EXPECT_EQ(AppendSpec::forDecode(llama()).name(), "kv8_d128_p16_bf16_nhd");
  EXPECT_EQ(a.validate(), "");
}

TEST(AppendSpecTest, RulesGiveTheVerifiersMessages) {
  auto broken = [](auto change) {
    AppendSpec a = AppendSpec::forDecode(llama());
    change(a);
    return a.validate();
  };
  EXPECT_EQ(broken([](AppendSpec &a) { a.numKVHeads = 0; }),
            "num_kv_heads must be at least 1, got 0");
  EXPECT_EQ(broken([](AppendSpec &a) { a.headDim = 512; }),
            "head_dim (512) must be at most 256");
  EXPECT_EQ(broken([](AppendSpec &a) { a.pageSize = 1 << 17; }),
            "page_size (131072) must be at most 65536");
  EXPECT_EQ(broken([](AppendSpec &a) { a.dtype = DType::I32; }),
            "the element type of 'k' and 'v' must be f16, bf16 or f32, got "
            "i32");
  EXPECT_EQ(broken([](AppendSpec &a) { a.headDim = 4; }),
            "a row of head_dim (4) 'bf16' elements is 8 bytes; it must be a "
            "multiple of 16 bytes");
  EXPECT_EQ(broken([](AppendSpec &a) {
              a.dtype = DType::F32;
              a.kvQuant = KVQuant{DType::F8E5M2, KVScaleKind::Head};
            }),
            "fp8 KV caches need f16 or bf16 'k' and 'v', got f32");
  EXPECT_EQ(broken([](AppendSpec &a) {
              a.headDim = 24;
              a.kvQuant = KVQuant{DType::F8E5M2, KVScaleKind::Head};
            }),
            "a row of head_dim (24) 'f8e5m2' elements is 24 bytes; it must be "
            "a multiple of 16 bytes");
  EXPECT_EQ(broken([](AppendSpec &a) {
              a.kvQuant = KVQuant{DType::BF16, KVScaleKind::Head};
            }),
            "a quantised KV cache must be f8e4m3fn or f8e5m2, got bf16");
}

TEST(AppendSpecTest, ParametersAndManifestFields) {
  AppendSpec a = AppendSpec::forDecode(llama());
  std::vector<KernelParam> params = appendKernelParams(a);
  std::vector<std::string> names;
  for (const KernelParam &p : params)
    names.push_back(p.name);
  EXPECT_EQ(names, (std::vector<std::string>{"k", "v", "slot_mapping",
                                             "k_cache", "v_cache"}));
  EXPECT_EQ(params[0].shape, (std::vector<int64_t>{kDynamicSize, 8, 128}));
  EXPECT_TRUE(params[0].unitInnermostStride);
  EXPECT_EQ(params[2].dtype, DType::I64);
  EXPECT_EQ(params[3].dtype, DType::BF16);
  a.kvQuant = KVQuant{DType::F8E5M2, KVScaleKind::Head};
  params = appendKernelParams(a);
  ASSERT_EQ(params.size(), 7u);
  EXPECT_EQ(params[3].dtype, DType::F8E5M2);
  EXPECT_STREQ(params[5].name, "k_scale");
  EXPECT_EQ(params[6].shape, (std::vector<int64_t>{8}));

  json::Value config;
  std::string error;
  for (std::optional<KVQuant> quant :
       {std::optional<KVQuant>(),
        std::optional<KVQuant>(KVQuant{DType::F8E4M3FN, KVScaleKind::Token})}) {
    AppendSpec s = AppendSpec::forDecode(llama());
    s.layout = Layout::HND;
    s.kvQuant = quant;
    ASSERT_TRUE(json::parse(fieldsJson(appendConfigFields(s)), config, error))
        << error;
    AppendSpec read;
    EXPECT_EQ(appendSpecFromConfig(config, &read), "") << s.name();
    EXPECT_EQ(read, s) << s.name();
  }
  ASSERT_TRUE(json::parse(R"({"num_kv_heads": 8, "head_dim": 128,
      "dtype": "bf16", "layout": "nhd"})",
                          config, error));
  AppendSpec read;
  EXPECT_EQ(appendSpecFromConfig(config, &read),
            "append config has no integer 'page_size'");
  ASSERT_TRUE(json::parse(R"({"num_kv_heads": 8, "head_dim": 128,
      "page_size": 16, "dtype": "f32", "layout": "nhd",
      "kv_dtype": "f8e4m3fn", "kv_scale": "head"})",
                          config, error));
  EXPECT_EQ(appendSpecFromConfig(config, &read),
            "fp8 KV caches need f16 or bf16 'k' and 'v', got f32");
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
