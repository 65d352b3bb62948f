#pragma once
// Counter-based random numbers for synthetic checkpoints. Word i of a stream is a pure function of
// (stream key, i): SplitMix64's i-th output for that key. Any piece of any tensor can therefore be
// generated on its own, on any thread, in any order, and the bytes never depend on how the work
// was cut. The samplers turn random bits into a value with plain f32 arithmetic (no FMA; division
// and square root correctly rounded), so that the AVX2 batch path (random_fill.h) gives the same
// bits as these.
#include <cmath>
#include <cstdint>
#include <string_view>

namespace fp4kit::synth {

inline constexpr uint64_t kGoldenGamma = 0x9E3779B97F4A7C15ull;

// SplitMix64's output function (Steele, Lea, Flood 2014): a bijection that scrambles every bit.
constexpr uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// FNV-1a over the bytes, then mixed: the tag of a tensor name.
constexpr uint64_t hash_name(std::string_view s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001B3ull;
  return mix64(h);
}

// A stream of random 64-bit words named by `key`.
struct CounterRng {
  uint64_t key = 0;

  // Word `counter` of the stream: the (counter+1)-th output of SplitMix64 seeded with `key`.
  constexpr uint64_t bits(uint64_t counter) const { return mix64(key + (counter + 1) * kGoldenGamma); }
  // An independent stream for a sub-purpose (a tensor, a row, "the outlier columns").
  constexpr CounterRng child(uint64_t tag) const { return CounterRng{mix64(key ^ mix64(tag ^ kGoldenGamma))}; }
  constexpr CounterRng child(std::string_view tag) const { return child(hash_name(tag)); }
};

// Uniform in (0, 1): 23 random bits, (2k+1) * 2^-24, exact in f32.
inline float uniform_open(uint64_t bits) { return static_cast<float>(2 * (bits >> 41) + 1) * 0x1p-24f; }

// Uniform integer in [0, n), n > 0 (multiply-shift on the top 32 bits; bias below 2^-32 * n).
inline uint64_t uniform_below(uint64_t bits, uint64_t n) { return ((bits >> 32) * n) >> 32; }

inline constexpr float kNormalApproxScale = 1.7320508075688772f / 65536.0f;  // sqrt(3)/2^16: variance 4/12 -> 1

// Approximately N(0, 1): the Irwin-Hall sum of four 16-bit uniforms, centred and scaled to unit
// variance. Bounded by +-3.46, which is all the "normal-ish" tensors need, and cheap.
inline float normal_approx(uint64_t bits) {
  const uint32_t sum = static_cast<uint32_t>((bits & 0xFFFF) + ((bits >> 16) & 0xFFFF) + ((bits >> 32) & 0xFFFF) +
                                             (bits >> 48));
  return (static_cast<float>(sum) - 131070.0f) * kNormalApproxScale;  // sum of (u_i + 0.5)/2^16 minus 2, exact
}

// Constants of the Student-t sampler, shared with its vector form.
namespace student_t4_constants {
inline constexpr float kPi = 3.14159265358979323846f;
inline constexpr float kInvSqrt2 = 0.70710678118654752440f;
// cos(x) on [-pi/2, pi/2] by its Taylor polynomial to x^8 (error below 3e-6)
inline constexpr float kC8 = 1.0f / 40320.0f, kC6 = 1.0f / 720.0f, kC4 = 1.0f / 24.0f;
}  // namespace student_t4_constants

// Student's t with 4 degrees of freedom scaled to unit variance (t4 itself has variance 2): heavy
// tailed like trained weights, from 32 random bits, with one division and one square root.
// Bailey's polar method with both polar coordinates drawn directly: T = cos(theta) * 2*sqrt(W^(-1/2) - 1)
// for W uniform in (0, 1) and theta uniform. V = W^(1/2) has density 2v, which is that of the
// larger of two uniforms, so T = cos(theta) * 2*sqrt((1 - V) / V) with V = max(U1, U2).
// Bits: 31..22 and 21..12 the two uniforms (10 bits each), 11..1 the angle in [-pi/2, pi/2),
// bit 0 the sign of the cosine (the other half-turn). V's resolution bounds |T| by 64: trained
// weights have no 1000-sigma values either.
inline float student_t4(uint32_t bits) {
  using namespace student_t4_constants;
  const uint32_t k1 = bits >> 22, k2 = (bits >> 12) & 0x3FF;
  const float v = static_cast<float>(2 * (k1 > k2 ? k1 : k2) + 1) * 0x1p-11f;
  const float a = static_cast<float>((bits >> 1) & 0x7FF) * 0x1p-11f;
  const float x = (a - 0.5f) * kPi;
  // cos(x), Estrin's scheme: (1 - x^2/2) + x^4 * ((1/24 - x^2/720) + x^4/40320)
  const float x2 = x * x, x4 = x2 * x2;
  float c = (1.0f - 0.5f * x2) + x4 * ((kC4 - kC6 * x2) + kC8 * x4);
  if (bits & 1) c = -c;
  const float r = 2.0f * std::sqrt((1.0f - v) / v);
  return c * r * kInvSqrt2;
}

// Draw i of a stream for the 32-bit samplers: half i%2 of word i/2, so that one word serves two.
constexpr uint32_t half_word(CounterRng rng, uint64_t i) {
  return static_cast<uint32_t>(rng.bits(i >> 1) >> ((i & 1) * 32));
}

}  // namespace fp4kit::synth
