//===- AppendSpec.cpp - what one paged append is --------------------------===//

#include "PagedAttn/Spec/AppendSpec.h"

#include "PagedAttn/Spec/Json.h"

#include <tuple>
#include <utility>

using namespace paged_attn;

/// The decode whose caches and scales have the shapes this append writes
/// (one query head per KV head: the shapes do not depend on it).
static DecodeSpec cacheReader(const AppendSpec &a) {
  DecodeSpec d;
  d.numHeads = d.numKVHeads = a.numKVHeads;
  d.headDim = a.headDim;
  d.pageSize = a.pageSize;
  d.dtype = a.dtype;
  d.layout = a.layout;
  d.kvQuant = a.kvQuant;
  return d;
}

AppendSpec AppendSpec::forDecode(const DecodeSpec &decode) {
  AppendSpec a;
  a.numKVHeads = decode.numKVHeads;
  a.headDim = decode.headDim;
  a.pageSize = decode.pageSize;
  a.dtype = decode.dtype;
  a.layout = decode.layout;
  a.kvQuant = decode.kvQuant;
  return a;
}

std::string AppendSpec::name() const {
  return "kv" + std::to_string(numKVHeads) + "_d" + std::to_string(headDim) +
         "_p" + std::to_string(pageSize) + "_" + dtypeName(dtype) + "_" +
         layoutName(layout) + (kvQuant ? kvQuant->nameSuffix() : "");
}

std::array<int64_t, 4> AppendSpec::cacheShape(int64_t numPages) const {
  return cacheReader(*this).cacheShape(numPages);
}

std::vector<int64_t> AppendSpec::kvScaleShape(int64_t numPages) const {
  return cacheReader(*this).kvScaleShape(numPages);
}

std::string AppendSpec::validate() const {
  const std::pair<const char *, int64_t> sizes[] = {
      {"num_kv_heads", numKVHeads},
      {"head_dim", headDim},
      {"page_size", pageSize}};
  for (auto [what, size] : sizes)
    if (size < 1)
      return std::string(what) + " must be at least 1, got " +
             std::to_string(size);
  const std::tuple<const char *, int64_t, int64_t> bounds[] = {
      {"num_kv_heads", numKVHeads, DecodeSpec::kMaxNumHeads},
      {"head_dim", headDim, DecodeSpec::kMaxHeadDim},
      {"page_size", pageSize, DecodeSpec::kMaxPageSize}};
  for (auto [what, size, bound] : bounds)
    if (size > bound)
      return std::string(what) + " (" + std::to_string(size) +
             ") must be at most " + std::to_string(bound);
  if (!isDataDType(dtype))
    return std::string("the element type of 'k' and 'v' must be f16, bf16 "
                       "or f32, got ") +
           dtypeName(dtype);
  if (std::string message = checkRowBytes(headDim, dtype); !message.empty())
    return message;
  if (!kvQuant)
    return "";
  // The decode reads fp8 caches with a 16-bit q; the new rows are q's type.
  return checkKVQuant(*kvQuant, dtype, headDim, "f16 or bf16 'k' and 'v'");
}

std::string paged_attn::appendOpKernelName(const AppendSpec &spec) {
  return "paged_attn_append_" + spec.name();
}

std::vector<KernelParam>
paged_attn::appendKernelParams(const AppendSpec &spec) {
  constexpr int64_t dyn = kDynamicSize;
  std::array<int64_t, 4> cache = spec.cacheShape(dyn);
  std::vector<int64_t> rows = {dyn, spec.numKVHeads, spec.headDim};
  std::vector<KernelParam> params = {
      {"k", true, spec.dtype, rows, true},
      {"v", true, spec.dtype, rows, true},
      {"slot_mapping", true, DType::I64, {dyn}, false},
      {"k_cache", true, spec.cacheDType(), {cache.begin(), cache.end()}, true},
      {"v_cache", true, spec.cacheDType(), {cache.begin(), cache.end()}, true}};
  if (spec.kvQuant) {
    params.push_back(
        {"k_scale", true, DType::F32, spec.kvScaleShape(dyn), false});
    params.push_back(
        {"v_scale", true, DType::F32, spec.kvScaleShape(dyn), false});
  }
  return params;
}

std::vector<ConfigField>
paged_attn::appendConfigFields(const AppendSpec &spec) {
  std::vector<ConfigField> fields = {
      {"name", spec.name()},
      {"num_kv_heads", spec.numKVHeads},
      {"head_dim", spec.headDim},
      {"page_size", spec.pageSize},
      {"dtype", std::string(dtypeName(spec.dtype))},
      {"layout", std::string(layoutName(spec.layout))}};
  appendKVQuantConfigFields(spec.kvQuant, &fields);
  return fields;
}

std::string paged_attn::appendSpecFromConfig(const json::Value &config,
                                             AppendSpec *spec) {
  const std::pair<const char *, int64_t *> integers[] = {
      {"num_kv_heads", &spec->numKVHeads},
      {"head_dim", &spec->headDim},
      {"page_size", &spec->pageSize}};
  for (auto [key, field] : integers)
    if (!json::getInteger(config, key, field))
      return std::string("append config has no integer '") + key + "'";
  const json::Value *dtype = config.get("dtype");
  const json::Value *layout = config.get("layout");
  std::optional<DType> parsedDType;
  std::optional<Layout> parsedLayout;
  if (!dtype || !dtype->isString() ||
      !(parsedDType = parseDType(dtype->string)))
    return "append config has no dtype f16, bf16 or f32";
  if (!layout || !layout->isString() ||
      !(parsedLayout = parseLayout(layout->string)))
    return "append config has no layout nhd or hnd";
  spec->dtype = *parsedDType;
  spec->layout = *parsedLayout;
  if (std::string message = kvQuantFromConfig(config, &spec->kvQuant);
      !message.empty())
    return message;
  return spec->validate();
}
