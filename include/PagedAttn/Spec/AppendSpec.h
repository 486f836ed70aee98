//===- AppendSpec.h - what one paged append is, for every layer -*- C++ -*-===//
//
// paged_attn.append writes T new tokens' K and V rows into paged caches at
// given slots, quantising them where the caches are fp8. Its sizes, dtypes,
// name, rules, kernel parameters and manifest fields, shared by the
// verifier, the kernel builder, the compiler, the runtime, the C API and
// Python. Free of LLVM and MLIR.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_SPEC_APPENDSPEC_H
#define PAGEDATTN_SPEC_APPENDSPEC_H

#include "PagedAttn/Spec/DecodeSpec.h"
#include "PagedAttn/Spec/KernelABI.h"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace paged_attn {

/// One append: new rows k and v of [T, num_kv_heads, head_dim] in `dtype`
/// (q's), written to caches laid out as `layout` with pages of `pageSize`
/// tokens, in `dtype` or, quantised, in kvQuant's fp8 format with its
/// scales.
struct AppendSpec {
  int64_t numKVHeads = 0, headDim = 0, pageSize = 0;
  DType dtype = DType::BF16;
  Layout layout = Layout::NHD;
  /// The caches' quantisation; unset, the caches have `dtype`.
  std::optional<KVQuant> kvQuant;

  /// The spec of an append that fills the caches `decode` reads.
  static AppendSpec forDecode(const DecodeSpec &decode);

  /// "kv8_d128_p16_bf16_nhd", then the quantisation's suffix
  /// ("_f8e4m3fn_token"): the kernel and manifest entry are named by it.
  std::string name() const;
  DType cacheDType() const { return kvQuant ? kvQuant->dtype : dtype; }
  /// [num_pages, ...] of a cache of `numPages` pages under the layout.
  std::array<int64_t, 4> cacheShape(int64_t numPages) const;
  /// The shape of k_scale and v_scale (kvQuant only), as a decode of these
  /// caches has them: [], [num_kv_heads], or the cache's first three dims.
  std::vector<int64_t> kvScaleShape(int64_t numPages) const;

  /// The op's rules on these sizes and dtypes: empty when they hold, else
  /// the first broken rule's message (the verifier's): sizes at least 1
  /// and within DecodeSpec's bounds, a floating-point dtype, rows of a
  /// multiple of 16 bytes; quantised caches in fp8 with 16-bit k and v,
  /// their rows of 16 bytes too.
  std::string validate() const;

  bool operator==(const AppendSpec &o) const {
    return numKVHeads == o.numKVHeads && headDim == o.headDim &&
           pageSize == o.pageSize && dtype == o.dtype && layout == o.layout &&
           kvQuant == o.kvQuant;
  }
  bool operator!=(const AppendSpec &o) const { return !(*this == o); }
};

/// The kernel paged_attn.append lowers to: "paged_attn_append_" + name.
std::string appendOpKernelName(const AppendSpec &spec);

/// k and v ([T, num_kv_heads, head_dim] of the spec's dtype), slot_mapping
/// (i64 [T]), k_cache and v_cache (the cache dtype and shape, written);
/// then, for quantised caches, k_scale and v_scale (f32,
/// AppendSpec::kvScaleShape: read per tensor and head, written per token).
std::vector<KernelParam> appendKernelParams(const AppendSpec &spec);

/// The append's config section of a manifest entry, and reading it back
/// (empty, or what is missing, malformed or against the op's rules).
std::vector<ConfigField> appendConfigFields(const AppendSpec &spec);
std::string appendSpecFromConfig(const json::Value &config, AppendSpec *spec);

} // namespace paged_attn

#endif // PAGEDATTN_SPEC_APPENDSPEC_H
