#pragma once
// bfloat16: the top half of an f32.
#include <cmath>
#include <cstdint>

#include "formats/float_bits.h"

namespace fp4kit {

struct BF16 {
  uint16_t bits = 0;

  // Round to nearest even, as PyTorch's c10::BFloat16 does; every NaN becomes 0x7FC0.
  static BF16 from_float(float f) {
    if (std::isnan(f)) return BF16{0x7FC0};
    const uint32_t u = f32_bits(f);
    return BF16{static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16)};
  }
  float to_float() const { return f32_from_bits(static_cast<uint32_t>(bits) << 16); }
};

// Round an f32 to the nearest bf16 value and return it as f32.
inline float round_to_bf16(float f) { return BF16::from_float(f).to_float(); }

}  // namespace fp4kit
