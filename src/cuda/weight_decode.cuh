#pragma once
// Weight elements to BF16 pairs in registers, one place per format, for the GEMMs that feed BF16
// tensor cores (mma.sync m16n8k16). A pair is one 32-bit register: element k in the low half,
// k + 1 in the high half (the order of an mma fragment and of a packed FP4 byte). Every decoded
// value is exact in BF16:
//  - E2M1 (±{0, .5, 1, 1.5, 2, 3, 4, 6}, 2 significant bits) x E4M3 scale (4 bits, 2^-9..448):
//    at most 6 significant bits, magnitudes 2^-10..2688, all BF16 normals;
//  - E2M1 x 2^(e-127) (E8M0): at most 2 significant bits; magnitudes 2^-128..6*2^127. Those of at
//    least 2^128 are +-inf, as in the f32 reference; those under 2^-126 (scale bytes 0 and 1) are
//    BF16 subnormals, exact as long as the bf16 multiply and the tensor cores keep subnormals;
//  - E4M3 alone (FP8 weights; their 128x128 block scales are applied in F32 to the sums).
// NaN scales or elements decode to NaN and propagate through the products.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "cuda/codecs.cuh"

namespace fp4kit::cuda {

// PRMT in its default mode: byte i of the result is byte (selector nibble i & 7) of {hi, lo}, or,
// when that nibble's bit 3 is set, that byte's top bit replicated (0x00 or 0xFF).
__device__ __forceinline__ uint32_t byte_perm(uint32_t lo, uint32_t hi, uint32_t selector) {
  uint32_t r;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(lo), "r"(hi), "r"(selector));
  return r;
}

// Two bytes of packed E2M1 (four elements, low nibble first) -> two BF16 pairs, by table lookup in
// registers (PRMT): the low and high bytes of the BF16 bit patterns of the magnitude, then the
// sign. Only the low 16 bits of `q` are read. Code 0x8 decodes as -0.0 here (the CPU codec gives
// +0.0); the products and sums are the same numbers.
__device__ __forceinline__ void e2m1x4_to_bf16x2(uint32_t q, uint32_t& pair0, uint32_t& pair1) {
  // Magnitude code m -> BF16 bits: 0, 0x3F00 (0.5), 0x3F80, 0x3FC0, 0x4000, 0x4040, 0x4080, 0x40C0 (6).
  constexpr uint32_t kLowBytes0 = 0xC0800000u, kLowBytes1 = 0xC0804000u;    // codes 0-3, 4-7
  constexpr uint32_t kHighBytes0 = 0x3F3F3F00u, kHighBytes1 = 0x40404040u;
  const uint32_t magnitudes = q & 0x7777u;  // four 3-bit selectors
  const uint32_t lo = byte_perm(kLowBytes0, kLowBytes1, magnitudes);
  uint32_t hi = byte_perm(kHighBytes0, kHighBytes1, magnitudes);
  // With the sign bit set in a selector nibble, PRMT replicates the selected byte's top bit: from
  // 0x80 bytes that gives 0xFF for negative elements and 0x80 for positive ones; bit 6 moved up
  // is the BF16 sign.
  const uint32_t sign_bytes = byte_perm(0x80808080u, 0x80808080u, q);
  hi |= (sign_bytes << 1) & 0x80808080u;
  pair0 = byte_perm(lo, hi, 0x5140u);  // elements 0, 1
  pair1 = byte_perm(lo, hi, 0x7362u);  // elements 2, 3
}

// Four bytes of packed E2M1 (eight elements) -> four pairs.
__device__ __forceinline__ void e2m1x8_to_bf16x2(uint32_t q, uint32_t* pairs) {
  e2m1x4_to_bf16x2(q, pairs[0], pairs[1]);
  e2m1x4_to_bf16x2(q >> 16, pairs[2], pairs[3]);
}

// Eight E2M1 codes (one word, code i in bits 4i..4i+3) -> four pairs of code i and code i + 4
// (pair i: code i in the low half, code i + 4 in the high half), each as BF16 bits of the code's
// value x 2^-126, with no table: the code's sign goes to the BF16 sign bit and its magnitude bits
// (e1 e0 m) to the two lowest exponent bits and the top mantissa bit, so that e = 0 lands on the
// BF16 subnormals and every code on value x 2^-126. Per pair, one mask, one multiply that makes the
// two shifted copies (sign place and magnitude place; they do not overlap, so no carries) and one
// mask: 9 integer-pipe operations and 4 multiplies per 8 codes, against 17 for the table lookup
// above. A GEMM using it pairs x the same way (k with k + 4 in each group of 8) and multiplies by a
// scale that carries the 2^126 (nvfp4_scale_splats_for_split).
__device__ __forceinline__ void e2m1x8_to_bf16x2_split(uint32_t w, uint32_t* pairs) {
  constexpr uint32_t kKeep = 0x81C081C0u;  // sign bits 15, 31; magnitudes 8:6, 24:22
  const uint32_t w8 = w >> 8;              // codes 2, 3, 6, 7 where 0, 1, 4, 5 were
  pairs[0] = ((w & 0x000F000Fu) * 0x1040u) & kKeep;   // code 0: sign << 12, magnitude << 6
  pairs[1] = ((w & 0x00F000F0u) * 0x0104u) & kKeep;   // code 1: sign << 8, magnitude << 2
  pairs[2] = ((w8 & 0x000F000Fu) * 0x1040u) & kKeep;
  pairs[3] = ((w8 & 0x00F000F0u) * 0x0104u) & kKeep;
}

// What a scale multiplying the split decode's pairs (value x 2^-126) carries: 2^118 rather than
// 2^126, so that every E4M3 scale times it stays a finite BF16 (448 x 2^118 < 2^127); the products
// are value x scale x 2^-8, all BF16 normals (at least 2^-18), exact; the sums are multiplied by
// 2^8 at the end.
constexpr float kSplitScaleFactor = 0x1p118f;
constexpr float kSplitSumFactor = 0x1p8f;

__device__ __forceinline__ uint32_t bf16x2_mul(uint32_t a, uint32_t b) {
  __nv_bfloat162 r = __hmul2(*reinterpret_cast<const __nv_bfloat162*>(&a), *reinterpret_cast<const __nv_bfloat162*>(&b));
  return *reinterpret_cast<uint32_t*>(&r);
}

// A scale as a BF16 pair (the same value in both halves), to multiply decoded E2M1 pairs with.
__device__ __forceinline__ uint32_t splat_bf16(uint16_t bits) { return (static_cast<uint32_t>(bits) << 16) | bits; }

// E4M3 scale byte -> BF16 bits (exact: every E4M3 value, subnormals too, is a BF16 normal).
__device__ __forceinline__ uint16_t e4m3_to_bf16_bits(uint32_t byte) {
  return float_to_bf16_bits(e4m3_to_float(byte & 0xFFu));
}

// E8M0 scale byte -> BF16 bits of 2^(byte-127): byte 0 is the subnormal 2^-127 (0x0040), 0xFF NaN.
__device__ __forceinline__ uint16_t e8m0_to_bf16_bits(uint32_t byte) {
  byte &= 0xFFu;
  if (byte == 0xFFu) return 0x7FC0;
  if (byte == 0) return 0x0040;
  return static_cast<uint16_t>(byte << 7);
}

// Two E4M3 scale bytes (low byte first) -> each as a BF16 pair holding it twice. Exact: the
// hardware E4M3 -> F16 conversion keeps every value (subnormals become F16 normals, NaN stays NaN),
// F16 -> F32 -> BF16 needs at most 4 significant bits.
__device__ __forceinline__ void e4m3x2_to_bf16_splats(uint32_t bytes, uint32_t& splat0, uint32_t& splat1) {
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(bytes & 0xFFFFu), __NV_E4M3);
  const float2 f = __half22float2(__half2(h));
  __nv_bfloat162 b0 = __floats2bfloat162_rn(f.x, f.x), b1 = __floats2bfloat162_rn(f.y, f.y);
  splat0 = *reinterpret_cast<uint32_t*>(&b0);
  splat1 = *reinterpret_cast<uint32_t*>(&b1);
}

// Two E4M3 scale bytes -> each times kSplitScaleFactor as a BF16 pair holding it twice, for the
// split decode's pairs (exact: a power-of-two factor, and 448 x 2^118 is finite in BF16).
__device__ __forceinline__ void nvfp4_scale_splats_for_split(uint32_t bytes, uint32_t& splat0, uint32_t& splat1) {
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(bytes & 0xFFFFu), __NV_E4M3);
  const float2 f = __half22float2(__half2(h));
  const float f0 = f.x * kSplitScaleFactor, f1 = f.y * kSplitScaleFactor;
  __nv_bfloat162 b0 = __floats2bfloat162_rn(f0, f0), b1 = __floats2bfloat162_rn(f1, f1);
  splat0 = *reinterpret_cast<uint32_t*>(&b0);
  splat1 = *reinterpret_cast<uint32_t*>(&b1);
}

// 16 NVFP4 elements (8 packed bytes in w0, w1) with their E4M3 block scale -> 8 pairs.
__device__ __forceinline__ void nvfp4x16_to_bf16x2(uint32_t w0, uint32_t w1, uint32_t scale_byte, uint32_t* pairs) {
  const uint32_t s = splat_bf16(e4m3_to_bf16_bits(scale_byte));
  e2m1x8_to_bf16x2(w0, pairs);
  e2m1x8_to_bf16x2(w1, pairs + 4);
#pragma unroll
  for (int i = 0; i < 8; ++i) pairs[i] = bf16x2_mul(pairs[i], s);
}

// 32 MXFP4 elements (16 packed bytes in w[0..3]) with their E8M0 group scale -> 16 pairs.
__device__ __forceinline__ void mxfp4x32_to_bf16x2(const uint32_t* w, uint32_t scale_byte, uint32_t* pairs) {
  const uint32_t s = splat_bf16(e8m0_to_bf16_bits(scale_byte));
#pragma unroll
  for (int i = 0; i < 4; ++i) e2m1x8_to_bf16x2(w[i], pairs + 4 * i);
#pragma unroll
  for (int i = 0; i < 16; ++i) pairs[i] = bf16x2_mul(pairs[i], s);
}

// Four E4M3 bytes -> two pairs (through the exact E4M3 -> F16 conversion; F16 -> F32 -> BF16 is
// exact for every E4M3 value, NaN stays NaN).
__device__ __forceinline__ void e4m3x4_to_bf16x2(uint32_t q, uint32_t& pair0, uint32_t& pair1) {
  const __half2_raw h0 = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(q & 0xFFFFu), __NV_E4M3);
  const __half2_raw h1 = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(q >> 16), __NV_E4M3);
  const float2 f0 = __half22float2(__half2(h0));
  const float2 f1 = __half22float2(__half2(h1));
  __nv_bfloat162 b0 = __float22bfloat162_rn(f0), b1 = __float22bfloat162_rn(f1);
  pair0 = *reinterpret_cast<uint32_t*>(&b0);
  pair1 = *reinterpret_cast<uint32_t*>(&b1);
}

// The F32 value of an FP8 block scale, stored as E8M0 bytes (V4) or F32 (V3).
__device__ __forceinline__ float fp8_block_scale(const void* scales, bool scales_f32, int64_t index) {
  if (scales_f32) return __ldg(static_cast<const float*>(scales) + index);
  return e8m0_to_float(__ldg(static_cast<const uint8_t*>(scales) + index));
}

}  // namespace fp4kit::cuda
