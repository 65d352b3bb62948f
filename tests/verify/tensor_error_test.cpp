#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "verify/data_pass.h"
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
  EXPECT_DOUBLE_EQ(e.signal, 14.0);
  EXPECT_DOUBLE_EQ(e.noise, 0.25 + 0.0625);
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

TEST(TensorError, ChunkingDoesNotChangeTheResult) {
  std::vector<float> ref(1000), x(1000);
  for (size_t i = 0; i < ref.size(); ++i) {
    ref[i] = std::sin(static_cast<float>(i));
    x[i] = ref[i] + (i % 7 == 0 ? 0.01f : 0.0f);
  }
  TensorError whole, pieces;
  whole.add(x.data(), ref.data(), 1000);
  for (size_t at = 0; at < 1000; at += 64) pieces.add(x.data() + at, ref.data() + at, std::min<size_t>(64, 1000 - at));
  EXPECT_EQ(whole.exact, pieces.exact);
  EXPECT_NEAR(*whole.sqnr_db(), *pieces.sqnr_db(), 1e-9);
  EXPECT_EQ(whole.max_abs, pieces.max_abs);
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
