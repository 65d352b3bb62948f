// AVX2 fast path of the MXFP4 kernels. Bit-identical to mxfp4_ref for every input:
//  - dequantize: per pair of 32-groups, the 16 products FP4_TABLE[q] * 2^(e-127) are computed with
//    the same f32 multiply as the reference and become a byte lookup table (vpshufb). Every such
//    product has its low 16 bits zero (a 2-bit significand times a power of two: exact, or an
//    overflow to Inf, or the scale's NaN 0x7FC00000; flushing modes only make it +-0), so its top
//    half is at once its BF16 rounding and, shifted back up, the f32 result. (Under a directed
//    rounding mode an overflow gives +-FLT_MAX instead: those calls go to the reference.)
//  - quantize: the same f32 operations as the reference. x/s is computed as x*(1/s), which is the
//    same correctly rounded value because s = 2^k with k in [-126, 126] has an exact reciprocal;
//    ceil(log2(v)) of the normal v = max(amax, 6*2^-126)/6 is read off its bits. Runs of 8 groups
//    that hold an Inf or a NaN go to the scalar reference.
// Project and standard headers come before the target pragma, so the inline functions they define
// are compiled for the baseline ISA and never shared with AVX2 code.
#include "formats/mxfp4.h"

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "formats/dtype.h"
#include "formats/e2m1.h"
#include "formats/float_span.h"

#include <immintrin.h>

#include "formats/avx2_begin.h"
#include "formats/avx2_common.h"

namespace fp4kit::mxfp4_avx2 {
namespace {

using namespace fp4kit::avx2;

constexpr size_t kGroup = kMxfp4BlockSize;  // 32 elements, 16 packed bytes, one scale byte

// ---- dequantize -------------------------------------------------------------------------------

// E8M0 bytes (one per int32 lane) -> E8M0::to_float: 2^(b-127), byte 0 = 2^-127, 0xFF = NaN.
inline __m256 e8m0_to_f32(__m256i b) {
  __m256i bits = _mm256_slli_epi32(b, 23);
  bits = _mm256_blendv_epi8(bits, _mm256_set1_epi32(0x00400000), _mm256_cmpeq_epi32(b, _mm256_setzero_si256()));
  bits = _mm256_blendv_epi8(bits, _mm256_set1_epi32(0x7FC00000), _mm256_cmpeq_epi32(b, _mm256_set1_epi32(0xFF)));
  return _mm256_castsi256_ps(bits);
}

// FP4_TABLE, four codes per 128-bit lane, repeated in both lanes.
struct Fp4Table {
  __m256 x, y, z, w;  // codes 0-3, 4-7, 8-11, 12-15
};

inline Fp4Table fp4_table() {
  const float* v = E2M1::kDeepSeekValues;
  Fp4Table t{_mm256_setr_ps(v[0], v[1], v[2], v[3], v[0], v[1], v[2], v[3]),
             _mm256_setr_ps(v[4], v[5], v[6], v[7], v[4], v[5], v[6], v[7]),
             _mm256_setr_ps(v[8], v[9], v[10], v[11], v[8], v[9], v[10], v[11]),
             _mm256_setr_ps(v[12], v[13], v[14], v[15], v[12], v[13], v[14], v[15])};
  // Hide the constants from the optimizer: seeing that codes 12-15 are all negative, GCC turns
  // s * (-c) into -(s * c), which flips the sign of the NaN a 0xFF scale produces.
  __asm__("" : "+x"(t.x), "+x"(t.y), "+x"(t.z), "+x"(t.w));
  return t;
}

// s = [s_g x4 | s_g+1 x4]. Per 128-bit lane k, byte c of *lo / *hi is the low / high byte of the
// top half of FP4_TABLE[c] * s_(g+k).
inline void pair_tables(const Fp4Table& t, __m256 s, __m256i* lo, __m256i* hi) {
  const __m256i qx = _mm256_srli_epi32(_mm256_castps_si256(_mm256_mul_ps(t.x, s)), 16);
  const __m256i qy = _mm256_srli_epi32(_mm256_castps_si256(_mm256_mul_ps(t.y, s)), 16);
  const __m256i qz = _mm256_srli_epi32(_mm256_castps_si256(_mm256_mul_ps(t.z, s)), 16);
  const __m256i qw = _mm256_srli_epi32(_mm256_castps_si256(_mm256_mul_ps(t.w, s)), 16);
  const __m256i a = _mm256_packus_epi32(qx, qy);  // lane k: codes 0..7 of group g+k, as u16
  const __m256i b = _mm256_packus_epi32(qz, qw);  // codes 8..15
  const __m256i low_byte = _mm256_set1_epi16(0x00FF);
  *lo = _mm256_packus_epi16(_mm256_and_si256(a, low_byte), _mm256_and_si256(b, low_byte));
  *hi = _mm256_packus_epi16(_mm256_srli_epi16(a, 8), _mm256_srli_epi16(b, 8));
}

// Two groups (32 packed bytes) -> out[0..3]: 16 BF16 results each, in element order
// (group g elements 0-15, 16-31, then group g+1 elements 0-15, 16-31).
inline void lookup_pair(const uint8_t* packed, __m256i tlo, __m256i thi, __m256i out[4]) {
  const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(packed));
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  const __m256i lo = _mm256_and_si256(bytes, nibble);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), nibble);
  const __m256i c0 = _mm256_unpacklo_epi8(lo, hi);  // per lane: elements 0..15 of its group
  const __m256i c1 = _mm256_unpackhi_epi8(lo, hi);  // elements 16..31
  const __m256i l0 = _mm256_shuffle_epi8(tlo, c0), h0 = _mm256_shuffle_epi8(thi, c0);
  const __m256i l1 = _mm256_shuffle_epi8(tlo, c1), h1 = _mm256_shuffle_epi8(thi, c1);
  const __m256i e0 = _mm256_unpacklo_epi8(l0, h0);  // elements 0..7
  const __m256i e1 = _mm256_unpackhi_epi8(l0, h0);  // 8..15
  const __m256i e2 = _mm256_unpacklo_epi8(l1, h1);  // 16..23
  const __m256i e3 = _mm256_unpackhi_epi8(l1, h1);  // 24..31
  out[0] = _mm256_permute2x128_si256(e0, e1, 0x20);
  out[1] = _mm256_permute2x128_si256(e2, e3, 0x20);
  out[2] = _mm256_permute2x128_si256(e0, e1, 0x31);
  out[3] = _mm256_permute2x128_si256(e2, e3, 0x31);
}

inline void store_bf16(const __m256i v[4], uint16_t* out) {
  for (int k = 0; k < 4; ++k) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 16 * k), v[k]);
}

inline void store_f32(const __m256i v[4], float* out) {
  for (int k = 0; k < 4; ++k) {
    const __m256i a = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(v[k])), 16);
    const __m256i b = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(v[k], 1)), 16);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 16 * k), a);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 16 * k + 8), b);
  }
}

template <bool kF32, typename T>
void dequantize_impl(const uint8_t* packed, const uint8_t* scales, size_t n, T* out) {
  const size_t groups = n / kGroup;
  // Under a directed rounding mode an overflowing product is +-FLT_MAX, whose low bits the tables
  // cannot hold: leave that (never expected) case to the reference from the start.
  const size_t vector_groups = (_mm_getcsr() & _MM_ROUND_MASK) == _MM_ROUND_NEAREST ? groups : 0;
  size_t g = 0;
  const Fp4Table table = fp4_table();
  __m256i v[4], tlo, thi;
  for (; g + 8 <= vector_groups; g += 8) {
    const __m256 s8 = e8m0_to_f32(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(scales + g))));
    for (int p = 0; p < 4; ++p) {
      const __m256i idx = _mm256_add_epi32(_mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1), _mm256_set1_epi32(2 * p));
      pair_tables(table, _mm256_permutevar8x32_ps(s8, idx), &tlo, &thi);
      const size_t first = (g + 2 * static_cast<size_t>(p)) * kGroup;
      lookup_pair(packed + first / 2, tlo, thi, v);
      if constexpr (kF32) store_f32(v, out + first); else store_bf16(v, out + first);
    }
  }
  for (; g + 2 <= vector_groups; g += 2) {
    const int b0 = scales[g], b1 = scales[g + 1];
    pair_tables(table, e8m0_to_f32(_mm256_setr_epi32(b0, b0, b0, b0, b1, b1, b1, b1)), &tlo, &thi);
    lookup_pair(packed + g * kGroup / 2, tlo, thi, v);
    if constexpr (kF32) store_f32(v, out + g * kGroup); else store_bf16(v, out + g * kGroup);
  }
  const size_t done = g * kGroup;
  if (done < n) {
    if constexpr (kF32) mxfp4_ref::dequantize_f32(packed + done / 2, scales + g, n - done, out + done);
    else mxfp4_ref::dequantize_bf16(packed + done / 2, scales + g, n - done, out + done);
  }
}

void dequantize_f32(const uint8_t* packed, const uint8_t* scales, size_t n, float* out) {
  dequantize_impl<true>(packed, scales, n, out);
}

void dequantize_bf16(const uint8_t* packed, const uint8_t* scales, size_t n, uint16_t* out) {
  dequantize_impl<false>(packed, scales, n, out);
}

// ---- quantize ---------------------------------------------------------------------------------

constexpr size_t kChunkGroups = 8;  // scales are computed 8 groups (one vector) at a time

template <DType D>
void quantize_impl(FloatSpan src, uint8_t* packed, uint8_t* scales) {
  const size_t groups = src.size / kGroup;
  size_t g = 0;
  for (; g + kChunkGroups <= groups; g += kChunkGroups) {
    const size_t base = g * kGroup;
    // |x| as integers: for non-negative floats the integer order is the float order, and Inf and
    // NaN are the only values at or above 0x7F800000.
    __m256 m[kChunkGroups];
    __m256i top = _mm256_setzero_si256();
    for (size_t b = 0; b < kChunkGroups; ++b) {
      __m256i acc = _mm256_setzero_si256();
      for (size_t v = 0; v < kGroup / 8; ++v)
        acc = _mm256_max_epi32(acc, abs_bits(load8<D>(src.data, base + b * kGroup + v * 8)));
      top = _mm256_max_epi32(top, acc);
      m[b] = _mm256_castsi256_ps(acc);
    }
    if (_mm256_movemask_epi8(_mm256_cmpgt_epi32(top, _mm256_set1_epi32(0x7F7FFFFF)))) {
      // NaN or Inf: left to the reference.
      mxfp4_ref::quantize(src.subspan(base, kChunkGroups * kGroup), packed + base / 2, scales + g);
      continue;
    }
    const __m256 amax = transpose_max8(m);  // finite, non-negative: float max = integer max
    // v = max(amax, 6*2^-126)/6 is normal and finite: ceil(log2(v)) + 127 = biased exponent,
    // plus one when the mantissa is nonzero; it lies in [1, 253].
    const __m256 v = _mm256_div_ps(_mm256_max_ps(amax, _mm256_set1_ps(6.0f * 0x1p-126f)), _mm256_set1_ps(6.0f));
    const __m256i byte = _mm256_srli_epi32(_mm256_add_epi32(_mm256_castps_si256(v), _mm256_set1_epi32(0x7FFFFF)), 23);
    store_lane_bytes(byte, scales + g);
    // 1/s = 2^(127-byte): biased exponent 254 - byte, in [1, 253], so x*(1/s) rounds as x/s.
    alignas(32) float recip[kChunkGroups];
    _mm256_store_ps(recip, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_sub_epi32(_mm256_set1_epi32(254), byte), 23)));
    for (size_t b = 0; b < kChunkGroups; ++b) {
      const __m256 r = _mm256_set1_ps(recip[b]);
      const size_t i = base + b * kGroup;
      const __m256i c0 = e2m1_codes(_mm256_mul_ps(load8<D>(src.data, i), r));
      const __m256i c1 = e2m1_codes(_mm256_mul_ps(load8<D>(src.data, i + 8), r));
      const __m256i c2 = e2m1_codes(_mm256_mul_ps(load8<D>(src.data, i + 16), r));
      const __m256i c3 = e2m1_codes(_mm256_mul_ps(load8<D>(src.data, i + 24), r));
      store_packed16(c0, c1, packed + i / 2);
      store_packed16(c2, c3, packed + i / 2 + 8);
    }
  }
  if (g < groups)
    mxfp4_ref::quantize(src.subspan(g * kGroup, (groups - g) * kGroup), packed + g * kGroup / 2, scales + g);
}

void quantize(FloatSpan src, uint8_t* packed, uint8_t* scales) {
  switch (src.dtype) {
    case DType::BF16: return quantize_impl<DType::BF16>(src, packed, scales);
    case DType::F16: return quantize_impl<DType::F16>(src, packed, scales);
    default: return quantize_impl<DType::F32>(src, packed, scales);
  }
}

}  // namespace

const Mxfp4Kernels kKernels = {dequantize_f32, dequantize_bf16, quantize};

}  // namespace fp4kit::mxfp4_avx2

#include "formats/avx2_end.h"
