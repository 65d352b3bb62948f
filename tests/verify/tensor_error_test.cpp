#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "formats/isa.h"
#include "verify/data_pass.h"
#include "isa_cases.h"
#include "verify/tensor_error.h"

namespace fp4kit::verify {
namespace {

TEST(TensorError, ComputesSqnrRmsMaxAndExactCounts) {
  const std::vector<float> ref = {1.0f, -2.0f, 3.0f, 0.0f};
  const std::vector<float> x = {1.0f, -2.5f, 3.0f, 0.25f};
  TensorError e;
  e.add(x.data(), ref.data(), ref.size());
  EXPECT_EQ(e.values, 4u);
  EXPECT_EQ(e.exact, 2u);
  EXPECT_DOUBLE_EQ(e.signal(), 14.0);
  EXPECT_DOUBLE_EQ(e.noise(), 0.25 + 0.0625);
  EXPECT_DOUBLE_EQ(e.max_abs, 0.5);
  EXPECT_NEAR(*e.sqnr_db(), 10.0 * std::log10(14.0 / 0.3125), 1e-12);
  EXPECT_NEAR(e.rel_rms(), std::sqrt(0.3125 / 14.0), 1e-12);
}

TEST(TensorError, ExactIsInfiniteAndNonFiniteValuesAreCountedNotSummed) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const std::vector<float> ref = {1.0f, 2.0f, nan, 4.0f};
  const std::vector<float> x = {1.0f, inf, nan, 4.0f};
  TensorError e;
  e.add(x.data(), ref.data(), ref.size());
  EXPECT_EQ(e.nan, 1u);
  EXPECT_EQ(e.inf, 1u);
  EXPECT_EQ(e.ref_nan, 1u);
  EXPECT_EQ(e.skipped, 2u);
  EXPECT_FALSE(e.sqnr_db());  // the finite pairs are exact
  EXPECT_EQ(e.rel_rms(), 0.0);
  TensorError zero_ref;
  const std::vector<float> z = {0.0f}, one = {1.0f};
  zero_ref.add(one.data(), z.data(), 1);
  EXPECT_EQ(*zero_ref.sqnr_db(), kSqnrFloorDb);
}

void expect_same(const TensorError& a, const TensorError& b) {
  EXPECT_EQ(a.values, b.values);
  EXPECT_EQ(a.exact, b.exact);
  EXPECT_EQ(a.nan, b.nan);
  EXPECT_EQ(a.inf, b.inf);
  EXPECT_EQ(a.ref_nan, b.ref_nan);
  EXPECT_EQ(a.ref_inf, b.ref_inf);
  EXPECT_EQ(a.skipped, b.skipped);
  EXPECT_EQ(a.signal_lanes, b.signal_lanes);  // bit for bit, lane by lane
  EXPECT_EQ(a.noise_lanes, b.noise_lanes);
  EXPECT_EQ(a.max_abs, b.max_abs);
}

// Values a quantizer's error test meets: random scales over many binades, exact copies, signed
// zeros, subnormals, the f32 extremes, and NaN/Inf on either side.
std::pair<std::vector<float>, std::vector<float>> adversarial_pairs(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int> pick(0, 15), binade(-40, 40);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const float special[] = {0.0f, -0.0f, nan, inf, -inf, std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                           std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::min(), 1e-30f};
  std::vector<float> ref(n), x(n);
  for (size_t i = 0; i < n; ++i) {
    ref[i] = std::ldexp(normal(rng), binade(rng));
    const int k = pick(rng);
    if (k < 4) x[i] = ref[i];                                     // exact
    else if (k < 12) x[i] = ref[i] * (1.0f + 0.1f * normal(rng));  // lossy
    else if (k < 14) x[i] = special[rng() % std::size(special)];
    else ref[i] = special[rng() % std::size(special)], x[i] = normal(rng);
  }
  // Long finite stretches too, where the vector path runs unbroken.
  for (size_t i = n / 2; i < n / 2 + std::min<size_t>(n / 4, 4096); ++i) {
    ref[i] = normal(rng);
    x[i] = ref[i] + 0.01f * normal(rng);
  }
  return {x, ref};
}

TEST(TensorError, FastPathEqualsTheScalarDefinitionOnRandomAndAdversarialInputs) {
  FP4KIT_REQUIRE_SIMD();
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(isa_name(isa));
    const TensorErrorAdd fast_add = tensor_error_add_kernel(isa);
    ASSERT_NE(fast_add, nullptr);
    for (uint32_t seed = 1; seed <= 6; ++seed) {
      const auto [x, ref] = adversarial_pairs(20000 + seed * 37, seed);
      TensorError scalar, fast;
      scalar.add_ref(x.data(), ref.data(), x.size());
      fast_add(fast, x.data(), ref.data(), x.size());
      expect_same(scalar, fast);
      EXPECT_GT(scalar.skipped, 0u);
      EXPECT_GT(scalar.exact, 0u);
      // Chunks of odd sizes start the vector path off lane 0.
      TensorError pieces;
      std::mt19937 rng(seed);
      for (size_t at = 0; at < x.size();) {
        const size_t len = std::min<size_t>(rng() % 100, x.size() - at);
        fast_add(pieces, x.data() + at, ref.data() + at, len);
        at += len;
      }
      expect_same(scalar, pieces);
    }
  }
}

TEST(TensorError, ChunkingDoesNotChangeTheResult) {
  std::vector<float> ref(1000), x(1000);
  for (size_t i = 0; i < ref.size(); ++i) {
    ref[i] = std::sin(static_cast<float>(i));
    x[i] = ref[i] + (i % 7 == 0 ? 0.01f : 0.0f);
  }
  for (size_t piece : {size_t{64}, size_t{13}, size_t{1}}) {
    TensorError whole, pieces;
    whole.add(x.data(), ref.data(), 1000);
    for (size_t at = 0; at < 1000; at += piece) pieces.add(x.data() + at, ref.data() + at, std::min<size_t>(piece, 1000 - at));
    expect_same(whole, pieces);
    EXPECT_EQ(*whole.sqnr_db(), *pieces.sqnr_db());
  }
}

TEST(TensorKind, GathersLayersAndExperts) {
  EXPECT_EQ(tensor_kind("layers.3.ffn.experts.7.w1.weight"), std::make_pair(std::string("ffn.experts.w1"), int64_t{3}));
  EXPECT_EQ(tensor_kind("mtp.0.ffn.experts.1.w2.weight"), std::make_pair(std::string("mtp.ffn.experts.w2"), int64_t{-1}));
  EXPECT_EQ(tensor_kind("model.layers.12.self_attn.q_proj.weight_packed"),
            std::make_pair(std::string("self_attn.q_proj"), int64_t{12}));
  EXPECT_EQ(tensor_kind("head.weight"), std::make_pair(std::string("head"), int64_t{-1}));
}

}  // namespace
}  // namespace fp4kit::verify
