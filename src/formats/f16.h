#pragma once
// IEEE binary16: bias 15, max 65504, subnormals down to 2^-24.
#include <cmath>
#include <cstdint>

#include "formats/float_bits.h"

namespace fp4kit {

struct F16 {
  uint16_t bits = 0;

  // Round to nearest even; overflow gives Inf; NaN stays NaN (quiet, sign kept).
  static F16 from_float(float f) {
    const uint32_t u = f32_bits(f);
    const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
    const uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return F16{static_cast<uint16_t>(sign | 0x7E00u | ((a >> 13) & 0x3FFu))};
    if (a >= 0x477FF000u) return F16{static_cast<uint16_t>(sign | 0x7C00u)};  // >= 65520 rounds to Inf
    if (a < 0x38800000u) {  // below 2^-14: subnormal grid of step 2^-24
      const float mag = f32_from_bits(a);
      return F16{static_cast<uint16_t>(sign | static_cast<uint16_t>(std::nearbyint(mag * 0x1p24f)))};
    }
    uint32_t r = a + 0xFFFu + ((a >> 13) & 1u);
    r = (r >> 13) - (112u << 10);
    return F16{static_cast<uint16_t>(sign | r)};
  }

  float to_float() const {
    const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
    const uint32_t exp = (bits >> 10) & 0x1Fu;
    const uint32_t man = bits & 0x3FFu;
    if (exp == 0x1F) return f32_from_bits(sign | 0x7F800000u | (man << 13));
    if (exp == 0) {
      const float mag = static_cast<float>(man) * 0x1p-24f;
      return sign ? -mag : mag;
    }
    return f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
  }
};

}  // namespace fp4kit
