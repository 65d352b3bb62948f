// compare_logits on logits small enough to work out by hand, and on NaN.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/logit_compare.h"
#include "nan_aware.h"

namespace fp4kit::engine {
namespace {

// Three positions over a vocabulary of two (A is the reference):
//  0: A = [ln 3, 0], B = [0, ln 3]. softmax A = [3/4, 1/4], softmax B = [1/4, 3/4];
//     KL = 3/4 ln 3 + 1/4 ln(1/3) = ln(3)/2 = 0.5493061443340549; top-1 0 vs 1;
//     ||B - A|| / ||A|| = sqrt(2 ln^2 3) / ln 3 = sqrt(2) = 1.4142135623730951.
//  1: A = B = [2, 0]: KL 0, top-1 0 and 0, relative error 0.
//  2: A = [0, 4], B = [0, 2]. With p1 = e^4 / (1 + e^4) = 0.9820137900379085, KL = sum p (a - b) -
//     (lse A - lse B) = 2 p1 - ln((1 + e^4) / (1 + e^2)) = 0.0728056632009797; top-1 1 and 1;
//     relative error ||(0, -2)|| / ||(0, 4)|| = 0.5.
// Means: KL (0.5493061443340549 + 0 + 0.0728056632009797) / 3 = 0.2073706025116782, relative error
// (sqrt(2) + 0.5) / 3 = 0.6380711874576984; top-1 agreement 2/3; the largest KL at position 0.
TEST(LogitCompare, KlTop1AndRelativeErrorOnHandComputedLogits) {
  const float ln3 = std::log(3.0f);
  const std::vector<float> a = {ln3, 0, 2, 0, 0, 4};
  const std::vector<float> b = {0, ln3, 2, 0, 0, 2};
  const LogitComparison c = compare_logits(a, b, 2);
  ASSERT_EQ(c.positions.size(), 3u);
  // ln 3 rounded to float moves position 0's KL by about 1e-8 relative.
  EXPECT_NEAR(c.positions[0].kl, 0.5493061443340549, 1e-7);
  EXPECT_EQ(c.positions[0].top_a, 0);
  EXPECT_EQ(c.positions[0].top_b, 1);
  EXPECT_NEAR(c.positions[0].rel_error, 1.4142135623730951, 1e-12);
  EXPECT_EQ(c.positions[1].kl, 0.0);
  EXPECT_EQ(c.positions[1].rel_error, 0.0);
  EXPECT_EQ(c.positions[1].top_a, 0);
  EXPECT_EQ(c.positions[1].top_b, 0);
  EXPECT_NEAR(c.positions[2].kl, 0.0728056632009797, 1e-12);
  EXPECT_EQ(c.positions[2].top_a, 1);
  EXPECT_EQ(c.positions[2].top_b, 1);
  EXPECT_DOUBLE_EQ(c.positions[2].rel_error, 0.5);
  EXPECT_NEAR(c.mean_kl, 0.2073706025116782, 1e-7);
  EXPECT_NEAR(c.max_kl, 0.5493061443340549, 1e-7);
  EXPECT_EQ(c.max_kl_position, 0);
  EXPECT_DOUBLE_EQ(c.top1_agreement, 2.0 / 3.0);
  EXPECT_NEAR(c.mean_rel_error, 0.6380711874576984, 1e-12);
  EXPECT_NEAR(c.max_rel_error, 1.4142135623730951, 1e-12);
}

// A NaN logit in B makes that position's KL and error NaN, and the maxima NaN: a summary of a
// broken model never reads as a good one.
TEST(LogitCompare, NaNIsTheWorstPositionNotADroppedOne) {
  const std::vector<float> a = {1, 0, 1, 0, 1, 0};
  const std::vector<float> b = {1, 0, NAN, 0, 1, 0};
  const LogitComparison c = compare_logits(a, b, 2);
  EXPECT_TRUE(std::isnan(c.positions[1].kl));
  EXPECT_TRUE(std::isnan(c.max_kl));
  EXPECT_EQ(c.max_kl_position, 1);
  EXPECT_TRUE(std::isnan(c.max_rel_error));
  EXPECT_TRUE(std::isnan(c.mean_kl));
  EXPECT_FALSE(testing::finite_at_most(c.max_kl, 1.0));
}

// The test helpers themselves: a NaN survives the max and fails the bound.
TEST(NanAware, MaximaKeepNaNAndBoundsFailOnIt) {
  EXPECT_TRUE(std::isnan(testing::max_keeping_nan(1.0f, NAN)));
  EXPECT_TRUE(std::isnan(testing::max_keeping_nan(NAN, 1.0f)));
  EXPECT_EQ(testing::max_keeping_nan(1.0f, 2.0f), 2.0f);
  EXPECT_FALSE(testing::finite_below(NAN, 1.0));
  EXPECT_FALSE(testing::finite_at_most(NAN, 1.0));
  EXPECT_FALSE(testing::finite_at_most(INFINITY, INFINITY));
  EXPECT_FALSE(testing::finite_below(2.0, 1.0));
  EXPECT_TRUE(testing::finite_below(0.5, 1.0));
  EXPECT_TRUE(testing::finite_at_most(1.0, 1.0));
}

}  // namespace
}  // namespace fp4kit::engine
