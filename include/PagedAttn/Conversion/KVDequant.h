//===- KVDequant.h - what fp8 cache elements stand for ----------*- C++ -*-===//
//
// An fp8 KV cache's element x stands for x * scale, the scale per tensor, KV
// head or token (KVScaleKind). Both halves are written once here and
// emitted by both GPU decode kernels and by the loops lowering, so the
// reference cannot drift from the kernels: the formats' values as f32
// (every code exactly, NaNs and infinities included), and which scale
// applies to a cache row.
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

} // namespace paged_attn
} // namespace mlir

#endif // PAGEDATTN_CONVERSION_KVDEQUANT_H
