// PASS / WARN / FAIL against the thresholds (a NaN never passes), and the percentile convention on
// values worked out by hand.
#include "eval/eval_verdict.h"

#include <gtest/gtest.h>

#include <limits>

#include "base/error.h"
#include "eval/kl_statistics.h"

namespace fp4kit::eval {
namespace {

EvalResult result(double kld, double kld_error, double top1, double top1_error) {
  EvalResult r;
  r.stats.kld = {kld, kld_error};
  r.stats.top1 = {top1, top1_error};
  r.positions.resize(3);
  r.positions[1].kld = 0.5;
  r.positions[1].sequence = 0, r.positions[1].position = 1;
  return r;
}

TEST(EvalVerdict, FollowsTheThresholds) {
  const Thresholds t{0.05, 0.9};
  EXPECT_EQ(judge(result(0.01, 0.001, 0.99, 0.001), t).verdict, Verdict::Pass);
  EXPECT_EQ(judge(result(0.06, 0.001, 0.99, 0.001), t).verdict, Verdict::Fail);
  EXPECT_EQ(judge(result(0.01, 0.001, 0.80, 0.001), t).verdict, Verdict::Fail);
  // Inside the thresholds, but not by two errors.
  EXPECT_EQ(judge(result(0.04, 0.01, 0.99, 0.001), t).verdict, Verdict::Warn);
  EXPECT_EQ(judge(result(0.01, 0.001, 0.91, 0.01), t).verdict, Verdict::Warn);
  const EvalResult failing = result(0.06, 0.001, 0.99, 0.001);  // outlives the judgement's pointers
  const Judgement j = judge(failing, t);
  ASSERT_NE(j.worst_position, nullptr);
  EXPECT_EQ(j.worst_position->position, 1);
  ASSERT_EQ(j.reasons.size(), 1u);
  EXPECT_NE(j.reasons[0].find("above --max-kld"), std::string::npos);
}

TEST(EvalVerdict, OneLayerAloneAboveTheThresholdWarns) {
  EvalResult r = result(0.01, 0.001, 0.99, 0.001);
  r.attribution.resize(3);
  for (int l = 0; l < 3; ++l) r.attribution[l].layer = l, r.attribution[l].kld_mean = l == 1 ? 0.08 : 0.001;
  r.attribution[1].kinds.resize(3);
  r.attribution[1].kinds[2].kind = "routed_experts";
  r.attribution[1].kinds[2].kld_mean = 0.07;
  const Judgement j = judge(r, {0.05, 0.9});
  EXPECT_EQ(j.verdict, Verdict::Warn);
  ASSERT_NE(j.worst_layer, nullptr);
  EXPECT_EQ(j.worst_layer->layer, 1);
  ASSERT_NE(j.worst_kind, nullptr);
  EXPECT_EQ(j.worst_kind->kind, "routed_experts");
}

TEST(EvalVerdict, NanFails) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(judge(result(nan, 0, 0.99, 0.001), {0.05, 0.9}).verdict, Verdict::Fail);
  EXPECT_EQ(judge(result(0.01, 0.001, nan, 0), {0.05, 0.9}).verdict, Verdict::Fail);
  EXPECT_EQ(judge(result(0.01, nan, 0.99, 0.001), {0.05, 0.9}).verdict, Verdict::Warn);
}

TEST(EvalPercentile, InterpolatesBetweenClosestRanks) {
  const std::vector<double> v = {1, 2, 3, 4};  // x = f * 3
  EXPECT_EQ(percentile(v, 0.0), 1.0);
  EXPECT_EQ(percentile(v, 1.0), 4.0);
  EXPECT_DOUBLE_EQ(percentile(v, 0.5), 2.5);      // x = 1.5: the median of an even count
  EXPECT_DOUBLE_EQ(percentile(v, 0.9), 3.7);      // x = 2.7
  EXPECT_DOUBLE_EQ(percentile(v, 0.999), 3.997);  // x = 2.997
  EXPECT_DOUBLE_EQ(percentile(v, 0.1), 1.3);      // x = 0.3
  EXPECT_EQ(percentile(std::vector<double>{7}, 0.99), 7.0);
}

TEST(EvalStatisticsSummary, NoPositionIsAnError) { EXPECT_THROW(summarize({}), InputError); }

}  // namespace
}  // namespace fp4kit::eval
