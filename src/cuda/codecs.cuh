#pragma once
// Element codecs on the device, decoding exactly as src/formats/ does on the CPU (e2m1.h, e4m3.h,
// e8m0.h, bf16.h are the specification; the tests compare every code). Encoders live beside the
// kernels that need them (src/cuda/exact/).
#include <cuda_bf16.h>

#include <cstdint>

namespace fp4kit::cuda {

// E2M1 code -> value (code 0x8 is +0.0, as ModelOpt's NVFP4 and DeepSeek's FP4 dequant decode it).
__device__ __forceinline__ float e2m1_to_float(uint32_t code) {
  // Magnitudes {0, .5, 1, 1.5, 2, 3, 4, 6} as f32 bit patterns, selected without a memory table.
  constexpr uint32_t kMagnitudeBits[8] = {0x00000000u, 0x3F000000u, 0x3F800000u, 0x3FC00000u,
                                          0x40000000u, 0x40400000u, 0x40800000u, 0x40C00000u};
  const uint32_t m = code & 7u;
  uint32_t bits = 0;
#pragma unroll
  for (uint32_t i = 1; i < 8; ++i) bits = (m == i) ? kMagnitudeBits[i] : bits;
  // The sign goes only on nonzero magnitudes: 0x8 decodes as +0.0.
  if ((code & 8u) && m) bits |= 0x80000000u;
  return __uint_as_float(bits);
}

// E4M3FN byte -> f32 (NaN 0x7F/0xFF decode to 0x7FF00000 with the sign, as the CPU codec).
__device__ __forceinline__ float e4m3_to_float(uint32_t byte) {
  const uint32_t sign = (byte & 0x80u) << 24;
  const uint32_t exp = (byte >> 3) & 0xFu;
  const uint32_t man = byte & 0x7u;
  if (exp == 0xFu && man == 0x7u) return __uint_as_float(sign | 0x7FF00000u);
  if (exp == 0) {
    const float mag = static_cast<float>(man) * 0x1p-9f;  // exact
    return sign ? -mag : mag;
  }
  return __uint_as_float(sign | ((exp + 120u) << 23) | (man << 20));
}

// E8M0 byte -> 2^(byte-127); byte 0 is 2^-127 (subnormal), 0xFF NaN.
__device__ __forceinline__ float e8m0_to_float(uint32_t byte) {
  if (byte == 0xFFu) return __uint_as_float(0x7FC00000u);
  if (byte == 0) return __uint_as_float(0x00400000u);
  return __uint_as_float(byte << 23);
}

// f32 -> bf16 bits, round to nearest even; every NaN becomes 0x7FC0 (as BF16::from_float).
__device__ __forceinline__ uint16_t float_to_bf16_bits(float f) {
  const uint32_t u = __float_as_uint(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0;
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ float bf16_bits_to_float(uint16_t b) { return __uint_as_float(static_cast<uint32_t>(b) << 16); }

}  // namespace fp4kit::cuda
