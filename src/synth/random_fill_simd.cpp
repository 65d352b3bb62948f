// Vector form of random_fill, one source for every ISA (Highway): a vector of consecutive 64-bit
// words per step, the same f32 operations in the same order as the scalar samplers (no FMA,
// correctly rounded sqrt and division on every target), so the bits are identical on every ISA.
// SplitMix64 needs 64-bit multiplies, which not every target has: each is three 32x32->64 products.
#include "formats/simd_targets.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "synth/random_fill_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <cstddef>
#include <cstdint>

#include "synth/random.h"
#include "synth/random_fill.h"

HWY_BEFORE_NAMESPACE();
namespace fp4kit::synth::random_fill_simd::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
#if FP4KIT_SIMD_KERNELS

using D64 = hn::ScalableTag<uint64_t>;
using V64 = hn::Vec<D64>;
using D32 = hn::Repartition<uint32_t, D64>;
using DF = hn::Repartition<float, D64>;
using DI = hn::Repartition<int32_t, D64>;

constexpr uint64_t kM1 = 0xBF58476D1CE4E5B9ull, kM2 = 0x94D049BB133111EBull;

// a * k mod 2^64 in each lane: the low product plus the two cross products shifted up.
HWY_INLINE V64 mul64(V64 a, uint64_t k) {
  const D64 d;
  const D32 d32;
  const auto k_lo = hn::BitCast(d32, hn::Set(d, k & 0xFFFFFFFFu));
  const auto k_hi = hn::BitCast(d32, hn::Set(d, k >> 32));
  const auto a32 = hn::BitCast(d32, a);
  const V64 lo = hn::MulEven(a32, k_lo);
  const V64 cross = hn::Add(hn::MulEven(hn::BitCast(d32, hn::ShiftRight<32>(a)), k_lo), hn::MulEven(a32, k_hi));
  return hn::Add(lo, hn::ShiftLeft<32>(cross));
}

// SplitMix64's output function in each lane.
HWY_INLINE V64 mix64(V64 z) {
  z = mul64(hn::Xor(z, hn::ShiftRight<30>(z)), kM1);
  z = mul64(hn::Xor(z, hn::ShiftRight<27>(z)), kM2);
  return hn::Xor(z, hn::ShiftRight<31>(z));
}

// The counters of words w, w+1, ... in the lanes: key + (w + 1 + lane) * gamma.
HWY_INLINE V64 counters(CounterRng rng, uint64_t w) {
  const D64 d;
  HWY_ALIGN uint64_t lanes[HWY_MAX_BYTES / sizeof(uint64_t)];
  for (size_t j = 0; j < hn::Lanes(d); ++j) lanes[j] = rng.key + (w + 1 + j) * kGoldenGamma;
  return hn::Load(d, lanes);
}

// A word per two draws: the 32-bit lanes of the mixed words are the draws in order.
void fill_student_t4(CounterRng rng, uint64_t first, size_t n, float* out) {
  using namespace student_t4_constants;
  const D64 d;
  const D32 d32;
  const DF df;
  const DI di;
  const size_t per_step = hn::Lanes(df);
  size_t i = 0;
  if (n > 0 && (first & 1)) {  // start on a word boundary
    out[0] = student_t4(half_word(rng, first));
    i = 1;
  }
  V64 z = counters(rng, (first + i) / 2);
  const V64 step = hn::Set(d, hn::Lanes(d) * kGoldenGamma);
  const auto mask10 = hn::Set(d32, 0x3FFu), mask11 = hn::Set(d32, 0x7FFu);
  const auto one = hn::Set(df, 1.0f), half = hn::Set(df, 0.5f), two = hn::Set(df, 2.0f), ulp = hn::Set(df, 0x1p-11f);
  for (; i + per_step <= n; i += per_step) {
    const auto h = hn::BitCast(d32, mix64(z));
    z = hn::Add(z, step);
    const auto k = hn::Max(hn::ShiftRight<22>(h), hn::And(hn::ShiftRight<12>(h), mask10));
    const auto angle = hn::And(hn::ShiftRight<1>(h), mask11);
    const auto signs = hn::BitCast(df, hn::ShiftLeft<31>(h));
    const auto v = hn::Mul(hn::ConvertTo(df, hn::BitCast(di, hn::Add(hn::Add(k, k), hn::Set(d32, 1u)))), ulp);
    const auto a = hn::Mul(hn::ConvertTo(df, hn::BitCast(di, angle)), ulp);
    const auto x = hn::Mul(hn::Sub(a, half), hn::Set(df, kPi));
    const auto x2 = hn::Mul(x, x), x4 = hn::Mul(x2, x2);
    const auto lo = hn::Sub(one, hn::Mul(half, x2));
    const auto hi = hn::Add(hn::Sub(hn::Set(df, kC4), hn::Mul(hn::Set(df, kC6), x2)), hn::Mul(hn::Set(df, kC8), x4));
    const auto c = hn::Xor(hn::Add(lo, hn::Mul(x4, hi)), signs);
    const auto r = hn::Mul(two, hn::Sqrt(hn::Div(hn::Sub(one, v), v)));
    hn::StoreU(hn::Mul(hn::Mul(c, r), hn::Set(df, kInvSqrt2)), df, out + i);
  }
  for (; i < n; ++i) out[i] = student_t4(half_word(rng, first + i));
}

// A word per draw: the four 16-bit pieces of each word summed in its lane, two vectors of words
// narrowed to one of sums.
void fill_normal_approx(CounterRng rng, uint64_t first, size_t n, float* out) {
  const D64 d;
  const D32 d32;
  const DF df;
  const DI di;
  const size_t words = hn::Lanes(d), per_step = 2 * words;
  V64 z = counters(rng, first);
  const V64 step = hn::Set(d, words * kGoldenGamma);
  const auto mask16 = hn::Set(d32, 0xFFFFu);
  const auto low32 = hn::Set(d, 0xFFFFFFFFull);
  const auto offset = hn::Set(df, 131070.0f), scale = hn::Set(df, kNormalApproxScale);
  const auto sums = [&](V64 word) HWY_ATTR {
    const auto h = hn::BitCast(d32, mix64(word));
    const auto halves = hn::BitCast(d, hn::Add(hn::And(h, mask16), hn::ShiftRight<16>(h)));
    return hn::BitCast(d32, hn::Add(hn::And(halves, low32), hn::ShiftRight<32>(halves)));
  };
  size_t i = 0;
  for (; i + per_step <= n; i += per_step) {
    const auto first_half = sums(z);
    const auto second_half = sums(hn::Add(z, step));
    z = hn::Add(z, hn::Add(step, step));
    const auto sum = hn::ConcatEven(d32, second_half, first_half);  // the low dword of each lane, in order
    hn::StoreU(hn::Mul(hn::Sub(hn::ConvertTo(df, hn::BitCast(di, sum)), offset), scale), df, out + i);
  }
  for (; i < n; ++i) out[i] = normal_approx(rng.bits(first + i));
}

void fill(Distribution dist, CounterRng rng, uint64_t first, size_t n, float* out) {
  if (dist == Distribution::StudentT4) fill_student_t4(rng, first, n, out);
  else fill_normal_approx(rng, first, n, out);
}

RandomFill kernel() { return &fill; }
#else
RandomFill kernel() { return nullptr; }
#endif

}  // namespace fp4kit::synth::random_fill_simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "formats/simd_dispatch.h"

namespace fp4kit::synth::random_fill_simd {
HWY_EXPORT(kernel);

RandomFill fill_for(Isa isa) {
  const auto entry = simd::table_entry(HWY_DISPATCH_TABLE(kernel), isa);
  return entry ? entry() : nullptr;
}
}  // namespace fp4kit::synth::random_fill_simd
#endif
