#pragma once
// E8M0 (OCP MX scale): a biased power-of-two exponent, 2^(byte-127); 0xFF is NaN.
#include <cstdint>

#include "formats/float_bits.h"

namespace fp4kit {

struct E8M0 {
  uint8_t bits = 127;

  static constexpr int kBias = 127;

  // Byte 0 is 2^-127 (an f32 subnormal), as torch's float8_e8m0fnu decodes it.
  float to_float() const {
    if (bits == 0xFF) return f32_from_bits(0x7FC00000u);
    if (bits == 0) return f32_from_bits(0x00400000u);  // 2^-127
    return f32_from_bits(static_cast<uint32_t>(bits) << 23);
  }
  int exponent() const { return static_cast<int>(bits) - kBias; }

  // 2^k for k in [-127, 127]; outside the range the byte saturates to 0 or 254.
  static E8M0 from_exponent(int k) {
    int b = k + kBias;
    if (b < 0) b = 0;
    if (b > 254) b = 254;
    return E8M0{static_cast<uint8_t>(b)};
  }
};

}  // namespace fp4kit
