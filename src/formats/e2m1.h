#pragma once
// FP4 E2M1: 1 sign, 2 exponent, 1 mantissa bit; magnitudes {0, .5, 1, 1.5, 2, 3, 4, 6}; no Inf/NaN.
#include <cmath>
#include <cstdint>

namespace fp4kit {

struct E2M1 {
  uint8_t bits = 0;  // low nibble only

  static constexpr float kMax = 6.0f;
  // The value of each code as ModelOpt's NVFP4 dequant and DeepSeek's FP4_TABLE decode it:
  // code 0x8 is +0.0.
  static constexpr float kValues[16] = {0.0f, 0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                        0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
  static constexpr const float (&kDeepSeekValues)[16] = kValues;
  // ModelOpt's MXFP4 dequant (sign applied to the magnitude) decodes code 0x8 as -0.0.
  static constexpr float kSignedZeroValues[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                                  -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

  // Magnitude code by round-half-to-even on the E2M1 grid, saturating above 5 (so +inf -> 6);
  // NaN gives 7. Ties at the odd-index bounds {0.75, 1.75, 3.5} go up, at {0.25, 1.25, 2.5, 5} down.
  static constexpr uint8_t magnitude_code(float a) {
    // Written as "not <=" / "not <" so that NaN passes every test and lands on 7.
    return static_cast<uint8_t>(!(a <= 0.25f) + !(a < 0.75f) + !(a <= 1.25f) + !(a < 1.75f) +
                                !(a <= 2.5f) + !(a < 3.5f) + !(a <= 5.0f));
  }

  // ModelOpt's _cast_fp4 (and compressed-tensors' cast_to_fp4 after its clamp): the sign bit is
  // set when y < 0, so a negative value that rounds to zero is 0x8 while -0.0 is 0x0; NaN is 0x7.
  static constexpr E2M1 from_float(float y) {
    const uint8_t mag = magnitude_code(std::fabs(y));
    return E2M1{static_cast<uint8_t>(mag | (y < 0.0f ? 0x8 : 0x0))};
  }

  constexpr float to_float() const { return kValues[bits & 0xF]; }
};

// Two codes per byte: the even index in the low nibble, the odd index in the high nibble.
constexpr uint8_t pack_e2m1(E2M1 even, E2M1 odd) {
  return static_cast<uint8_t>((even.bits & 0xF) | ((odd.bits & 0xF) << 4));
}
constexpr E2M1 unpack_e2m1(uint8_t byte, unsigned index) {
  return E2M1{static_cast<uint8_t>((index & 1) ? (byte >> 4) : (byte & 0xF))};
}

}  // namespace fp4kit
