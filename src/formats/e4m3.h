#pragma once
// FP8 E4M3FN: bias 7, no infinities, 0x7F/0xFF are NaN, max finite 448, min subnormal 2^-9.
#include <cmath>
#include <cstdint>

#include "formats/float_bits.h"

namespace fp4kit {

struct E4M3 {
  uint8_t bits = 0;

  static constexpr float kMax = 448.0f;
  static constexpr float kMinSubnormal = 0x1p-9f;

  // PyTorch's float -> float8_e4m3fn cast: round to nearest even; magnitudes at or above 480
  // (and Inf, NaN) give NaN 0x7F with the input's sign, so 464 (a tie) -> 448 but 465 -> NaN.
  static E4M3 from_float(float f) {
    uint32_t u = f32_bits(f);
    const uint32_t sign = u & 0x80000000u;
    u ^= sign;
    uint32_t code;
    if (u >= 0x43F00000u) {  // 480.0f, +inf, NaN
      code = 0x7F;
    } else if (u < 0x3C800000u) {  // below 2^-6: subnormal grid of step 2^-9, RNE
      code = static_cast<uint32_t>(std::nearbyint(f32_from_bits(u) * 512.0f));
    } else {  // normal: drop 20 mantissa bits with round-half-to-even, rebias 127 -> 7
      u += 0x7FFFFu + ((u >> 20) & 1u);
      code = (u >> 20) - (120u << 3);
    }
    return E4M3{static_cast<uint8_t>(code | (sign >> 24))};
  }

  // The cast after a clamp to [-448, 448] (compressed-tensors, saturating kernels).
  static E4M3 from_float_saturate(float f) {
    if (f > kMax) f = kMax;
    if (f < -kMax) f = -kMax;
    return from_float(f);
  }

  float to_float() const {
    const uint32_t sign = static_cast<uint32_t>(bits & 0x80) << 24;
    const uint32_t exp = (bits >> 3) & 0xF;
    const uint32_t man = bits & 0x7;
    // NaN decodes to 0x7FF00000 (with the sign), the bits PyTorch's conversion produces.
    if (exp == 0xF && man == 0x7) return f32_from_bits(sign | 0x7FF00000u);
    if (exp == 0) {  // subnormal: man * 2^-9, exact in f32
      const float mag = static_cast<float>(man) * kMinSubnormal;
      return sign ? -mag : mag;
    }
    return f32_from_bits(sign | ((exp + 120u) << 23) | (man << 20));
  }

  bool is_nan() const { return (bits & 0x7F) == 0x7F; }
};

}  // namespace fp4kit
