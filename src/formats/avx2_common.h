// Vector pieces the AVX2 fast paths share. Include right after avx2_begin.h, in *_avx2.cpp files
// only. Everything here has internal linkage (an unnamed namespace), so no AVX2 copy of it can ever
// be shared with baseline code by the linker. (No include guard beyond #pragma once: AVX2 only.)
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "formats/dtype.h"

namespace fp4kit::avx2 {
namespace {

// 8 elements of a BF16, F16 or F32 array from index i, as f32 (exact).
template <DType D>
inline __m256 load8(const void* base, size_t i) {
  if constexpr (D == DType::BF16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
  } else if constexpr (D == DType::F16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i)));
  } else {
    return _mm256_loadu_ps(static_cast<const float*>(base) + i);
  }
}

// |x| as integers: for non-negative floats the integer order is the float order, Inf is
// 0x7F800000 and only NaN lies above it.
inline __m256i abs_bits(__m256 x) { return _mm256_and_si256(_mm256_castps_si256(x), _mm256_set1_epi32(0x7FFFFFFF)); }
inline __m256 abs_ps(__m256 x) { return _mm256_castsi256_ps(abs_bits(x)); }

// Pairwise max of neighbours, in the pattern of hadd: [a01 a23 b01 b23 | a45 a67 b45 b67].
inline __m256 pair_max(__m256 a, __m256 b) {
  return _mm256_max_ps(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}

// Lane j of the result is the max over all lanes of m[j] (m must hold no NaN).
inline __m256 transpose_max8(const __m256 m[8]) {
  const __m256 s0123 = pair_max(pair_max(m[0], m[1]), pair_max(m[2], m[3]));
  const __m256 s4567 = pair_max(pair_max(m[4], m[5]), pair_max(m[6], m[7]));
  return _mm256_max_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20),
                       _mm256_permute2f128_ps(s0123, s4567, 0x31));
}

// E2M1::from_float, one code per int32 lane: round half to even on the magnitude, saturating;
// "not <=" and "not <" are true for NaN, so NaN lands on 7; sign bit iff y < 0.
inline __m256i e2m1_codes(__m256 y) {
  const __m256 a = abs_ps(y);
  __m256i c = _mm256_setzero_si256();
  c = _mm256_sub_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(a, _mm256_set1_ps(0.25f), _CMP_NLE_UQ)));
  c = _mm256_sub_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(a, _mm256_set1_ps(0.75f), _CMP_NLT_UQ)));
  c = _mm256_sub_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(a, _mm256_set1_ps(1.25f), _CMP_NLE_UQ)));
  c = _mm256_sub_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(a, _mm256_set1_ps(1.75f), _CMP_NLT_UQ)));
  c = _mm256_sub_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(a, _mm256_set1_ps(2.5f), _CMP_NLE_UQ)));
  c = _mm256_sub_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(a, _mm256_set1_ps(3.5f), _CMP_NLT_UQ)));
  c = _mm256_sub_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(a, _mm256_set1_ps(5.0f), _CMP_NLE_UQ)));
  const __m256 negative = _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_LT_OQ);
  return _mm256_or_si256(c, _mm256_and_si256(_mm256_castps_si256(negative), _mm256_set1_epi32(8)));
}

// 16 codes (elements 0-7 in lo, 8-15 in hi) -> 8 bytes, even index in the low nibble.
inline void store_packed16(__m256i lo, __m256i hi, uint8_t* out) {
  const __m256i w = _mm256_packus_epi32(lo, hi);  // [lo0-3 hi0-3 | lo4-7 hi4-7] as u16
  const __m256i b = _mm256_packus_epi16(w, w);    // same order as u8, twice per lane
  const __m128i ordered = _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
  const __m128i pairs = _mm_maddubs_epi16(ordered, _mm_set1_epi16(0x1001));  // even + 16*odd
  _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm_packus_epi16(pairs, pairs));
}

// The low byte of each int32 lane, 8 bytes to out.
inline void store_lane_bytes(__m256i v, uint8_t* out) {
  const __m256i w = _mm256_packus_epi32(v, v);
  const __m256i b8 = _mm256_packus_epi16(w, w);
  const uint32_t lo = static_cast<uint32_t>(_mm_cvtsi128_si32(_mm256_castsi256_si128(b8)));
  const uint32_t hi = static_cast<uint32_t>(_mm_cvtsi128_si32(_mm256_extracti128_si256(b8, 1)));
  __builtin_memcpy(out, &lo, 4);
  __builtin_memcpy(out + 4, &hi, 4);
}

}  // namespace
}  // namespace fp4kit::avx2
