// AVX2 fast path of the NVFP4 kernels. Bit-identical to nvfp4_ref: the same f32 operations in the
// same order (vdivps and vmulps round exactly like their scalar forms; no FMA contraction), and
// every case the vector code does not model (NaN data, a non-finite or zero global scale) is
// handed to the scalar reference block by block.
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "formats/e2m1.h"
#include "formats/e4m3.h"
#include "formats/nvfp4.h"

#include "formats/avx2_begin.h"
#include "formats/avx2_common.h"

namespace fp4kit::nvfp4_avx2 {
namespace {

using namespace fp4kit::avx2;

constexpr size_t kChunkBlocks = 8;  // scales are computed 8 blocks (one vector) at a time
constexpr size_t kChunk = kChunkBlocks * kNvfp4BlockSize;

// Vector form of E4M3::from_float for finite inputs below 480 (others never reach it):
// returns the code bytes in the low 8 bits of each lane and the decoded value in `decoded`.
inline __m256i e4m3_encode(__m256 s, __m256* decoded) {
  const __m256i u = _mm256_castps_si256(s);
  const __m256i sign = _mm256_and_si256(u, _mm256_set1_epi32(static_cast<int>(0x80000000u)));
  const __m256i a = _mm256_xor_si256(u, sign);
  // normal range: round away 20 mantissa bits, ties to even
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(a, 20), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_add_epi32(_mm256_add_epi32(a, _mm256_set1_epi32(0x7FFFF)), odd);
  const __m256i normal_code = _mm256_sub_epi32(_mm256_srli_epi32(rounded, 20), _mm256_set1_epi32(120 << 3));
  const __m256 normal_value = _mm256_castsi256_ps(_mm256_and_si256(rounded, _mm256_set1_epi32(static_cast<int>(0xFFF00000u))));
  // subnormal range (< 2^-6): multiples of 2^-9, round half to even (MXCSR default)
  const __m256 sub_q = _mm256_round_ps(_mm256_mul_ps(_mm256_castsi256_ps(a), _mm256_set1_ps(512.0f)),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256i sub_code = _mm256_cvtps_epi32(sub_q);
  const __m256 sub_value = _mm256_mul_ps(sub_q, _mm256_set1_ps(0x1p-9f));
  const __m256i is_sub = _mm256_cmpgt_epi32(_mm256_set1_epi32(0x3C800000), a);
  const __m256i code = _mm256_blendv_epi8(normal_code, sub_code, is_sub);
  const __m256 value = _mm256_blendv_ps(normal_value, sub_value, _mm256_castsi256_ps(is_sub));
  *decoded = _mm256_or_ps(value, _mm256_castsi256_ps(sign));
  return _mm256_or_si256(code, _mm256_srli_epi32(sign, 24));
}

template <DType D>
inline void quantize_block(const void* src, size_t i, __m256 divisor, uint8_t* packed) {
  const __m256i c0 = e2m1_codes(_mm256_div_ps(load8<D>(src, i), divisor));
  const __m256i c1 = e2m1_codes(_mm256_div_ps(load8<D>(src, i + 8), divisor));
  store_packed16(c0, c1, packed + i / 2);
}

template <DType D>
float amax_impl(FloatSpan src) {
  __m256 m = _mm256_setzero_ps();
  __m256 nan = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 8 <= src.size; i += 8) {
    const __m256 x = load8<D>(src.data, i);
    m = _mm256_max_ps(m, abs_ps(x));
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  }
  if (_mm256_movemask_ps(nan)) return std::numeric_limits<float>::quiet_NaN();
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m);
  float r = 0.0f;
  for (float v : lanes) r = v > r ? v : r;
  const float tail = nvfp4_ref::amax(src.subspan(i, src.size - i));
  if (std::isnan(tail)) return tail;
  return tail > r ? tail : r;
}

float amax(FloatSpan src) {
  switch (src.dtype) {
    case DType::BF16: return amax_impl<DType::BF16>(src);
    case DType::F16: return amax_impl<DType::F16>(src);
    default: return amax_impl<DType::F32>(src);
  }
}

// The vector scale path models finite, positive, normal global scales (every real tensor); the
// rest (an all-zero or NaN tensor) goes to the scalar reference.
bool vector_scaling_ok(const Nvfp4Scaling& sc) {
  const float g = sc.global;
  if (!std::isfinite(g) || !std::isnormal(g) || g < 0.0f) return false;
  return sc.numerics == Nvfp4Numerics::CompressedTensors || std::isnormal(6.0f * g);
}

// Vector form of rounding an f32 result to the weight dtype (compressed-tensors' precision).
inline __m256 round_to_source(__m256 x, DType source) {
  if (source == DType::BF16) {
    __m256i u = _mm256_castps_si256(x);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    u = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), odd));
    return _mm256_castsi256_ps(_mm256_and_si256(u, _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
  }
  if (source == DType::F16) return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
  return x;
}

template <DType D>
void quantize_impl(FloatSpan src, const Nvfp4Scaling& sc, uint8_t* packed, uint8_t* scales) {
  const size_t n = src.size;
  const bool vector_ok = vector_scaling_ok(sc);
  const bool ct = sc.numerics == Nvfp4Numerics::CompressedTensors;
  const __m256 global = _mm256_set1_ps(sc.global);
  const __m256 denom = _mm256_set1_ps(6.0f * sc.global);
  size_t i = 0;
  for (; vector_ok && i + kChunk <= n; i += kChunk) {
    __m256 m[kChunkBlocks];
    __m256 nan = _mm256_setzero_ps();
    for (size_t b = 0; b < kChunkBlocks; ++b) {
      const __m256 x0 = load8<D>(src.data, i + b * 16);
      const __m256 x1 = load8<D>(src.data, i + b * 16 + 8);
      nan = _mm256_or_ps(nan, _mm256_cmp_ps(x0, x1, _CMP_UNORD_Q));
      m[b] = _mm256_max_ps(abs_ps(x0), abs_ps(x1));
    }
    const size_t first_block = i / kNvfp4BlockSize;
    if (_mm256_movemask_ps(nan)) {
      nvfp4_ref::quantize(src.subspan(i, kChunk), sc, packed + i / 2, scales + first_block);
      continue;
    }
    const __m256 block_amax = transpose_max8(m);
    __m256 divisor;
    __m256i code;
    if (!ct) {  // s = amax/(6*wsf2); 0 -> 1.0; clamp [2^-9, 448]; E4M3; divisor s8*wsf2
      __m256 s = _mm256_div_ps(block_amax, denom);
      s = _mm256_blendv_ps(s, _mm256_set1_ps(1.0f), _mm256_cmp_ps(s, _mm256_setzero_ps(), _CMP_EQ_OQ));
      s = _mm256_min_ps(_mm256_max_ps(s, _mm256_set1_ps(0x1p-9f)), _mm256_set1_ps(448.0f));
      __m256 s8;
      code = e4m3_encode(s, &s8);
      divisor = _mm256_mul_ps(s8, global);
    } else {  // s = gs * src(amax/6); saturate; E4M3; zero codes -> 0.125; divisor s8/gs
      const __m256 sixth = round_to_source(_mm256_div_ps(block_amax, _mm256_set1_ps(6.0f)), sc.source);
      const __m256 s = _mm256_min_ps(_mm256_mul_ps(global, sixth), _mm256_set1_ps(448.0f));
      __m256 s8;
      code = e4m3_encode(s, &s8);
      const __m256i zero = _mm256_cmpeq_epi32(code, _mm256_setzero_si256());
      code = _mm256_blendv_epi8(code, _mm256_set1_epi32(0x20), zero);
      s8 = _mm256_blendv_ps(s8, _mm256_set1_ps(0.125f), _mm256_castsi256_ps(zero));
      divisor = _mm256_div_ps(s8, global);
    }
    store_lane_bytes(code, scales + first_block);
    alignas(32) float d[8];
    _mm256_store_ps(d, divisor);
    for (size_t b = 0; b < kChunkBlocks; ++b)
      quantize_block<D>(src.data, i + b * 16, _mm256_set1_ps(d[b]), packed);
  }
  if (i < n) nvfp4_ref::quantize(src.subspan(i, n - i), sc, packed + i / 2, scales + i / kNvfp4BlockSize);
}

void quantize(FloatSpan src, const Nvfp4Scaling& sc, uint8_t* packed, uint8_t* scales) {
  switch (src.dtype) {
    case DType::BF16: return quantize_impl<DType::BF16>(src, sc, packed, scales);
    case DType::F16: return quantize_impl<DType::F16>(src, sc, packed, scales);
    default: return quantize_impl<DType::F32>(src, sc, packed, scales);
  }
}

template <DType D>
void quantize_with_scales_impl(FloatSpan src, const uint8_t* scales, const Nvfp4Scaling& sc, uint8_t* packed) {
  for (size_t b = 0; b < src.size / kNvfp4BlockSize; ++b)
    quantize_block<D>(src.data, b * 16, _mm256_set1_ps(nvfp4_quant_divisor(scales[b], sc)), packed);
}

void quantize_with_scales(FloatSpan src, const uint8_t* scales, const Nvfp4Scaling& sc, uint8_t* packed) {
  switch (src.dtype) {
    case DType::BF16: return quantize_with_scales_impl<DType::BF16>(src, scales, sc, packed);
    case DType::F16: return quantize_with_scales_impl<DType::F16>(src, scales, sc, packed);
    default: return quantize_with_scales_impl<DType::F32>(src, scales, sc, packed);
  }
}

void dequantize(const uint8_t* packed, const uint8_t* scales, size_t n, const Nvfp4Scaling& sc, float* out) {
  // E2M1 values of the 16 codes, looked up 8 at a time with lane permutes; code 0x8 is +0.0 for
  // ModelOpt and -0.0 for compressed-tensors, as in the reference.
  const float neg_zero = sc.numerics == Nvfp4Numerics::CompressedTensors ? -0.0f : 0.0f;
  const __m256 lut_pos = _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
  const __m256 lut_neg = _mm256_setr_ps(neg_zero, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f);
  for (size_t b = 0; b < n / kNvfp4BlockSize; ++b) {
    const __m256 m = _mm256_set1_ps(nvfp4_dequant_multiplier(scales[b], sc));
    const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(packed + b * 8));
    // interleave low and high nibbles: element 2j = byte j & 15, 2j+1 = byte j >> 4
    const __m128i lo = _mm_and_si128(bytes, _mm_set1_epi8(0x0F));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(0x0F));
    const __m128i codes = _mm_unpacklo_epi8(lo, hi);  // 16 codes in element order
    for (int h = 0; h < 2; ++h) {
      const __m256i c = _mm256_cvtepu8_epi32(h ? _mm_srli_si128(codes, 8) : codes);
      const __m256 negative = _mm256_castsi256_ps(_mm256_slli_epi32(c, 28));  // bit 3 -> sign bit
      const __m256 v = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lut_pos, c),
                                        _mm256_permutevar8x32_ps(lut_neg, c), negative);
      _mm256_storeu_ps(out + b * 16 + h * 8, _mm256_mul_ps(v, m));
    }
  }
}

}  // namespace

const Nvfp4Kernels kKernels = {amax, quantize, quantize_with_scales, dequantize};

}  // namespace fp4kit::nvfp4_avx2

#include "formats/avx2_end.h"
