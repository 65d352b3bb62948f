#pragma once
// Element encoders on the device, bit-exact with the CPU codecs in src/formats/ (e4m3.h, e2m1.h,
// f16.h; bf16 is float_to_bf16_bits in cuda/codecs.cuh). Every arithmetic step is written with an
// explicitly rounded intrinsic, so the bytes do not depend on --fmad or --use_fast_math of the file
// that includes this header.
#include <cuda_runtime.h>

#include <cstdint>

namespace fp4kit::cuda {

// E4M3::from_float: PyTorch's float -> float8_e4m3fn cast. Round to nearest even; magnitudes at or
// above 480, Inf and NaN give 0x7F with the input's sign (464, a tie, -> 448; 465 -> NaN).
__device__ __forceinline__ uint32_t float_to_e4m3(float f) {
  uint32_t u = __float_as_uint(f);
  const uint32_t sign = u & 0x80000000u;
  u ^= sign;
  uint32_t code;
  if (u >= 0x43F00000u) {  // 480.0f, +inf, NaN
    code = 0x7Fu;
  } else if (u < 0x3C800000u) {  // below 2^-6: subnormal grid of step 2^-9, round half to even
    code = __float2uint_rn(__fmul_rn(__uint_as_float(u), 512.0f));  // the product is exact
  } else {  // normal: drop 20 mantissa bits with round-half-to-even, rebias 127 -> 7
    u += 0x7FFFFu + ((u >> 20) & 1u);
    code = (u >> 20) - (120u << 3);
  }
  return code | (sign >> 24);
}

// E4M3::from_float_saturate: clamp to [-448, 448] first (NaN passes the clamp and stays NaN, with its
// sign). The clamp is decided on the bits: ptxas may turn a float compare-and-select clamp into a
// NaN-propagating min/max, which returns the canonical NaN 0x7FFFFFFF and so loses a NaN's sign.
__device__ __forceinline__ uint32_t float_to_e4m3_saturate(float f) {
  const uint32_t u = __float_as_uint(f);
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return 0x7Fu | ((u >> 24) & 0x80u);  // NaN: 0x7F with its sign
  if (a >= 0x43E00000u) return 0x7Eu | ((u >> 24) & 0x80u);  // |f| >= 448 (Inf included): +-448
  return float_to_e4m3(f);
}

// E2M1::magnitude_code for a = |y| (sign bit clear): round half to even on {0, .5, 1, 1.5, 2, 3, 4, 6},
// saturating above 5 (+inf -> 6); NaN gives 7. Ties at {0.75, 1.75, 3.5} go up, at {0.25, 1.25, 2.5, 5}
// down. Below 2 the grid step is 0.5, so the code is 2a rounded half to even (2a is exact). From 2 up
// (and for Inf/NaN, which fail `a < 2`) the E2M1 value is the f32 rounded half to even to one
// mantissa bit, and its (exponent, mantissa) bits minus the bias difference are the code; anything
// at or above 7 (6, Inf, NaN) becomes 7. Checked against E2M1::magnitude_code on all 2^31 inputs.
__device__ __forceinline__ uint32_t e2m1_magnitude_code(float a) {
  if (a < 2.0f) return __float2uint_rn(__fmul_rn(a, 2.0f));
  const uint32_t u = __float_as_uint(a);
  const uint32_t rounded = (u + 0x1FFFFFu + ((u >> 22) & 1u)) >> 22;  // (f32 exponent << 1) | mantissa bit
  return min(rounded - 252u, 7u);                                      // 252 = (127 - 1) << 1
}

// E2M1::from_float: the sign bit is set iff y < 0, so -0.0 is 0x0, a small negative value that
// rounds to zero is 0x8, and NaN (either sign) is 0x7.
__device__ __forceinline__ uint32_t float_to_e2m1(float y) {
  return e2m1_magnitude_code(fabsf(y)) | (y < 0.0f ? 0x8u : 0x0u);
}

// F16::from_float as bits: round to nearest even, overflow to Inf, NaN kept quiet with its sign and
// the top mantissa bits.
__device__ __forceinline__ uint16_t float_to_f16_bits(float f) {
  const uint32_t u = __float_as_uint(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
  if (a >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520 rounds to Inf
  if (a < 0x38800000u)  // below 2^-14: subnormal grid of step 2^-24 (the product is exact)
    return static_cast<uint16_t>(sign | __float2uint_rn(__fmul_rn(__uint_as_float(a), 0x1p24f)));
  uint32_t r = a + 0xFFFu + ((a >> 13) & 1u);
  r = (r >> 13) - (112u << 10);
  return static_cast<uint16_t>(sign | r);
}

// F16 bits -> f32 (exact), as F16::to_float.
__device__ __forceinline__ float f16_bits_to_float(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exp = (bits >> 10) & 0x1Fu;
  const uint32_t man = bits & 0x3FFu;
  if (exp == 0x1Fu) return __uint_as_float(sign | 0x7F800000u | (man << 13));
  if (exp == 0) {
    const float mag = __fmul_rn(static_cast<float>(man), 0x1p-24f);
    return sign ? -mag : mag;
  }
  return __uint_as_float(sign | ((exp + 112u) << 23) | (man << 13));
}

}  // namespace fp4kit::cuda
