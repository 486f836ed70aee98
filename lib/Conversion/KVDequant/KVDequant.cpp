//===- KVDequant.cpp - what a quantised cache's elements stand for --------===//

#include "PagedAttn/Conversion/KVDequant.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/TypeUtilities.h"

#include <cstring>
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
  return loadKVScale(b, spec.kvQuant->scale, spec.layout, scales, page, slot,
                     kvHead);
}

Value mlir::paged_attn::loadKVScale(ImplicitLocOpBuilder &b,
                                    ::paged_attn::KVScaleKind kind,
                                    ::paged_attn::Layout layout, Value scales,
                                    Value page, Value slot, Value kvHead) {
  using ::paged_attn::KVScaleKind;
  switch (kind) {
  case KVScaleKind::Tensor:
    return memref::LoadOp::create(b, scales, ValueRange{});
  case KVScaleKind::Head:
    return memref::LoadOp::create(b, scales, ValueRange{kvHead});
  case KVScaleKind::Token: {
    // The KV cache's index of the row, without head_dim.
    std::array<Value, 4> index =
        ::paged_attn::cacheIndex(layout, page, slot, kvHead, Value());
    return memref::LoadOp::create(b, scales,
                                  ValueRange{index[0], index[1], index[2]});
  }
  }
  return Value();
}

/// The format's fields and its largest finite value's code (S.1111.110 for
/// E4M3FN, S.11110.11 for E5M2).
namespace {
struct Fp8Fields {
  int mantissaBits, bias, maxFiniteCode;
  float maxFinite;

  static Fp8Fields of(::paged_attn::DType format) {
    if (format == ::paged_attn::DType::F8E5M2)
      return {2, 15, 0x7b, 57344.0f};
    return {3, 7, 0x7e, 448.0f};
  }
};
} // namespace

Value mlir::paged_attn::tokenScale(ImplicitLocOpBuilder &b, Value amax,
                                   ::paged_attn::DType format) {
  Type f32 = amax.getType();
  Value scale = arith::DivFOp::create(
      b, amax,
      constantOf(b, f32, b.getF32FloatAttr(Fp8Fields::of(format).maxFinite)));
  return arith::MaximumFOp::create(
      b, scale, constantOf(b, f32, b.getF32FloatAttr(0x1p-126f)));
}

Value mlir::paged_attn::fp8FromF32(ImplicitLocOpBuilder &b, Value values,
                                   ::paged_attn::DType format) {
  Fp8Fields f = Fp8Fields::of(format);
  Type i32 = withElementType(values.getType(), b.getI32Type());
  auto c = [&](int64_t v) { return intConstant(b, i32, v); };
  using P = arith::CmpIPredicate;
  Value bits = arith::BitcastOp::create(b, i32, values);
  Value sign =
      arith::AndIOp::create(b, arith::ShRUIOp::create(b, bits, c(24)), c(0x80));
  Value magnitude = arith::AndIOp::create(b, bits, c(0x7fffffff));
  // The f32 exponent e; below the format's smallest normal binade the
  // quantum stays that of its subnormals.
  Value biasedExponent = arith::ShRUIOp::create(b, magnitude, c(23));
  Value exponent = arith::SubIOp::create(b, biasedExponent, c(127));
  Value subnormalShift = arith::MaxSIOp::create(
      b, c(0), arith::SubIOp::create(b, c(1 - f.bias), exponent));
  // Dropping 25 bits or more of a 24-bit significand leaves less than half
  // a quantum: zero. The clamp keeps every shift below 32.
  Value shift = arith::MinSIOp::create(
      b, arith::AddIOp::create(b, c(23 - f.mantissaBits), subnormalShift),
      c(25));
  Value implicitOne = arith::SelectOp::create(
      b, arith::CmpIOp::create(b, P::ne, biasedExponent, c(0)), c(1 << 23),
      c(0));
  Value significand = arith::OrIOp::create(
      b, arith::AndIOp::create(b, magnitude, c(0x7fffff)), implicitOne);
  // Round the significand to a multiple of 2^shift, ties to even: `quanta`
  // counts the format's quanta in the binade.
  Value quanta = arith::ShRUIOp::create(b, significand, shift);
  Value one = c(1);
  Value remainder = arith::AndIOp::create(
      b, significand,
      arith::SubIOp::create(b, arith::ShLIOp::create(b, one, shift), one));
  Value half =
      arith::ShLIOp::create(b, one, arith::SubIOp::create(b, shift, one));
  Value odd = arith::CmpIOp::create(
      b, P::ne, arith::AndIOp::create(b, quanta, one), c(0));
  Value roundUp = arith::OrIOp::create(
      b, arith::CmpIOp::create(b, P::ugt, remainder, half),
      arith::AndIOp::create(b, arith::CmpIOp::create(b, P::eq, remainder, half),
                            odd));
  quanta =
      arith::AddIOp::create(b, quanta, arith::ExtUIOp::create(b, i32, roundUp));
  // The binade's first code plus its quanta: a carry into the next binade
  // (quanta 2^(M+1)) lands on that binade's first code.
  Value binade = arith::SubIOp::create(
      b,
      arith::MaxSIOp::create(b, arith::AddIOp::create(b, exponent, c(f.bias)),
                             one),
      one);
  Value code = arith::AddIOp::create(
      b, arith::ShLIOp::create(b, binade, c(f.mantissaBits)), quanta);
  // Past the largest finite value (infinity included): saturate.
  int32_t maxFiniteBits;
  std::memcpy(&maxFiniteBits, &f.maxFinite, sizeof(float));
  code = arith::SelectOp::create(
      b, arith::CmpIOp::create(b, P::ugt, magnitude, c(maxFiniteBits)),
      c(f.maxFiniteCode), code);
  code = arith::OrIOp::create(b, code, sign);
  Value isNaN = arith::CmpIOp::create(b, P::ugt, magnitude, c(0x7f800000));
  code = arith::SelectOp::create(b, isNaN, c(0x7f), code);
  return arith::TruncIOp::create(
      b, withElementType(values.getType(), b.getI8Type()), code);
}
