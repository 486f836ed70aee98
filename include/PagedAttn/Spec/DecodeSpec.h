//===- DecodeSpec.h - what one paged decode is, for every layer -*- C++ -*-===//
//
// The facts about a paged decode that the verifier, the kernel builders, the
// compiler's manifest, the runtime, the C API, Python and the tools share:
// its sizes, dtype and layout, its name, the op's rules on them (with the
// verifier's messages), where a layout keeps pages and KV heads, and the
// manifest's config section. Free of LLVM and MLIR: the runtime links it
// without them.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_SPEC_DECODESPEC_H
#define PAGEDATTN_SPEC_DECODESPEC_H

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace paged_attn {

/// Element types of the op's operands and kernel parameters: the caches, q
/// and out are one of the floating-point ones, the page table and lengths
/// I32 (I64: the page-table check's result).
/// I8 is a multi-token decode's tree mask (a nonzero byte lets a key
/// through; a bool tensor's bytes are one). F8E4M3FN and F8E5M2 (OCP's fp8
/// formats, MLIR's f8E4M3FN and f8E5M2, torch's float8_e4m3fn and
/// float8_e5m2) are quantised KV caches' (KVQuant).
enum class DType { F16, BF16, F32, I32, I64, I8, F8E4M3FN, F8E5M2 };

/// "f16", "bf16", "f32", "i32", "i64", "i8", "f8e4m3fn", "f8e5m2".
const char *dtypeName(DType dtype);
size_t dtypeBytes(DType dtype);
/// The dtype named `name`.
std::optional<DType> parseDType(std::string_view name);
/// Whether q, the caches and out may have this dtype.
bool isDataDType(DType dtype);
/// Whether KV caches may be quantised to this dtype (the fp8 formats).
bool isQuantizedCacheDType(DType dtype);

/// How a KV cache orders a page's tokens and KV heads.
enum class Layout {
  NHD, ///< [num_pages, page_size, num_kv_heads, head_dim]
  HND, ///< [num_pages, num_kv_heads, page_size, head_dim]
};

/// "nhd", "hnd".
const char *layoutName(Layout layout);
std::optional<Layout> parseLayout(std::string_view name);

/// Which dims of a 4-D cache hold the page's tokens and the KV heads (dim 0
/// is the page pool, dim 3 head_dim) under `layout`.
struct CacheDims {
  int page;
  int kvHeads;
};
CacheDims cacheDims(Layout layout);
/// The index of (page, slot in the page, KV head, column) in a cache laid
/// out as `layout`; T is whatever the caller indexes with.
template <typename T>
std::array<T, 4> cacheIndex(Layout layout, T page, T slot, T kvHead, T column) {
  std::array<T, 4> index = {page, T(), T(), column};
  CacheDims dims = cacheDims(layout);
  index[dims.page] = slot;
  index[dims.kvHeads] = kvHead;
  return index;
}
/// "[num_pages, page_size, num_kv_heads, head_dim]" or the hnd order.
const char *cacheShapeDoc(Layout layout);

/// The attention variants a decode's kernels are specialised on. Their
/// values (the window's length, the cap, the slopes and sink logits) are
/// kernel arguments, so one kernel serves every value; the op's semantics
/// of each are in its documentation (docs/Dialects/PagedAttnDialect.md).
struct DecodeVariants {
  bool window = false;  ///< only the last W keys: t >= seq_len - W
  bool softCap = false; ///< s <- c * tanh(s / c)
  bool alibi = false;   ///< s <- s + slope[h] * (t - (seq_len - 1))
  bool sinks = false;   ///< a per-head logit in the softmax denominator
  bool lse = false;     ///< writes the log-sum-exp of the attended logits
  /// Multi-token decode only: a [batch, L, L] mask of which new tokens each
  /// new query may attend (a draft tree).
  bool treeMask = false;

  bool any() const {
    return window || softCap || alibi || sinks || lse || treeMask;
  }
  /// "_win_cap_alibi_sinks_lse_tree" for those set; empty for plain
  /// decode.
  std::string nameSuffix() const;
  /// Turns on the variant whose manifest key (and Python keyword) is `key`:
  /// "window", "soft_cap", "alibi_slopes", "sinks", "lse" or "tree_mask";
  /// false for any other.
  bool enable(std::string_view key);
  /// The keys, comma-separated, for messages.
  static const char *keysDoc();
  bool operator==(const DecodeVariants &o) const {
    return window == o.window && softCap == o.softCap && alibi == o.alibi &&
           sinks == o.sinks && lse == o.lse && treeMask == o.treeMask;
  }
};

/// Where a quantised cache's dequantisation scales are: one f32 for the
/// whole cache ([]), one per KV head ([num_kv_heads]), or one per token and
/// KV head in a scale cache laid out as the KV cache without head_dim
/// ([num_pages, page_size, num_kv_heads] under nhd) and read through the
/// same page table.
enum class KVScaleKind { Tensor, Head, Token };

/// "tensor", "head", "token".
const char *kvScaleKindName(KVScaleKind kind);
std::optional<KVScaleKind> parseKVScaleKind(std::string_view name);

/// A KV cache stored in a narrower type than q: element x of K (V) means
/// x * k_scale (x * v_scale), the scale taken at the granularity `scale`
/// says. K and V have their own scales of the same granularity.
struct KVQuant {
  DType dtype = DType::F8E4M3FN;
  KVScaleKind scale = KVScaleKind::Tensor;

  /// "_f8e4m3fn_tensor": part of a decode's name.
  std::string nameSuffix() const;
  bool operator==(const KVQuant &o) const {
    return dtype == o.dtype && scale == o.scale;
  }
};

/// The rule that a row of `headDim` elements of `dtype` is a multiple of 16
/// bytes (rows are moved as 16-byte vectors, and so every row and page is
/// 16-byte aligned): empty when it holds, else the message.
std::string checkRowBytes(int64_t headDim, DType dtype);

/// The rules on caches quantised as `kvQuant` read or written with values
/// of `dtype` (q's): an fp8 format, a 16-bit `dtype` (else "fp8 KV caches
/// need " + `needs`), rows of `headDim` fp8 elements of 16 bytes. Empty
/// when they hold, else the message.
std::string checkKVQuant(const KVQuant &kvQuant, DType dtype, int64_t headDim,
                         const char *needs);

/// One decode: the sizes and dtype its kernels are specialised on.
struct DecodeSpec {
  int64_t numHeads = 0, numKVHeads = 0, headDim = 0, pageSize = 0;
  DType dtype = DType::BF16;
  Layout layout = Layout::NHD;
  int64_t numWarps = 4;
  DecodeVariants variants;
  /// New query tokens per sequence (L): 1 for a decode whose q is
  /// [batch, num_heads, head_dim]; a q of [batch, L, num_heads, head_dim]
  /// is a multi-token decode (speculative decoding's verification step),
  /// its queries causal among the L new tokens.
  int64_t queryLen = 1;
  /// The caches' quantisation; unset, the caches have q's dtype.
  std::optional<KVQuant> kvQuant;

  /// The largest sizes the op accepts: head_dim as the kernels are proven
  /// (the GPU test matrix runs every head_dim up to it); query heads and
  /// page size far beyond any model, so that no launch or index overflows.
  static constexpr int64_t kMaxHeadDim = 256;
  static constexpr int64_t kMaxNumHeads = 4096;
  static constexpr int64_t kMaxPageSize = 65536;
  /// New tokens a multi-token decode verifies at once: up to 16 (draft
  /// trees and MTP heads verify 2 to 8 today).
  static constexpr int64_t kMaxQueryLen = 16;

  /// The spec of q [batch, num_heads, head_dim] and a cache `cacheShape`
  /// laid out as `layout`, unchecked (validate() says whether it is one).
  static DecodeSpec fromShapes(const int64_t qShape[3],
                               const int64_t cacheShape[4], DType dtype,
                               Layout layout);

  /// "h32_kv8_d128_p16_bf16_nhd_w4", then "_l<L>" for a multi-token
  /// decode, then the quantisation's suffix ("_f8e4m3fn_head"), then the
  /// variants' suffix ("..._w4_l4_win_sinks"): kernels and manifests are
  /// named by it.
  std::string name() const;
  /// Query heads per KV head.
  int64_t groupSize() const { return numHeads / numKVHeads; }
  /// Whether q, out and the log-sum-exp have the new queries as dim 1
  /// ([batch, L, num_heads, ...]): a multi-token decode, or one with a tree
  /// mask (L = 1 with a mask still reads it). A rank-4 q of L = 1 without a
  /// mask is a single-token decode.
  bool hasQueryDim() const { return queryLen != 1 || variants.treeMask; }
  /// Rows of the split-KV partials per sequence: one per (query, head),
  /// query-major.
  int64_t partialRows() const { return queryLen * numHeads; }
  size_t elementBytes() const { return dtypeBytes(dtype); }
  /// The caches' element type: kvQuant's, else q's.
  DType cacheDType() const { return kvQuant ? kvQuant->dtype : dtype; }
  /// [num_pages, ...] of a cache of `numPages` pages under the layout.
  std::array<int64_t, 4> cacheShape(int64_t numPages) const;
  /// The shape of k_scale and v_scale (kvQuant only): [], [num_kv_heads],
  /// or the cache's first three dims (`numPages` pages).
  std::vector<int64_t> kvScaleShape(int64_t numPages) const;

  /// The op's rules on these sizes and dtype: empty when they hold, else
  /// the first broken rule's message (the verifier's): sizes at least 1
  /// and within the bounds above, num_kv_heads at most num_heads (else a
  /// hint about the layout), a multiple of it, a floating-point dtype,
  /// rows of a multiple of 16 bytes, a query_len in [1, kMaxQueryLen]; a
  /// quantised cache in fp8 with a 16-bit q, its rows of 16 bytes too.
  std::string validate() const;

  bool operator==(const DecodeSpec &other) const;
  bool operator!=(const DecodeSpec &other) const { return !(*this == other); }
};

/// A field of a manifest's config section: a key and an integer, string or
/// boolean value. The compiler writes these and the runtime reads them back.
using ConfigValue = std::variant<int64_t, std::string, bool>;
using ConfigField = std::pair<std::string, ConfigValue>;

namespace json {
struct Value;
} // namespace json

/// A quantisation's fields of a manifest's config section ("kv_dtype",
/// "kv_scale"; none without one), and reading them back (both or neither):
/// empty, or what is malformed.
void appendKVQuantConfigFields(const std::optional<KVQuant> &kvQuant,
                               std::vector<ConfigField> *fields);
std::string kvQuantFromConfig(const json::Value &config,
                              std::optional<KVQuant> *kvQuant);

/// The spec's part of a manifest's config section.
std::vector<ConfigField> specConfigFields(const DecodeSpec &spec);

/// Reads the fields specConfigFields writes from a manifest's config object
/// into `spec`; returns empty, or what is missing or malformed.
std::string specFromConfig(const json::Value &config, DecodeSpec *spec);

} // namespace paged_attn

#endif // PAGEDATTN_SPEC_DECODESPEC_H
