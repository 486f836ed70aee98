//===- DecodeSpec.cpp - what one paged decode is, for every layer ---------===//

#include "PagedAttn/Spec/DecodeSpec.h"
#include "PagedAttn/Spec/Json.h"
#include "PagedAttn/Spec/KernelABI.h"

#include <cmath>
#include <tuple>

using namespace paged_attn;

namespace {
struct DTypeRow {
  DType dtype;
  const char *name;
  size_t bytes;
  bool data;
  bool quantizedCache;
};
// Every fact about a dtype, in one table.
constexpr DTypeRow kDTypes[] = {
    {DType::F16, "f16", 2, true, false},
    {DType::BF16, "bf16", 2, true, false},
    {DType::F32, "f32", 4, true, false},
    {DType::I32, "i32", 4, false, false},
    {DType::I64, "i64", 8, false, false},
    {DType::I8, "i8", 1, false, false},
    {DType::F8E4M3FN, "f8e4m3fn", 1, false, true},
    {DType::F8E5M2, "f8e5m2", 1, false, true},
};

const DTypeRow &row(DType dtype) {
  for (const DTypeRow &r : kDTypes)
    if (r.dtype == dtype)
      return r;
  return kDTypes[0];
}
} // namespace

const char *paged_attn::dtypeName(DType dtype) { return row(dtype).name; }
size_t paged_attn::dtypeBytes(DType dtype) { return row(dtype).bytes; }
bool paged_attn::isDataDType(DType dtype) { return row(dtype).data; }
bool paged_attn::isQuantizedCacheDType(DType dtype) {
  return row(dtype).quantizedCache;
}

std::optional<DType> paged_attn::parseDType(std::string_view name) {
  for (const DTypeRow &r : kDTypes)
    if (name == r.name)
      return r.dtype;
  return std::nullopt;
}

const char *paged_attn::layoutName(Layout layout) {
  return layout == Layout::NHD ? "nhd" : "hnd";
}

std::optional<Layout> paged_attn::parseLayout(std::string_view name) {
  if (name == "nhd")
    return Layout::NHD;
  if (name == "hnd")
    return Layout::HND;
  return std::nullopt;
}

namespace {
constexpr std::pair<KVScaleKind, const char *> kKVScaleKinds[] = {
    {KVScaleKind::Tensor, "tensor"},
    {KVScaleKind::Head, "head"},
    {KVScaleKind::Token, "token"}};
} // namespace

const char *paged_attn::kvScaleKindName(KVScaleKind kind) {
  for (auto [k, name] : kKVScaleKinds)
    if (k == kind)
      return name;
  return "tensor";
}

std::optional<KVScaleKind> paged_attn::parseKVScaleKind(std::string_view name) {
  for (auto [k, n] : kKVScaleKinds)
    if (name == n)
      return k;
  return std::nullopt;
}

std::string KVQuant::nameSuffix() const {
  return std::string("_") + dtypeName(dtype) + "_" + kvScaleKindName(scale);
}

CacheDims paged_attn::cacheDims(Layout layout) {
  return layout == Layout::NHD ? CacheDims{1, 2} : CacheDims{2, 1};
}

const char *paged_attn::cacheShapeDoc(Layout layout) {
  return layout == Layout::NHD
             ? "[num_pages, page_size, num_kv_heads, head_dim]"
             : "[num_pages, num_kv_heads, page_size, head_dim]";
}

DecodeSpec DecodeSpec::fromShapes(const int64_t qShape[3],
                                  const int64_t cacheShape[4], DType dtype,
                                  Layout layout) {
  CacheDims dims = cacheDims(layout);
  DecodeSpec spec;
  spec.numHeads = qShape[1];
  spec.headDim = qShape[2];
  spec.numKVHeads = cacheShape[dims.kvHeads];
  spec.pageSize = cacheShape[dims.page];
  spec.dtype = dtype;
  spec.layout = layout;
  return spec;
}

namespace {
/// Every variant: its flag, its name suffix and its manifest key.
struct VariantRow {
  bool DecodeVariants::*flag;
  const char *suffix;
  const char *key;
};
constexpr VariantRow kVariants[] = {
    {&DecodeVariants::window, "_win", "window"},
    {&DecodeVariants::softCap, "_cap", "soft_cap"},
    {&DecodeVariants::alibi, "_alibi", "alibi_slopes"},
    {&DecodeVariants::sinks, "_sinks", "sinks"},
    {&DecodeVariants::lse, "_lse", "lse"},
    {&DecodeVariants::treeMask, "_tree", "tree_mask"},
};
} // namespace

std::string DecodeVariants::nameSuffix() const {
  std::string suffix;
  for (const VariantRow &v : kVariants)
    if (this->*v.flag)
      suffix += v.suffix;
  return suffix;
}

bool DecodeVariants::enable(std::string_view key) {
  for (const VariantRow &v : kVariants)
    if (key == v.key) {
      this->*v.flag = true;
      return true;
    }
  return false;
}

const char *DecodeVariants::keysDoc() {
  return "window, soft_cap, alibi_slopes, sinks, lse, tree_mask";
}

std::string DecodeSpec::name() const {
  return "h" + std::to_string(numHeads) + "_kv" + std::to_string(numKVHeads) +
         "_d" + std::to_string(headDim) + "_p" + std::to_string(pageSize) +
         "_" + dtypeName(dtype) + "_" + layoutName(layout) + "_w" +
         std::to_string(numWarps) +
         (queryLen != 1 ? "_l" + std::to_string(queryLen) : "") +
         (kvQuant ? kvQuant->nameSuffix() : "") + variants.nameSuffix();
}

std::array<int64_t, 4> DecodeSpec::cacheShape(int64_t numPages) const {
  std::array<int64_t, 4> shape = {numPages, 0, 0, headDim};
  CacheDims dims = cacheDims(layout);
  shape[dims.page] = pageSize;
  shape[dims.kvHeads] = numKVHeads;
  return shape;
}

std::vector<int64_t> DecodeSpec::kvScaleShape(int64_t numPages) const {
  if (!kvQuant || kvQuant->scale == KVScaleKind::Tensor)
    return {};
  if (kvQuant->scale == KVScaleKind::Head)
    return {numKVHeads};
  std::array<int64_t, 4> shape = cacheShape(numPages);
  return {shape[0], shape[1], shape[2]};
}

std::string paged_attn::checkRowBytes(int64_t headDim, DType dtype) {
  int64_t rowBytes = headDim * int64_t(dtypeBytes(dtype));
  if (rowBytes % 16 == 0)
    return "";
  return "a row of head_dim (" + std::to_string(headDim) + ") '" +
         dtypeName(dtype) + "' elements is " + std::to_string(rowBytes) +
         " bytes; it must be a multiple of 16 bytes";
}

std::string DecodeSpec::validate() const {
  const std::pair<const char *, int64_t> sizes[] = {
      {"num_heads", numHeads},
      {"head_dim", headDim},
      {"num_kv_heads", numKVHeads},
      {"page_size", pageSize},
      {"num_warps", numWarps},
      {"query_len", queryLen}};
  for (auto [what, size] : sizes)
    if (size < 1)
      return std::string(what) + " must be at least 1, got " +
             std::to_string(size);
  const std::tuple<const char *, int64_t, int64_t> bounds[] = {
      {"num_heads", numHeads, kMaxNumHeads},
      {"page_size", pageSize, kMaxPageSize},
      {"query_len", queryLen, kMaxQueryLen}};
  for (auto [what, size, bound] : bounds)
    if (size > bound)
      return std::string(what) + " (" + std::to_string(size) +
             ") must be at most " + std::to_string(bound);
  if (numKVHeads > numHeads) {
    bool nhd = layout == Layout::NHD;
    return std::string("with layout ") + layoutName(layout) +
           ", num_kv_heads is 'k_cache' dim " +
           std::to_string(cacheDims(layout).kvHeads) + ": got " +
           std::to_string(numKVHeads) + ", more than num_heads (" +
           std::to_string(numHeads) + "); does the cache use layout " +
           (nhd ? "hnd" : "nhd") + "?";
  }
  if (numHeads % numKVHeads != 0)
    return "num_heads (" + std::to_string(numHeads) +
           ") must be a multiple of num_kv_heads (" +
           std::to_string(numKVHeads) + ")";
  if (!isDataDType(dtype))
    return std::string("the element type must be f16, bf16 or f32, got ") +
           dtypeName(dtype);
  if (headDim > kMaxHeadDim)
    return "head_dim (" + std::to_string(headDim) + ") must be at most " +
           std::to_string(kMaxHeadDim);
  // 16-byte rows make every row, and so every page, 16-byte aligned: rows
  // are loaded as 16-byte vectors.
  if (std::string message = checkRowBytes(headDim, dtype); !message.empty())
    return message;
  if (!kvQuant)
    return "";
  // The kernels widen fp8 to q's 16-bit type for its products.
  return checkKVQuant(*kvQuant, dtype, headDim, "an f16 or bf16 'q'");
}

std::string paged_attn::checkKVQuant(const KVQuant &kvQuant, DType dtype,
                                     int64_t headDim, const char *needs) {
  if (!isQuantizedCacheDType(kvQuant.dtype))
    return std::string("a quantised KV cache must be f8e4m3fn or f8e5m2, "
                       "got ") +
           dtypeName(kvQuant.dtype);
  if (dtypeBytes(dtype) != 2)
    return std::string("fp8 KV caches need ") + needs + ", got " +
           dtypeName(dtype);
  return checkRowBytes(headDim, kvQuant.dtype);
}

bool DecodeSpec::operator==(const DecodeSpec &o) const {
  return numHeads == o.numHeads && numKVHeads == o.numKVHeads &&
         headDim == o.headDim && pageSize == o.pageSize && dtype == o.dtype &&
         layout == o.layout && numWarps == o.numWarps &&
         variants == o.variants && queryLen == o.queryLen &&
         kvQuant == o.kvQuant;
}

void paged_attn::appendKVQuantConfigFields(
    const std::optional<KVQuant> &kvQuant, std::vector<ConfigField> *fields) {
  if (!kvQuant)
    return;
  fields->push_back({"kv_dtype", std::string(dtypeName(kvQuant->dtype))});
  fields->push_back({"kv_scale", std::string(kvScaleKindName(kvQuant->scale))});
}

std::vector<ConfigField> paged_attn::specConfigFields(const DecodeSpec &spec) {
  std::vector<ConfigField> fields = {
      {"name", spec.name()},
      {"num_heads", spec.numHeads},
      {"num_kv_heads", spec.numKVHeads},
      {"head_dim", spec.headDim},
      {"page_size", spec.pageSize},
      {"dtype", std::string(dtypeName(spec.dtype))},
      {"layout", std::string(layoutName(spec.layout))},
      {"num_warps", spec.numWarps}};
  // Only what a kernel has beyond plain decode (a query length other than
  // 1, the variants): plain decode's section is as it was.
  if (spec.queryLen != 1)
    fields.push_back({"query_len", spec.queryLen});
  appendKVQuantConfigFields(spec.kvQuant, &fields);
  for (const VariantRow &v : kVariants)
    if (spec.variants.*v.flag)
      fields.push_back({v.key, true});
  return fields;
}

std::string paged_attn::kvQuantFromConfig(const json::Value &config,
                                          std::optional<KVQuant> *kvQuant) {
  const json::Value *dtype = config.get("kv_dtype");
  const json::Value *scale = config.get("kv_scale");
  kvQuant->reset();
  if (!dtype && !scale)
    return "";
  std::optional<DType> parsedDType;
  std::optional<KVScaleKind> parsedScale;
  if (!dtype || !dtype->isString() ||
      !(parsedDType = parseDType(dtype->string)) ||
      !isQuantizedCacheDType(*parsedDType))
    return "config's 'kv_dtype' must be f8e4m3fn or f8e5m2";
  if (!scale || !scale->isString() ||
      !(parsedScale = parseKVScaleKind(scale->string)))
    return "config's 'kv_scale' must be tensor, head or token";
  *kvQuant = KVQuant{*parsedDType, *parsedScale};
  return "";
}

std::string paged_attn::specFromConfig(const json::Value &config,
                                       DecodeSpec *spec) {
  const char *const integers[] = {"num_heads", "num_kv_heads", "head_dim",
                                  "page_size", "num_warps"};
  int64_t *fields[] = {&spec->numHeads, &spec->numKVHeads, &spec->headDim,
                       &spec->pageSize, &spec->numWarps};
  for (size_t i = 0; i < std::size(integers); ++i)
    if (!json::getInteger(config, integers[i], fields[i]))
      return std::string("config has no integer '") + integers[i] + "'";
  const json::Value *dtype = config.get("dtype");
  const json::Value *layout = config.get("layout");
  std::optional<DType> parsedDType;
  std::optional<Layout> parsedLayout;
  if (!dtype || !dtype->isString() ||
      !(parsedDType = parseDType(dtype->string)))
    return "config has no dtype f16, bf16 or f32";
  if (!layout || !layout->isString() ||
      !(parsedLayout = parseLayout(layout->string)))
    return "config has no layout nhd or hnd";
  spec->dtype = *parsedDType;
  spec->layout = *parsedLayout;
  spec->queryLen = 1;
  if (config.get("query_len") &&
      !json::getInteger(config, "query_len", &spec->queryLen))
    return "config's 'query_len' must be an integer";
  if (std::string message = kvQuantFromConfig(config, &spec->kvQuant);
      !message.empty())
    return message;
  spec->variants = DecodeVariants();
  for (const VariantRow &v : kVariants) {
    const json::Value *flag = config.get(v.key);
    if (!flag)
      continue;
    if (!flag->isBool())
      return std::string("config's '") + v.key + "' must be a boolean";
    spec->variants.*v.flag = flag->boolean;
  }
  return spec->validate();
}

std::vector<ConfigField> paged_attn::mergeConfigFields(const MergeSpec &spec) {
  return {{"name", spec.name()},
          {"num_heads", spec.numHeads},
          {"head_dim", spec.headDim},
          {"dtype", std::string(dtypeName(spec.dtype))},
          {"partial_dtype", std::string(dtypeName(spec.partialDType))},
          {"natural_lse", spec.naturalLse},
          {"sinks", spec.sinks},
          {"lse", spec.lse}};
}

std::string paged_attn::mergeSpecFromConfig(const json::Value &config,
                                            MergeSpec *spec) {
  if (!json::getInteger(config, "num_heads", &spec->numHeads) ||
      !json::getInteger(config, "head_dim", &spec->headDim))
    return "merge config has no integer 'num_heads' and 'head_dim'";
  const std::pair<const char *, DType *> dtypes[] = {
      {"dtype", &spec->dtype}, {"partial_dtype", &spec->partialDType}};
  for (auto [key, field] : dtypes) {
    const json::Value *v = config.get(key);
    std::optional<DType> parsed;
    if (!v || !v->isString() || !(parsed = parseDType(v->string)))
      return std::string("merge config has no ") + key + " f16, bf16 or f32";
    *field = *parsed;
  }
  const std::pair<const char *, bool *> flags[] = {
      {"natural_lse", &spec->naturalLse},
      {"sinks", &spec->sinks},
      {"lse", &spec->lse}};
  for (auto [key, field] : flags) {
    const json::Value *v = config.get(key);
    if (!v || !v->isBool())
      return std::string("merge config has no boolean '") + key + "'";
    *field = v->boolean;
  }
  return spec->validate();
}
