// AVX2 form of random_fill: eight draws per step, the same f32 operations in the same order as the
// scalar samplers (no FMA, correctly rounded sqrt and division), so the bits are identical.
// SplitMix64 needs 64-bit multiplies, which AVX2 lacks: each is three 32x32->64 products.
// Project and standard headers come before the target pragma (see avx2_begin.h).
#include "synth/random_fill.h"

#include <cstddef>
#include <cstdint>

#include "synth/random.h"

#include <immintrin.h>

#include "formats/avx2_begin.h"

namespace fp4kit::synth::random_fill_avx2 {
namespace {

// a * k mod 2^64 in each 64-bit lane, k a constant split into its 32-bit halves.
inline __m256i mul64(__m256i a, __m256i k_lo, __m256i k_hi) {
  const __m256i lo = _mm256_mul_epu32(a, k_lo);
  const __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), k_lo), _mm256_mul_epu32(a, k_hi));
  return _mm256_add_epi64(lo, _mm256_slli_epi64(cross, 32));
}

// SplitMix64's output function in each lane; m = its two multipliers split into 32-bit halves.
struct MixConstants {
  __m256i m1_lo, m1_hi, m2_lo, m2_hi;
};

inline __m256i mix64x4(__m256i z, const MixConstants& m) {
  z = mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), m.m1_lo, m.m1_hi);
  z = mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), m.m2_lo, m.m2_hi);
  return _mm256_xor_si256(z, _mm256_srli_epi64(z, 31));
}

inline __m256i set1_u64(uint64_t v) { return _mm256_set1_epi64x(static_cast<long long>(v)); }

// Low dwords of a's four lanes at even positions, of b's at odd ones. With a holding the draws
// 0, 2, 4, 6 and b the draws 1, 3, 5, 7, that is the eight draws in order.
inline __m256i interleave_low(__m256i a, __m256i b) { return _mm256_blend_epi32(a, _mm256_slli_epi64(b, 32), 0xAA); }

// Eight consecutive words of a stream per step, for the 64-bit samplers.
class WordStream {
 public:
  WordStream(CounterRng rng, uint64_t first) {
    constexpr uint64_t kM1 = 0xBF58476D1CE4E5B9ull, kM2 = 0x94D049BB133111EBull;
    mix_ = {set1_u64(kM1 & 0xFFFFFFFFu), set1_u64(kM1 >> 32), set1_u64(kM2 & 0xFFFFFFFFu), set1_u64(kM2 >> 32)};
    const uint64_t g = kGoldenGamma;
    const uint64_t base = rng.key + (first + 1) * g;
    even_ = _mm256_setr_epi64x(static_cast<long long>(base), static_cast<long long>(base + 2 * g),
                               static_cast<long long>(base + 4 * g), static_cast<long long>(base + 6 * g));
    odd_ = _mm256_add_epi64(even_, set1_u64(g));
    step_ = set1_u64(8 * g);
  }
  // The words of draws 0, 2, 4, 6 (*even) and 1, 3, 5, 7 (*odd); then moves on by eight.
  void next(__m256i* even, __m256i* odd) {
    *even = mix64x4(even_, mix_);
    *odd = mix64x4(odd_, mix_);
    even_ = _mm256_add_epi64(even_, step_);
    odd_ = _mm256_add_epi64(odd_, step_);
  }

 private:
  MixConstants mix_;
  __m256i even_, odd_, step_;
};

// Four consecutive words per step: eight draws of 32 bits, in order, as the dwords of the vector.
void fill_student_t4(CounterRng rng, uint64_t first, size_t n, float* out) {
  using namespace student_t4_constants;
  size_t i = 0;
  if (n > 0 && (first & 1)) {  // start on a word boundary
    out[0] = student_t4(half_word(rng, first));
    i = 1;
  }
  constexpr uint64_t kM1 = 0xBF58476D1CE4E5B9ull, kM2 = 0x94D049BB133111EBull;
  const MixConstants mix{set1_u64(kM1 & 0xFFFFFFFFu), set1_u64(kM1 >> 32), set1_u64(kM2 & 0xFFFFFFFFu), set1_u64(kM2 >> 32)};
  const uint64_t g = kGoldenGamma;
  const uint64_t base = rng.key + ((first + i) / 2 + 1) * g;
  __m256i z = _mm256_setr_epi64x(static_cast<long long>(base), static_cast<long long>(base + g),
                                 static_cast<long long>(base + 2 * g), static_cast<long long>(base + 3 * g));
  const __m256i step = set1_u64(4 * g);
  const __m256i mask10 = _mm256_set1_epi32(0x3FF), mask11 = _mm256_set1_epi32(0x7FF);
  const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f), two = _mm256_set1_ps(2.0f);
  for (; i + 8 <= n; i += 8) {
    const __m256i h = mix64x4(z, mix);
    z = _mm256_add_epi64(z, step);
    const __m256i k = _mm256_max_epu32(_mm256_srli_epi32(h, 22), _mm256_and_si256(_mm256_srli_epi32(h, 12), mask10));
    const __m256i angle = _mm256_and_si256(_mm256_srli_epi32(h, 1), mask11);
    const __m256i signs = _mm256_slli_epi32(h, 31);
    const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_add_epi32(k, k), _mm256_set1_epi32(1))),
                                   _mm256_set1_ps(0x1p-11f));
    const __m256 a = _mm256_mul_ps(_mm256_cvtepi32_ps(angle), _mm256_set1_ps(0x1p-11f));
    const __m256 x = _mm256_mul_ps(_mm256_sub_ps(a, half), _mm256_set1_ps(kPi));
    const __m256 x2 = _mm256_mul_ps(x, x), x4 = _mm256_mul_ps(x2, x2);
    const __m256 lo = _mm256_sub_ps(one, _mm256_mul_ps(half, x2));
    const __m256 hi = _mm256_add_ps(_mm256_sub_ps(_mm256_set1_ps(kC4), _mm256_mul_ps(_mm256_set1_ps(kC6), x2)),
                                    _mm256_mul_ps(_mm256_set1_ps(kC8), x4));
    const __m256 c = _mm256_xor_ps(_mm256_add_ps(lo, _mm256_mul_ps(x4, hi)), _mm256_castsi256_ps(signs));
    const __m256 r = _mm256_mul_ps(two, _mm256_sqrt_ps(_mm256_div_ps(_mm256_sub_ps(one, v), v)));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(c, r), _mm256_set1_ps(kInvSqrt2)));
  }
  for (; i < n; ++i) out[i] = student_t4(half_word(rng, first + i));
}

void fill_normal_approx(CounterRng rng, uint64_t first, size_t n, float* out) {
  WordStream words(rng, first);
  const __m256i mask16 = _mm256_set1_epi32(0xFFFF);
  const __m256 offset = _mm256_set1_ps(131070.0f), scale = _mm256_set1_ps(kNormalApproxScale);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i h0, h1;
    words.next(&h0, &h1);
    const __m256i lo = interleave_low(h0, h1);
    const __m256i hi = interleave_low(_mm256_srli_epi64(h0, 32), _mm256_srli_epi64(h1, 32));
    const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(_mm256_and_si256(lo, mask16), _mm256_srli_epi32(lo, 16)),
                                         _mm256_add_epi32(_mm256_and_si256(hi, mask16), _mm256_srli_epi32(hi, 16)));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(sum), offset), scale));
  }
  for (; i < n; ++i) out[i] = normal_approx(rng.bits(first + i));
}

}  // namespace

void fill(Distribution d, CounterRng rng, uint64_t first, size_t n, float* out) {
  if (d == Distribution::StudentT4) fill_student_t4(rng, first, n, out);
  else fill_normal_approx(rng, first, n, out);
}

}  // namespace fp4kit::synth::random_fill_avx2

#include "formats/avx2_end.h"
