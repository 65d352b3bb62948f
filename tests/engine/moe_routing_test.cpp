// The router's choice from its scores (engine::route_scores), on cases worked out by hand: the top k
// of score + bias with ties to the lower expert, NaN scores and a NaN bias as -inf, ±0 tied, the
// weights renormalised over the chosen scores times the scaling and listed by ascending expert;
// hash layers take their tid2eid rows.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "engine/moe.h"

namespace fp4kit {
namespace {

TEST(MoeRouting, TopKOfBiasedScoresTiesToTheLowerExpert) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // Token 0: biased 0.5, 0.9, 0.9, 0.1, 0.7 -> experts 1, 2 (tie: 1 first), then 4 at k = 3.
  // Token 1: expert 0's score NaN and expert 3's bias NaN (both -inf); biased -inf, 1.7, 0.6, -inf,
  //          0.1 -> experts 1, 2.
  const std::vector<float> score = {0.5f, 0.4f, 0.9f, 0.1f, 0.7f, nan, 1.2f, 0.6f, 2.0f, 0.1f};
  const std::vector<float> bias = {0.0f, 0.5f, 0.0f, 0.0f, 0.0f};
  std::vector<float> b1 = bias;
  const engine::Routing r = engine::route_scores(score.data(), 1, 5, 3, bias.data(), nullptr, nullptr, 2.0f);
  ASSERT_EQ(r.experts, (std::vector<int64_t>{1, 2, 4}));
  const float sum = 0.4f + 0.9f + 0.7f;  // the chosen scores (not biased) in the order chosen: 1, 2, 4
  EXPECT_EQ(r.weights[0], 0.4f / (sum + 1e-20f) * 2.0f);
  EXPECT_EQ(r.weights[1], 0.9f / (sum + 1e-20f) * 2.0f);
  EXPECT_EQ(r.weights[2], 0.7f / (sum + 1e-20f) * 2.0f);

  b1[3] = nan;
  const engine::Routing r1 = engine::route_scores(score.data() + 5, 1, 5, 2, b1.data(), nullptr, nullptr, 1.0f);
  ASSERT_EQ(r1.experts, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(r1.weights[0], 1.2f / (1.2f + 0.6f + 1e-20f));
  EXPECT_EQ(r1.weights[1], 0.6f / (1.2f + 0.6f + 1e-20f));
}

TEST(MoeRouting, SignedZerosTieAndEveryNanScoreTakesTheFirstExperts) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> zeros = {0.0f, -0.0f, 0.0f, -0.0f};
  const std::vector<float> no_bias(4, 0.0f);
  EXPECT_EQ(engine::route_scores(zeros.data(), 1, 4, 2, no_bias.data(), nullptr, nullptr, 1.0f).experts,
            (std::vector<int64_t>{0, 1}));
  const std::vector<float> all_nan(4, nan);
  const engine::Routing r = engine::route_scores(all_nan.data(), 1, 4, 3, no_bias.data(), nullptr, nullptr, 1.0f);
  EXPECT_EQ(r.experts, (std::vector<int64_t>{0, 1, 2}));
  for (float w : r.weights) EXPECT_TRUE(std::isnan(w));
}

TEST(MoeRouting, HashLayersTakeTheirTableRowsInAscendingOrder) {
  const std::vector<float> score = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f};
  const std::vector<int64_t> table = {3, 0, 1, 2};  // [vocab 2, k 2]
  const std::vector<int64_t> ids = {1, 0};
  const engine::Routing r = engine::route_scores(score.data(), 2, 4, 2, nullptr, table.data(), ids.data(), 1.0f);
  EXPECT_EQ(r.experts, (std::vector<int64_t>{1, 2, 0, 3}));
  EXPECT_EQ(r.weights[0], 0.2f / (0.2f + 0.3f + 1e-20f));  // token 0 (id 1): experts 1, 2
  EXPECT_EQ(r.weights[2], 0.5f / (0.8f + 0.5f + 1e-20f));  // token 1 (id 0): 3 then 0, summed in that order
}

}  // namespace
}  // namespace fp4kit
