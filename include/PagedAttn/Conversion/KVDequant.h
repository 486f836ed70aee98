//===- KVDequant.h - what fp8 cache elements stand for ----------*- C++ -*-===//
//
// An fp8 KV cache's element x stands for x * scale, the scale per tensor, KV
// head or token (KVScaleKind). Both directions are written once here and
// emitted by the GPU kernels and by the loops lowering, so the reference
// cannot drift from the kernels: the formats' values as f32 (every code
// exactly, NaNs and infinities included), which scale applies to a cache
// row, and how paged_attn.append turns values into codes (a per-token
// scale from the row's magnitude, the rounding and saturation).
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_CONVERSION_KVDEQUANT_H
#define PAGEDATTN_CONVERSION_KVDEQUANT_H

#include "PagedAttn/Dialect/PagedAttn/IR/DecodeSpec.h"

#include "mlir/IR/ImplicitLocOpBuilder.h"

namespace mlir {
namespace paged_attn {

/// The values of fp8 codes of `format` (F8E4M3FN or F8E5M2) as f16, which
/// holds every code exactly: `codes` is a scalar or vector of the format's
/// MLIR type or of i8. Arith ops only: E5M2 is the top byte of an f16;
/// E4M3FN's fields are moved into an f16 whose exponent is 8 too small and
/// multiplied by 2^8, its NaN code selected apart. The kernels on chips
/// with fp8 conversion instructions use those instead (the same values).
Value fp8ToF16(ImplicitLocOpBuilder &b, Value codes,
               ::paged_attn::DType format);
/// fp8ToF16 widened to f32.
Value fp8ToF32(ImplicitLocOpBuilder &b, Value codes,
               ::paged_attn::DType format);

/// The scale (f32) of cache row (page, slot, kvHead) in `scales`, a memref
/// of f32 of `spec.kvScaleShape`: its one element per tensor, element
/// `kvHead` per KV head, the row's own per token (page and slot unused
/// otherwise; index values).
Value loadKVScale(ImplicitLocOpBuilder &b, const DecodeSpec &spec, Value scales,
                  Value page, Value slot, Value kvHead);
/// loadKVScale for caches laid out as `layout` with scales of `kind`.
Value loadKVScale(ImplicitLocOpBuilder &b, ::paged_attn::KVScaleKind kind,
                  ::paged_attn::Layout layout, Value scales, Value page,
                  Value slot, Value kvHead);

/// The per-token scale of a row whose largest magnitude is `amax` (f32):
/// max(amax / fmax, 2^-126), fmax the format's largest finite value. The
/// floor keeps an all-zero row's reciprocal finite; NaN propagates.
Value tokenScale(ImplicitLocOpBuilder &b, Value amax,
                 ::paged_attn::DType format);

/// The codes of `format` nearest to `values` (f32, scalar or vector), ties
/// to even, past the largest finite value saturated to it (infinities too),
/// NaN to a NaN code: i8 of the same shape. Integer arithmetic only; the
/// kernels use cvt.rn.satfinite where the chip has it (the same codes).
Value fp8FromF32(ImplicitLocOpBuilder &b, Value values,
                 ::paged_attn::DType format);

} // namespace paged_attn
} // namespace mlir

#endif // PAGEDATTN_CONVERSION_KVDEQUANT_H
