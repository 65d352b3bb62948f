// Token sampling: greedy is engine::argmax, the seed fixes the draw, and top_k / top_p / min_p keep
// exactly the tokens they promise (checked by drawing many times over a known distribution).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <set>

#include "engine/generate.h"
#include "serve/logit_order.h"
#include "serve/sampling.h"

namespace fp4kit::serve {
namespace {

// log-probabilities of {0.5, 0.25, 0.125, 0.0625, 0.0625} as logits.
const std::vector<float> kLogits = {std::log(0.5f), std::log(0.25f), std::log(0.125f), std::log(0.0625f), std::log(0.0625f)};

std::map<int32_t, int> histogram(const SamplingParams& p, int draws) {
  std::map<int32_t, int> h;
  for (int i = 0; i < draws; ++i) ++h[sample_token(kLogits.data(), 5, p, static_cast<uint64_t>(i)).token];
  return h;
}

TEST(Sampling, GreedyIsTheEngineArgmaxFirstOnTies) {
  const std::vector<float> tied = {1.0f, 3.0f, -2.0f, 3.0f};
  SamplingParams p;
  p.temperature = 0;
  const SampledToken t = sample_token(tied.data(), 4, p, 0);
  EXPECT_EQ(t.token, 1);
  EXPECT_EQ(t.token, engine::argmax(tied.data(), 4));
  // logprob of the chosen token: log(e^3 / (e^1 + 2e^3 + e^-2))
  const double expect = 3.0 - std::log(std::exp(1.0) + 2 * std::exp(3.0) + std::exp(-2.0));
  EXPECT_NEAR(t.logprob, expect, 1e-12);
}

TEST(Sampling, TheSeedFixesTheDrawAndOtherSeedsDiffer) {
  SamplingParams p;
  p.temperature = 1.0;
  p.seed = 1234;
  std::vector<int32_t> a, b, c;
  for (uint64_t s = 0; s < 64; ++s) {
    a.push_back(sample_token(kLogits.data(), 5, p, s).token);
    b.push_back(sample_token(kLogits.data(), 5, p, s).token);
  }
  p.seed = 1235;
  for (uint64_t s = 0; s < 64; ++s) c.push_back(sample_token(kLogits.data(), 5, p, s).token);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // The stream is a fixed function of (seed, step), the same on every platform: values computed
  // from the formula in sampling.h with Python integers (SplitMix64 keyed by the seed's child
  // stream "sampling", word `step`, top 53 bits as (2k+1) * 2^-54).
  EXPECT_EQ(sampling_uniform(1234, 0), 0.7259911381049755);
  EXPECT_EQ(sampling_uniform(1234, 1), 0.27060905780991856);
  EXPECT_GT(sampling_uniform(0, 0), 0.0);
  EXPECT_LT(sampling_uniform(0, 0), 1.0);
  EXPECT_NE(sampling_uniform(1234, 0), sampling_uniform(1234, 1));
}

TEST(Sampling, TemperatureOneFollowsTheDistribution) {
  SamplingParams p;
  p.seed = 7;
  const auto h = histogram(p, 20000);
  EXPECT_NEAR(h.at(0) / 20000.0, 0.5, 0.02);
  EXPECT_NEAR(h.at(1) / 20000.0, 0.25, 0.02);
  EXPECT_NEAR(h.at(4) / 20000.0, 0.0625, 0.01);
}

TEST(Sampling, TopKTopPAndMinPKeepOnlyTheirTokens) {
  SamplingParams p;
  p.seed = 3;
  p.top_k = 2;
  auto h = histogram(p, 4000);
  EXPECT_EQ(h.size(), 2u);
  EXPECT_NEAR(h.at(0) / 4000.0, 2.0 / 3.0, 0.03);  // renormalized over the two kept
  p.top_k = 0;
  p.top_p = 0.8;  // 0.5 + 0.25 < 0.8 <= 0.875: three tokens
  h = histogram(p, 4000);
  EXPECT_EQ(h.size(), 3u);
  EXPECT_EQ(h.count(3), 0u);
  p.top_p = 1.0;
  p.min_p = 0.3;  // keeps p >= 0.15: tokens 0 and 1
  h = histogram(p, 4000);
  EXPECT_EQ(h.size(), 2u);
  p.min_p = 0.0;
  p.temperature = 1e-3;  // nearly greedy
  h = histogram(p, 200);
  EXPECT_EQ(h.size(), 1u);
  EXPECT_EQ(h.begin()->first, 0);
}

// sampling.h's exact rules on equal logits (integer weights, no rounding anywhere): top_p keeps the
// smallest prefix whose weight reaches top_p of the total, the draw splits (0, 1) into equal parts.
TEST(Sampling, EqualLogitsSplitExactlyAtTopPAndAtTheDraw) {
  const std::vector<float> flat(10, 0.25f);
  engine::TokenDraw d;
  d.temperature = 0.9;
  struct Case {
    double top_p, uniform;
    int token;
  };
  // top_p 0.3: three of ten; 0.5: five (exact); 0.2: the double nearest 0.2 is just above 1/5, so two
  // of ten do not reach it and three are kept; 1: all ten.
  for (const Case& c : std::vector<Case>{{0.3, 1e-9, 0}, {0.3, 0.33333, 0}, {0.3, 0.33334, 1}, {0.3, 0.66666, 1},
                                         {0.3, 0.66667, 2}, {0.3, 0.99999, 2}, {0.5, 0.19, 0}, {0.5, 0.21, 1},
                                         {0.5, 0.99, 4}, {0.2, 0.32, 0}, {0.2, 0.34, 1}, {0.2, 0.67, 2},
                                         {1.0, 0.85, 8}, {1.0, 0.95, 9}}) {
    d.top_p = c.top_p, d.uniform = c.uniform;
    EXPECT_EQ(draw_token(flat.data(), 10, d).token, c.token) << "top_p " << c.top_p << ", u " << c.uniform;
  }
  d.top_p = 1.0, d.uniform = 0.95, d.min_p = 1.0;  // only the tokens as likely as the first: all of them here
  EXPECT_EQ(draw_token(flat.data(), 10, d).token, 9);
  EXPECT_EQ(sampling_fraction_bits(10), 58);
  EXPECT_EQ(sampling_fraction_bits(129280), 45);
}

// Every token a candidate (no top_k, top_p, min_p): the walk is in id order, the weights those of
// the sorted walk. Probabilities 1/16, 1/2, 1/8, 1/4, 1/16 by id: the running sums split (0, 1) at
// 1/16, 9/16, 11/16, 15/16, in id order (the sorted walk would give token 1 below 1/2). With top_k
// 2 the same numbers walk the sorted candidates (tokens 1, 3).
TEST(Sampling, WithoutTopKTopPOrMinPTheDrawWalksTheTokensInIdOrder) {
  const std::vector<float> logits = {std::log(0.0625f), std::log(0.5f), std::log(0.125f), std::log(0.25f), std::log(0.0625f)};
  engine::TokenDraw d;
  d.temperature = 1.0;
  for (const auto& [u, token] : std::vector<std::pair<double, int>>{{0.05, 0}, {0.3, 1}, {0.6, 2}, {0.9, 3}, {0.99, 4}}) {
    d.uniform = u;
    EXPECT_EQ(draw_token(logits.data(), 5, d).token, token) << "u " << u;
  }
  d.top_k = 5;  // the whole vocabulary: still every token
  d.uniform = 0.05;
  EXPECT_EQ(draw_token(logits.data(), 5, d).token, 0);
  d.top_k = 2;  // sorted candidates 1 (2/3) and 3 (1/3)
  EXPECT_EQ(draw_token(logits.data(), 5, d).token, 1);
  d.uniform = 0.9;
  EXPECT_EQ(draw_token(logits.data(), 5, d).token, 3);
}

// Without logprobs the draw skips the normalizer: the same tokens, the logprob left NaN.
TEST(Sampling, WithoutLogprobsTheTokensAreTheSame) {
  for (double temperature : {0.0, 0.7}) {
    SamplingParams with, without;
    with.temperature = without.temperature = temperature;
    with.seed = without.seed = 99;
    without.logprobs = false;
    for (uint64_t step = 0; step < 32; ++step) {
      const SampledToken a = sample_token(kLogits.data(), 5, with, step), b = sample_token(kLogits.data(), 5, without, step);
      EXPECT_EQ(a.token, b.token);
      EXPECT_TRUE(std::isfinite(a.logprob));
      EXPECT_TRUE(std::isnan(b.logprob));
      EXPECT_TRUE(b.top.empty());
    }
  }
}

TEST(Sampling, TopLogprobsAreTheMostLikelyInOrderAndFinite) {
  SamplingParams p;
  p.seed = 11;
  p.top_logprobs = 3;
  const SampledToken t = sample_token(kLogits.data(), 5, p, 0);
  ASSERT_EQ(t.top.size(), 3u);
  EXPECT_EQ(t.top[0].token, 0);
  EXPECT_EQ(t.top[1].token, 1);
  EXPECT_EQ(t.top[2].token, 2);
  EXPECT_NEAR(t.top[0].logprob, std::log(0.5), 1e-6);
  for (const TokenLogprob& a : t.top) EXPECT_TRUE(std::isfinite(a.logprob));
  EXPECT_TRUE(std::isfinite(t.logprob));
  EXPECT_LE(t.logprob, 0.0);
}

// The order the draw walks: largest logit first, ties by id, -0 equal to +0 (written out by hand).
TEST(LogitOrder, TheReferenceOrdersByLogitThenId) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> logits = {0.0f, -0.0f, 1.0f, 1.0f, -inf, 1e-45f, -1e-45f, inf, 0.0f};
  const std::vector<int32_t> expect = {7, 2, 3, 5, 0, 1, 8, 6, 4};
  EXPECT_EQ(order_by_logit_ref(logits.data(), 9, 9), expect);
  EXPECT_EQ(order_by_logit_ref(logits.data(), 9, 3), std::vector<int32_t>(expect.begin(), expect.begin() + 3));
}

// The radix path gives exactly the comparison sort's ids at V4's vocabulary, for every `keep` on
// both sides of where it takes over, on rows that tie a lot, mix -0 and +0, hold subnormals,
// infinities and the extreme finite values.
TEST(LogitOrder, TheRadixSortEqualsTheReference) {
  const int64_t V = 129280;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  std::vector<std::vector<float>> rows(4, std::vector<float>(static_cast<size_t>(V)));
  for (float& x : rows[0]) x = normal(rng);
  for (float& x : rows[1]) x = static_cast<float>(static_cast<int>(rng() % 7) - 3) * 0.5f;  // seven values
  const float specials[] = {0.0f, -0.0f, 1e-45f, -1e-45f, 1e-38f, -1e-38f, std::numeric_limits<float>::max(),
                            -std::numeric_limits<float>::max(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), 1.0f, -1.0f};
  for (float& x : rows[2]) x = rng() % 3 ? specials[rng() % 12] : normal(rng);
  for (size_t i = 0; i < rows[3].size(); ++i) rows[3][i] = -static_cast<float>(i % 1000) * 1e-3f;  // descending runs
  for (const std::vector<float>& row : rows)
    for (int64_t keep : {int64_t{0}, int64_t{1}, int64_t{2047}, int64_t{2048}, int64_t{60000}, V, V + 5}) {
      const std::vector<int32_t> fast = order_by_logit(row.data(), V, keep), ref = order_by_logit_ref(row.data(), V, keep);
      ASSERT_EQ(fast.size(), static_cast<size_t>(std::min(keep, V)));
      ASSERT_EQ(fast, ref) << "keep " << keep;
    }
}

}  // namespace
}  // namespace fp4kit::serve
