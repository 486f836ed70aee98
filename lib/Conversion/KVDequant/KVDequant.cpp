//===- KVDequant.cpp - what a quantised cache's elements stand for --------===//

#include "PagedAttn/Conversion/KVDequant.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/TypeUtilities.h"

#include <limits>

using namespace mlir;
using namespace mlir::paged_attn;

/// `type` with its element type replaced (scalars and vectors alike).
static Type withElementType(Type type, Type element) {
  if (auto vector = dyn_cast<VectorType>(type))
    return vector.clone(element);
  return element;
}

/// A constant of `type` (scalar or vector splat).
static Value constantOf(ImplicitLocOpBuilder &b, Type type, Attribute value) {
  if (auto vector = dyn_cast<VectorType>(type))
    return arith::ConstantOp::create(b, DenseElementsAttr::get(vector, value));
  return arith::ConstantOp::create(b, cast<TypedAttr>(value));
}

static Value intConstant(ImplicitLocOpBuilder &b, Type type, int64_t v) {
  Type element = getElementTypeOrSelf(type);
  return constantOf(b, type, b.getIntegerAttr(element, v));
}

Value mlir::paged_attn::fp8ToF16(ImplicitLocOpBuilder &b, Value codes,
                                 ::paged_attn::DType format) {
  Type type = codes.getType();
  Type i8 = withElementType(type, b.getI8Type());
  Type i16 = withElementType(type, b.getI16Type());
  Type f16 = withElementType(type, b.getF16Type());
  Value bits = getElementTypeOrSelf(type).isInteger(8)
                   ? codes
                   : arith::BitcastOp::create(b, i8, codes).getResult();
  Value wide = arith::ExtUIOp::create(b, i16, bits);
  if (format == ::paged_attn::DType::F8E5M2) {
    // E5M2 has f16's exponent and the top two of its mantissa bits.
    return arith::BitcastOp::create(
        b, f16, arith::ShLIOp::create(b, wide, intConstant(b, i16, 8)));
  }
  // E4M3FN: sign to bit 15; exponent and mantissa to f16's exponent and
  // mantissa fields (bits 7 up), where they read as the value times 2^-8
  // (bias 15 instead of 7; E4M3FN's subnormals are f16 subnormals), then
  // scaled back exactly. Its NaN codes would read as 480.
  Value sign = arith::ShLIOp::create(
      b, arith::AndIOp::create(b, wide, intConstant(b, i16, 0x80)),
      intConstant(b, i16, 8));
  Value magnitude = arith::AndIOp::create(b, wide, intConstant(b, i16, 0x7f));
  Value half = arith::BitcastOp::create(
      b, f16,
      arith::OrIOp::create(
          b, sign,
          arith::ShLIOp::create(b, magnitude, intConstant(b, i16, 7))));
  Value value = arith::MulFOp::create(
      b, half, constantOf(b, f16, b.getF16FloatAttr(256.0)));
  Value isNaN = arith::CmpIOp::create(b, arith::CmpIPredicate::eq, magnitude,
                                      intConstant(b, i16, 0x7f));
  return arith::SelectOp::create(
      b, isNaN,
      constantOf(b, f16,
                 b.getF16FloatAttr(std::numeric_limits<float>::quiet_NaN())),
      value);
}

Value mlir::paged_attn::fp8ToF32(ImplicitLocOpBuilder &b, Value codes,
                                 ::paged_attn::DType format) {
  Type f32 = withElementType(codes.getType(), b.getF32Type());
  return arith::ExtFOp::create(b, f32, fp8ToF16(b, codes, format));
}

Value mlir::paged_attn::loadKVScale(ImplicitLocOpBuilder &b,
                                    const DecodeSpec &spec, Value scales,
                                    Value page, Value slot, Value kvHead) {
  using ::paged_attn::KVScaleKind;
  switch (spec.kvQuant->scale) {
  case KVScaleKind::Tensor:
    return memref::LoadOp::create(b, scales, ValueRange{});
  case KVScaleKind::Head:
    return memref::LoadOp::create(b, scales, ValueRange{kvHead});
  case KVScaleKind::Token: {
    // The KV cache's index of the row, without head_dim.
    std::array<Value, 4> index =
        ::paged_attn::cacheIndex(spec.layout, page, slot, kvHead, Value());
    return memref::LoadOp::create(b, scales,
                                  ValueRange{index[0], index[1], index[2]});
  }
  }
  return Value();
}
