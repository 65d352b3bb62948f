// AVX2 fast path of the FP8 block kernels. Bit-identical to fp8_block_ref for every input:
//  - dequantize: an E4M3 byte b becomes the F16 bits of b with the exponent field shifted by one
//    place (sign<<15 | (b&0x7F)<<7), i.e. the F16 value 2^-8 * e4m3(b) for every code but NaN;
//    vcvtph2ps and an exact *256 give f32(e4m3) (subnormals included), then the same f32 multiply
//    by the block scale as the reference. Runs that hold an E4M3 NaN code (0x7F/0xFF) and the
//    ragged ends of rows (< 8 columns) go through the reference itself, on a one-row view, so
//    even NaN*NaN payload choices are the reference's own.
//  - quantize: the block amax is the largest |x| bit pattern, except in blocks that hold a NaN,
//    which take the reference's block_amax (NaN ignored); the scale comes from the reference's
//    store_block_scale; elements are
//    divided by the F32 scale with vdivps, or multiplied by the exact reciprocal of an E8M0
//    scale (the same correctly rounded value as the division), then clamped and rounded to E4M3
//    as E4M3::from_float_saturate does.
// Project and standard headers come before the target pragma, so the inline functions they define
// are compiled for the baseline ISA and never shared with AVX2 code.
#include "formats/fp8_block.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "formats/dtype.h"
#include "formats/e4m3.h"
#include "formats/e8m0.h"
#include "formats/float_bits.h"
#include "formats/float_span.h"

#include <immintrin.h>

namespace fp4kit::fp8_block_avx2 {
namespace {

constexpr size_t kBlock = kFp8BlockSize;

// ---- scalar pieces, compiled for the baseline ISA exactly as the reference's -------------------

// Elements [begin, end) of one row, one at a time as the reference quantizes them.
void quantize_scalar(FloatSpan src, size_t begin, size_t end, float s, uint8_t* weight) {
  for (size_t i = begin; i < end; ++i) weight[i] = E4M3::from_float_saturate(src.at(i) / s).bits;
}

}  // namespace
}  // namespace fp4kit::fp8_block_avx2

#include "formats/avx2_begin.h"
#include "formats/avx2_common.h"

namespace fp4kit::fp8_block_avx2 {
namespace {

using namespace fp4kit::avx2;

inline size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

// ---- dequantize -------------------------------------------------------------------------------

// Row r, columns [c0, c1) (inside one block column) through the reference, on a one-row view
// whose only block is the one these columns lie in. `out` points at the output of (r, c0).
template <typename T>
void reference_run(const uint8_t* weight, const void* scales, const Fp8BlockShape& shape, size_t r,
                   size_t c0, size_t c1, T* out) {
  const size_t idx = (r / kBlock) * shape.scale_cols() + c0 / kBlock;
  const size_t width = shape.scale_kind == Fp8ScaleKind::E8M0 ? 1 : 4;
  const void* scale = static_cast<const uint8_t*>(scales) + width * idx;
  const Fp8BlockShape one{1, c1 - c0, shape.scale_kind};
  if constexpr (sizeof(T) == 4)
    fp8_block_ref::dequantize_f32(weight + r * shape.cols + c0, scale, one, 0, 1, out);
  else
    fp8_block_ref::dequantize_bf16(weight + r * shape.cols + c0, scale, one, 0, 1, out);
}

// Whether any of the bytes is an E4M3 NaN code (0x7F or 0xFF).
inline bool has_nan32(__m256i b) {
  const __m256i m = _mm256_set1_epi8(0x7F);
  return _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_and_si256(b, m), m)) != 0;
}
inline bool has_nan8(__m128i b) {
  const __m128i m = _mm_set1_epi8(0x7F);
  return (_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_and_si128(b, m), m)) & 0xFF) != 0;
}

// 8 non-NaN E4M3 bytes (as u16 lanes) -> their f32 values, exactly E4M3::to_float.
inline __m256 e4m3x8_to_f32(__m128i b16) {
  const __m128i t = _mm_slli_epi16(b16, 7);                                 // sign lands on bit 14
  const __m128i h = _mm_add_epi16(t, _mm_and_si128(t, _mm_set1_epi16(0x4000)));  // move it to bit 15
  return _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_set1_ps(256.0f));
}

// 16 non-NaN E4M3 bytes -> two vectors of 8 f32 values.
inline void e4m3x16_to_f32(__m128i bytes, __m256* lo, __m256* hi) {
  const __m256i t = _mm256_slli_epi16(_mm256_cvtepu8_epi16(bytes), 7);
  const __m256i h = _mm256_add_epi16(t, _mm256_and_si256(t, _mm256_set1_epi16(0x4000)));
  const __m256 k256 = _mm256_set1_ps(256.0f);
  *lo = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h)), k256);
  *hi = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)), k256);
}

// BF16::from_float per int32 lane: round to nearest even, every NaN to 0x7FC0.
inline __m256i bf16_lanes(__m256 x) {
  const __m256i u = _mm256_castps_si256(x);
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), odd), 16);
  const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  return _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), _mm256_castps_si256(nan));
}

// Two vectors of 8 BF16 lanes -> 16 u16 in element order.
inline __m256i pack_bf16(__m256 a, __m256 b) {
  return _mm256_permute4x64_epi64(_mm256_packus_epi32(bf16_lanes(a), bf16_lanes(b)), 0xD8);
}

inline void store16(float* out, __m256 lo, __m256 hi) {
  _mm256_storeu_ps(out, lo);
  _mm256_storeu_ps(out + 8, hi);
}
inline void store16(uint16_t* out, __m256 lo, __m256 hi) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), pack_bf16(lo, hi));
}
inline void store8(float* out, __m256 v) { _mm256_storeu_ps(out, v); }
inline void store8(uint16_t* out, __m256 v) {
  const __m256i p = _mm256_packus_epi32(bf16_lanes(v), bf16_lanes(v));  // [v0-3 v0-3 | v4-7 v4-7]
  const __m128i ordered = _mm_unpacklo_epi64(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), ordered);
}

template <typename T>
void dequantize_impl(const uint8_t* weight, const void* scales, const Fp8BlockShape& shape, size_t row_begin,
                     size_t row_end, T* out) {
  const size_t cols = shape.cols;
  const size_t scale_cols = shape.scale_cols();
  for (size_t r = row_begin; r < row_end; ++r) {
    const uint8_t* w = weight + r * cols;
    T* o = out + (r - row_begin) * cols;
    for (size_t bc = 0; bc < scale_cols; ++bc) {
      const size_t c0 = bc * kBlock, c1 = min_size(cols, c0 + kBlock);
      const __m256 s = _mm256_set1_ps(fp8_block_ref::load_block_scale(scales, shape, r / kBlock, bc));
      size_t c = c0;
      for (; c + 32 <= c1; c += 32) {
        if (has_nan32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + c)))) {
          reference_run(weight, scales, shape, r, c, c + 32, o + c);
          continue;
        }
        __m256 a, b, d, e;
        e4m3x16_to_f32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + c)), &a, &b);
        e4m3x16_to_f32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + c + 16)), &d, &e);
        store16(o + c, _mm256_mul_ps(a, s), _mm256_mul_ps(b, s));
        store16(o + c + 16, _mm256_mul_ps(d, s), _mm256_mul_ps(e, s));
      }
      for (; c + 8 <= c1; c += 8) {
        const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + c));
        if (has_nan8(bytes)) {
          reference_run(weight, scales, shape, r, c, c + 8, o + c);
          continue;
        }
        store8(o + c, _mm256_mul_ps(e4m3x8_to_f32(_mm_cvtepu8_epi16(bytes)), s));
      }
      if (c < c1) reference_run(weight, scales, shape, r, c, c1, o + c);
    }
  }
}

void dequantize_f32(const uint8_t* weight, const void* scales, const Fp8BlockShape& shape, size_t row_begin,
                    size_t row_end, float* out) {
  dequantize_impl(weight, scales, shape, row_begin, row_end, out);
}

void dequantize_bf16(const uint8_t* weight, const void* scales, const Fp8BlockShape& shape, size_t row_begin,
                     size_t row_end, uint16_t* out) {
  dequantize_impl(weight, scales, shape, row_begin, row_end, out);
}

// ---- quantize ---------------------------------------------------------------------------------

// E4M3::from_float_saturate, one code per int32 lane.
inline __m256i e4m3_saturate(__m256 y) {
  // minps/maxps return the second operand when either is NaN: NaN passes through, as the
  // reference's two comparisons let it.
  y = _mm256_max_ps(_mm256_set1_ps(-448.0f), _mm256_min_ps(_mm256_set1_ps(448.0f), y));
  const __m256i u = _mm256_castps_si256(y);
  const __m256i sign = _mm256_and_si256(u, _mm256_set1_epi32(static_cast<int>(0x80000000u)));
  const __m256i a = _mm256_xor_si256(u, sign);
  // normal range: drop 20 mantissa bits with round-half-to-even, rebias 127 -> 7
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(a, 20), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_add_epi32(_mm256_add_epi32(a, _mm256_set1_epi32(0x7FFFF)), odd);
  const __m256i normal_code = _mm256_sub_epi32(_mm256_srli_epi32(rounded, 20), _mm256_set1_epi32(120 << 3));
  // below 2^-6: nearbyint(a * 512). a + 2^14 rounds a to a multiple of 2^-9 (the ulp there) in
  // the current rounding mode, as nearbyint rounds the exact a*512, and its low bits are the count.
  const __m256i sub_code = _mm256_sub_epi32(
      _mm256_castps_si256(_mm256_add_ps(_mm256_castsi256_ps(a), _mm256_set1_ps(0x1p14f))), _mm256_set1_epi32(0x46800000));
  const __m256i is_sub = _mm256_cmpgt_epi32(_mm256_set1_epi32(0x3C800000), a);
  __m256i code = _mm256_blendv_epi8(normal_code, sub_code, is_sub);
  // NaN (the only magnitude at or above 480 left after the clamp) -> 0x7F: its normal_code is
  // above 0x7F, every other one at most 0x7E
  code = _mm256_min_epu32(code, _mm256_set1_epi32(0x7F));
  return _mm256_or_si256(code, _mm256_srli_epi32(sign, 24));
}

// Elements divided by the scale: by vdivps, or as a product with the scale's exact reciprocal.
struct Scaler {
  __m256 v;
  bool reciprocal;
  __m256 apply(__m256 x) const { return reciprocal ? _mm256_mul_ps(x, v) : _mm256_div_ps(x, v); }
};

template <DType D>
inline __m256i codes8(const void* src, size_t i, const Scaler& sc) {
  return e4m3_saturate(sc.apply(load8<D>(src, i)));
}

template <DType D>
void quantize_impl(FloatSpan src, const Fp8BlockShape& shape, uint8_t* weight, void* scales) {
  const size_t cols = shape.cols;
  for (size_t br = 0; br < shape.scale_rows(); ++br) {
    for (size_t bc = 0; bc < shape.scale_cols(); ++bc) {
      const size_t r0 = br * kBlock, r1 = min_size(shape.rows, r0 + kBlock);
      const size_t c0 = bc * kBlock, c1 = min_size(cols, c0 + kBlock);
      const size_t c_vec = c0 + ((c1 - c0) & ~size_t{7});
      // amax as the largest |x| bit pattern; blocks with a NaN take the reference's own loop
      __m256i acc = _mm256_setzero_si256();
      uint32_t top = 0;
      for (size_t r = r0; r < r1; ++r) {
        const size_t row = r * cols;
        size_t c = c0;
        for (; c < c_vec; c += 8) acc = _mm256_max_epi32(acc, abs_bits(load8<D>(src.data, row + c)));
        for (; c < c1; ++c) {
          const uint32_t a = f32_bits(src.at(row + c)) & 0x7FFFFFFFu;
          top = a > top ? a : top;
        }
      }
      alignas(32) uint32_t lanes[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
      for (uint32_t l : lanes) top = l > top ? l : top;
      const float amax = top > 0x7F800000u ? fp8_block_ref::block_amax(src, shape, br, bc) : f32_from_bits(top);
      const size_t idx = br * shape.scale_cols() + bc;
      const float s = fp8_block_ref::store_block_scale(amax, shape, scales, br, bc);
      Scaler sc{_mm256_set1_ps(s), false};
      if (shape.scale_kind == Fp8ScaleKind::E8M0) {
        // 2^k with k in [-126, 126] has the exact reciprocal 2^-k (biased exponent 254 - byte)
        const int byte = static_cast<const uint8_t*>(scales)[idx];
        if (byte >= 1 && byte <= 253) sc = Scaler{_mm256_castsi256_ps(_mm256_set1_epi32((254 - byte) << 23)), true};
      }
      const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
      for (size_t r = r0; r < r1; ++r) {
        const size_t row = r * cols;
        size_t c = c0;
        for (; c + 32 <= c1; c += 32) {
          const __m256i p01 = _mm256_packus_epi32(codes8<D>(src.data, row + c, sc), codes8<D>(src.data, row + c + 8, sc));
          const __m256i p23 = _mm256_packus_epi32(codes8<D>(src.data, row + c + 16, sc), codes8<D>(src.data, row + c + 24, sc));
          const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(p01, p23), order);
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(weight + row + c), bytes);
        }
        for (; c + 8 <= c1; c += 8) {
          const __m256i code = codes8<D>(src.data, row + c, sc);
          const __m256i w = _mm256_packus_epi32(code, code);
          const __m256i b8 = _mm256_packus_epi16(w, w);
          const __m128i ordered = _mm_unpacklo_epi32(_mm256_castsi256_si128(b8), _mm256_extracti128_si256(b8, 1));
          _mm_storel_epi64(reinterpret_cast<__m128i*>(weight + row + c), ordered);
        }
        if (c < c1) quantize_scalar(src, row + c, row + c1, s, weight);
      }
    }
  }
}

void quantize(FloatSpan src, const Fp8BlockShape& shape, uint8_t* weight, void* scales) {
  switch (src.dtype) {
    case DType::BF16: return quantize_impl<DType::BF16>(src, shape, weight, scales);
    case DType::F16: return quantize_impl<DType::F16>(src, shape, weight, scales);
    default: return quantize_impl<DType::F32>(src, shape, weight, scales);
  }
}

}  // namespace

const Fp8BlockKernels kKernels = {dequantize_f32, dequantize_bf16, quantize};

}  // namespace fp4kit::fp8_block_avx2

#include "formats/avx2_end.h"
