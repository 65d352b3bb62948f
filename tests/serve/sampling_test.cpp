// Token sampling: greedy is engine::argmax, the seed fixes the draw, and top_k / top_p / min_p keep
// exactly the tokens they promise (checked by drawing many times over a known distribution).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "engine/generate.h"
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

}  // namespace
}  // namespace fp4kit::serve
