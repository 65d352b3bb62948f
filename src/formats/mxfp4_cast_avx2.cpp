// AVX2 fast path of the lossless MXFP4 -> NVFP4 cast. Two 32-element groups (32 packed bytes) per
// step: each 128-bit lane takes its group's 16-entry code table (Mxfp4CastTable) and transcodes
// both nibbles of every byte with vpshufb. The tables come from the reference arithmetic itself, so
// the bytes are those of mxfp4_cast_ref::cast by construction (the kernels test checks it on every
// scale byte and every nibble). The counts: a group is exact unless it holds a code its entry marks
// inexact, which is looked for only in such (rare) groups.
// Project and standard headers come before the target pragma (see avx2_begin.h).
#include "formats/mxfp4_cast.h"

#include <cstddef>
#include <cstdint>

#include "formats/e8m0.h"

#include <immintrin.h>

#include "formats/avx2_begin.h"

namespace fp4kit::mxfp4_cast_avx2 {
namespace {

constexpr size_t kGroupBytes = kMxfp4BlockSize / 2;

inline unsigned largest_magnitude(const uint8_t* group_packed) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(group_packed));
  const __m128i low = _mm_and_si128(bytes, _mm_set1_epi8(0x07));
  const __m128i high = _mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(0x07));
  __m128i m = _mm_max_epu8(low, high);
  m = _mm_max_epu8(m, _mm_srli_si128(m, 8));
  m = _mm_max_epu8(m, _mm_srli_si128(m, 4));
  m = _mm_max_epu8(m, _mm_srli_si128(m, 2));
  m = _mm_max_epu8(m, _mm_srli_si128(m, 1));
  return static_cast<unsigned>(_mm_cvtsi128_si32(m) & 0xFF);
}

// The entry of group g, and its counts.
inline const Mxfp4CastEntry& group_entry(const uint8_t* packed, const uint8_t* scales, size_t g,
                                         const Mxfp4CastTable& table, Mxfp4CastStats& stats) {
  const uint8_t b = scales[g];
  const Mxfp4CastEntry& e =
      table.entry(b, table.in_window(b) ? 0u : largest_magnitude(packed + g * kGroupBytes));
  const int k = static_cast<int>(b) - E8M0::kBias;
  stats.zero_scale_groups += b == 0;
  stats.reported_lossless += b == 0 || k >= table.params().k_max_shared - 17;
  bool exact = e.inexact_codes == 0;
  if (!exact) {
    unsigned present = 0;
    for (size_t j = 0; j < kGroupBytes; ++j) {
      const uint8_t byte = packed[g * kGroupBytes + j];
      present |= (1u << (byte & 0xF)) | (1u << (byte >> 4));
    }
    exact = (present & e.inexact_codes) == 0;
  }
  stats.exact_groups += exact;
  return e;
}

inline __m128i transcode16(__m128i bytes, __m128i codes) {
  const __m128i nibble = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_shuffle_epi8(codes, _mm_and_si128(bytes, nibble));
  const __m128i hi = _mm_shuffle_epi8(codes, _mm_and_si128(_mm_srli_epi16(bytes, 4), nibble));
  return _mm_or_si128(lo, _mm_slli_epi16(hi, 4));  // codes < 16: the shift stays inside each byte
}

}  // namespace

Mxfp4CastStats cast(const uint8_t* packed, const uint8_t* scales, size_t n, const Mxfp4CastTable& table,
                    uint8_t* out_packed, uint8_t* out_scales) {
  Mxfp4CastStats stats;
  const size_t groups = n / kMxfp4BlockSize;
  stats.groups = groups;
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  size_t g = 0;
  for (; g + 2 <= groups; g += 2) {
    const Mxfp4CastEntry& e0 = group_entry(packed, scales, g, table, stats);
    const Mxfp4CastEntry& e1 = group_entry(packed, scales, g + 1, table, stats);
    const __m256i codes = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(e0.code.data()))),
        _mm_load_si128(reinterpret_cast<const __m128i*>(e1.code.data())), 1);
    const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(packed + g * kGroupBytes));
    const __m256i lo = _mm256_shuffle_epi8(codes, _mm256_and_si256(bytes, nibble));
    const __m256i hi = _mm256_shuffle_epi8(codes, _mm256_and_si256(_mm256_srli_epi16(bytes, 4), nibble));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out_packed + g * kGroupBytes),
                        _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)));
    const uint32_t four = static_cast<uint32_t>(e0.scale) * 0x0101u + static_cast<uint32_t>(e1.scale) * 0x01010000u;
    __builtin_memcpy(out_scales + 2 * g, &four, 4);
  }
  for (; g < groups; ++g) {
    const Mxfp4CastEntry& e = group_entry(packed, scales, g, table, stats);
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + g * kGroupBytes));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out_packed + g * kGroupBytes),
                     transcode16(bytes, _mm_load_si128(reinterpret_cast<const __m128i*>(e.code.data()))));
    out_scales[2 * g] = out_scales[2 * g + 1] = e.scale;
  }
  return stats;
}

}  // namespace fp4kit::mxfp4_cast_avx2

#include "formats/avx2_end.h"
