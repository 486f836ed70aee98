//===- Float8.h - the fp8 formats on the host -------------------*- C++ -*-===//
//
// OCP's 8-bit floating-point formats as quantised KV caches store them:
// E4M3FN (4 exponent bits, bias 7, 3 mantissa bits, no infinities, NaN at
// S.1111.111, largest finite 448) and E5M2 (5 and 15 and 2, IEEE-like:
// infinities at S.11111.00, NaNs above, largest finite 57344). The
// reference the kernels and the loops lowering are checked against: values
// are computed from the fields with ldexp, not by moving bits.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_TESTING_FLOAT8_H
#define PAGEDATTN_TESTING_FLOAT8_H

#include "PagedAttn/Spec/DecodeSpec.h"

#include <cmath>
#include <cstdint>
#include <limits>

namespace paged_attn {

/// A format's fields.
struct Fp8Format {
  int exponentBits, mantissaBits, bias;
  /// E5M2: the all-ones exponent holds infinities and NaNs (IEEE). E4M3FN:
  /// it holds normal numbers, and only S.1111.111 is NaN.
  bool ieeeSpecials;

  static Fp8Format of(DType dtype) {
    return dtype == DType::F8E5M2 ? Fp8Format{5, 2, 15, true}
                                  : Fp8Format{4, 3, 7, false};
  }
  int maxExponentField() const { return (1 << exponentBits) - 1; }
  /// The largest finite value: 448 (E4M3FN), 57344 (E5M2).
  double maxFinite() const {
    int topExponent =
        ieeeSpecials ? maxExponentField() - 1 : maxExponentField();
    // E4M3FN's top binade loses its all-ones mantissa to NaN.
    int topMantissa = (1 << mantissaBits) - (ieeeSpecials ? 1 : 2);
    return std::ldexp(1.0 + double(topMantissa) / (1 << mantissaBits),
                      topExponent - bias);
  }
};

/// The value of `code` in `dtype` (F8E4M3FN or F8E5M2).
inline double fp8ToDouble(uint8_t code, DType dtype) {
  Fp8Format f = Fp8Format::of(dtype);
  bool negative = code & 0x80;
  int exponent = (code >> f.mantissaBits) & f.maxExponentField();
  int mantissa = code & ((1 << f.mantissaBits) - 1);
  double magnitude;
  if (f.ieeeSpecials && exponent == f.maxExponentField())
    magnitude = mantissa == 0 ? std::numeric_limits<double>::infinity()
                              : std::numeric_limits<double>::quiet_NaN();
  else if (!f.ieeeSpecials && exponent == f.maxExponentField() &&
           mantissa == (1 << f.mantissaBits) - 1)
    magnitude = std::numeric_limits<double>::quiet_NaN();
  else if (exponent == 0) // subnormal: no implicit one
    magnitude = std::ldexp(double(mantissa), 1 - f.bias - f.mantissaBits);
  else
    magnitude = std::ldexp(double(mantissa + (1 << f.mantissaBits)),
                           exponent - f.bias - f.mantissaBits);
  return negative ? -magnitude : magnitude;
}

/// `x` rounded to the nearest value of `dtype` (ties to the even code).
/// Past the largest finite value: that value when `saturate` (as quantising
/// kernels do), else NaN (E4M3FN) or infinity (E5M2), as a cast would. NaN
/// gives the NaN code with the sign bit clear.
inline uint8_t doubleToFp8(double x, DType dtype, bool saturate) {
  Fp8Format f = Fp8Format::of(dtype);
  if (std::isnan(x))
    return 0x7f; // a NaN in both formats

  uint8_t sign = std::signbit(x) ? 0x80 : 0;
  double magnitude = std::fabs(x);
  int minExponent = 1 - f.bias; // of the smallest normal binade
  int exponent = magnitude == 0.0 ? minExponent : std::ilogb(magnitude);
  if (exponent < minExponent)
    exponent = minExponent;
  // Round to a multiple of the binade's quantum, ties to even.
  double quantum = std::ldexp(1.0, exponent - f.mantissaBits);
  double steps = std::nearbyint(magnitude / quantum);
  double rounded = steps * quantum;
  if (rounded > f.maxFinite() || std::isinf(magnitude)) {
    if (saturate)
      rounded = f.maxFinite();
    else
      return f.ieeeSpecials ? uint8_t(sign | 0x7c) : uint8_t(sign | 0x7f);
  }
  if (rounded == 0.0)
    return sign;
  int e = std::ilogb(rounded);
  if (e < minExponent) // subnormal
    return uint8_t(
        sign | int(rounded / std::ldexp(1.0, minExponent - f.mantissaBits)));
  int mantissa =
      int(std::ldexp(rounded, f.mantissaBits - e)) - (1 << f.mantissaBits);
  return uint8_t(sign | ((e + f.bias) << f.mantissaBits) | mantissa);
}

} // namespace paged_attn

#endif // PAGEDATTN_TESTING_FLOAT8_H
