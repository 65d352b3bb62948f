// The counter-based samplers: the AVX2 batch path against the scalar one bit for bit, and the
// distributions against their definitions.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "formats/isa.h"
#include "isa_cases.h"
#include "synth/random.h"
#include "synth/random_fill.h"

namespace fp4kit::synth {
namespace {

struct Moments {
  double mean = 0, variance = 0, kurtosis = 0, max_abs = 0;
};

Moments moments(const std::vector<float>& v) {
  Moments m;
  for (float x : v) m.mean += x;
  m.mean /= static_cast<double>(v.size());
  double m2 = 0, m4 = 0;
  for (float x : v) {
    const double d = x - m.mean;
    m2 += d * d;
    m4 += d * d * d * d;
    m.max_abs = std::max(m.max_abs, std::fabs(static_cast<double>(x)));
  }
  m2 /= static_cast<double>(v.size());
  m4 /= static_cast<double>(v.size());
  m.variance = m2;
  m.kurtosis = m4 / (m2 * m2);
  return m;
}

double fraction_above(const std::vector<float>& v, double threshold) {
  size_t n = 0;
  for (float x : v) n += std::fabs(x) > threshold;
  return static_cast<double>(n) / static_cast<double>(v.size());
}

TEST(SynthRandom, VectorFillMatchesScalarBitForBit) {
  FP4KIT_REQUIRE_SIMD();
  for (Isa isa : simd_isas()) {
    for (Distribution d : {Distribution::StudentT4, Distribution::NormalApprox}) {
      for (uint64_t key : {uint64_t{0}, uint64_t{0x0123456789ABCDEF}, ~uint64_t{0}}) {
        for (uint64_t first : {uint64_t{0}, uint64_t{5}, uint64_t{1} << 40, (uint64_t{1} << 62) + 1}) {
          for (size_t n : {size_t{0}, size_t{1}, size_t{3}, size_t{7}, size_t{8}, size_t{9}, size_t{15}, size_t{17},
                           size_t{31}, size_t{33}, size_t{65}, size_t{4099}}) {
            std::vector<float> a(n + 4, -7.0f), b(n + 4, -7.0f);
            random_fill(Isa::Scalar)(d, CounterRng{key}, first, n, a.data());
            random_fill(isa)(d, CounterRng{key}, first, n, b.data());
            ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
                << isa_name(isa) << " distribution " << static_cast<int>(d) << " key " << key << " first " << first
                << " n " << n;
          }
        }
      }
    }
  }
}

TEST(SynthRandom, AnyRunOfAStreamIsTheSameDraws) {
  std::vector<float> whole(1000), pieces(1000);
  random_fill()(Distribution::StudentT4, CounterRng{42}, 100, 1000, whole.data());
  random_fill()(Distribution::StudentT4, CounterRng{42}, 100, 333, pieces.data());
  random_fill()(Distribution::StudentT4, CounterRng{42}, 433, 667, pieces.data() + 333);
  EXPECT_EQ(whole, pieces);
  for (size_t i = 0; i < 1000; i += 97) EXPECT_EQ(whole[i], student_t4(half_word(CounterRng{42}, 100 + i)));
}

TEST(SynthRandom, StudentT4HasUnitVarianceAndTheTailsOfT4) {
  std::vector<float> v(1 << 21);
  random_fill()(Distribution::StudentT4, CounterRng{7}, 0, v.size(), v.data());
  const Moments m = moments(v);
  EXPECT_NEAR(m.mean, 0.0, 0.01);
  EXPECT_NEAR(m.variance, 1.0, 0.1);
  EXPECT_GT(m.kurtosis, 5.0);  // a normal has 3; t4's is unbounded
  for (float x : v) ASSERT_TRUE(std::isfinite(x));
  // Two-sided critical values of t with 4 degrees of freedom, divided by sqrt(2) for unit variance:
  // P(|t4| > 2.7764) = 0.05, P(|t4| > 4.6041) = 0.01, P(|t4| > 8.6103) = 0.001.
  EXPECT_NEAR(fraction_above(v, 2.7764 / std::sqrt(2.0)), 0.05, 0.002);
  EXPECT_NEAR(fraction_above(v, 4.6041 / std::sqrt(2.0)), 0.01, 0.0008);
  EXPECT_NEAR(fraction_above(v, 8.6103 / std::sqrt(2.0)), 0.001, 0.00015);
  // Symmetric: as many positive as negative draws.
  const auto positive = std::count_if(v.begin(), v.end(), [](float x) { return x > 0; });
  EXPECT_NEAR(static_cast<double>(positive) / static_cast<double>(v.size()), 0.5, 0.002);
}

TEST(SynthRandom, NormalApproxIsStandardAndBounded) {
  std::vector<float> v(1 << 20);
  random_fill()(Distribution::NormalApprox, CounterRng{9}, 0, v.size(), v.data());
  const Moments m = moments(v);
  EXPECT_NEAR(m.mean, 0.0, 0.005);
  EXPECT_NEAR(m.variance, 1.0, 0.01);
  EXPECT_NEAR(m.kurtosis, 2.7, 0.05);  // Irwin-Hall of 4: 3 - 1.2/4
  EXPECT_LE(m.max_abs, 3.47);
  EXPECT_NEAR(fraction_above(v, 1.96), 0.05, 0.003);
}

TEST(SynthRandom, StreamsAreIndependent) {
  const CounterRng root{1};
  EXPECT_NE(root.child("a").key, root.child("b").key);
  EXPECT_NE(root.child("a").key, CounterRng{2}.child("a").key);
  std::vector<float> a(4096), b(4096);
  random_fill()(Distribution::StudentT4, root.child("a"), 0, a.size(), a.data());
  random_fill()(Distribution::StudentT4, root.child("b"), 0, b.size(), b.data());
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    dot += double{a[i]} * b[i];
    na += double{a[i]} * a[i];
    nb += double{b[i]} * b[i];
  }
  EXPECT_LT(std::fabs(dot / std::sqrt(na * nb)), 0.1);  // uncorrelated
}

TEST(SynthRandom, UniformHelpersStayInRange) {
  for (uint64_t bits : {uint64_t{0}, ~uint64_t{0}, uint64_t{1} << 63}) {
    const float u = uniform_open(bits);
    EXPECT_GT(u, 0.0f);
    EXPECT_LT(u, 1.0f);
    EXPECT_LT(uniform_below(bits, 6), 6u);
  }
  EXPECT_EQ(uniform_below(~uint64_t{0}, 384), 383u);
  EXPECT_EQ(uniform_below(0, 384), 0u);
}

}  // namespace
}  // namespace fp4kit::synth
