// eval through layer runners (what --device cuda uses), driven here by the CPU engine's runner so that
// every build checks it: the two models side by side give the same statistics as the engine path, and
// the attribution there (each quantized layer rerun on the base stream entering it) gives the residual
// error the engine path's branches measure, and names a broken layer.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/layer_runner.h"
#include "eval/eval_report_json.h"
#include "eval/eval_verdict.h"
#include "eval/evaluate.h"
#include "eval_test_util.h"
#include "nan_aware.h"

namespace fp4kit::testing {
namespace {

eval::EvalResult evaluate_tiny(const std::string& quantized, bool through_runner) {
  eval::EvalOptions o;
  o.quantized = quantized;
  o.base = tiny();
  o.threads = 2;
  if (through_runner) o.runner = engine::make_cpu_runner;
  const std::vector<int64_t> ids = eval_token_ids();
  const std::vector<int64_t> two(ids.begin(), ids.begin() + 2 * 96);
  return eval::evaluate(o, two, 2);
}

void expect_same_residuals(const eval::EvalResult& runner, const eval::EvalResult& engine) {
  ASSERT_EQ(runner.attribution.size(), engine.attribution.size());
  for (size_t l = 0; l < runner.attribution.size(); ++l) {
    const eval::LayerAttribution& a = runner.attribution[l];
    EXPECT_FALSE(a.logits_scored);
    EXPECT_TRUE(a.kinds.empty());
    EXPECT_TRUE(engine.attribution[l].logits_scored);
    const double want = engine.attribution[l].residual_rel_error;
    EXPECT_TRUE(finite_below(std::fabs(a.residual_rel_error - want), 1e-12 + 1e-9 * want))
        << "layer " << l << ": " << a.residual_rel_error << " vs " << want;
  }
}

TEST(EvalRunner, RequantizedConversionScoresAsTheEnginePath) {
  const std::string q = converted_tiny(modelopt_args());
  const eval::EvalResult runner = evaluate_tiny(q, true), engine = evaluate_tiny(q, false);
  EXPECT_GT(engine.stats.kld.mean, 0.0);
  EXPECT_EQ(runner.stats.kld.mean, engine.stats.kld.mean);
  EXPECT_EQ(runner.stats.top1.mean, engine.stats.top1.mean);
  expect_same_residuals(runner, engine);
  for (const eval::LayerAttribution& a : runner.attribution) EXPECT_GT(a.residual_rel_error, 0.0) << a.layer;
}

TEST(EvalRunner, BrokenLayerIsTheWorstByItsResidualError) {
  // layers.2's routed experts' w2 with every scale 16x too large.
  const std::string dir = copy_checkpoint(converted_tiny(cast_args()), "eval-runner-broken");
  for (int e = 0; e < 8; ++e) {
    const std::string name = "layers.2.ffn.experts." + std::to_string(e) + ".w2.weight_scale_2";
    set_f32(dir, name, 16.0f * get_f32(dir, name));
  }
  const eval::EvalResult runner = evaluate_tiny(dir, true), engine = evaluate_tiny(dir, false);
  expect_same_residuals(runner, engine);
  for (int l : {0, 1, 3}) EXPECT_EQ(runner.attribution[static_cast<size_t>(l)].residual_rel_error, 0.0) << l;
  EXPECT_GT(runner.attribution[2].residual_rel_error, 0.01);
  const eval::Judgement j = eval::judge(runner, {});
  ASSERT_NE(j.worst_layer, nullptr);
  EXPECT_EQ(j.worst_layer->layer, 2);
  // The report says what was not measured: null, not a zero KL.
  const nlohmann::json report = eval::eval_report_to_json(runner, {}, {"ids", ""}, {}, j);
  const nlohmann::json& layer2 = report["attribution"][2];
  EXPECT_EQ(layer2["logits_scored"], false);
  EXPECT_TRUE(layer2["kld_mean"].is_null());
  EXPECT_TRUE(layer2["top1"].is_null());
  EXPECT_EQ(layer2["residual_rel_error"].get<double>(), runner.attribution[2].residual_rel_error);
  EXPECT_EQ(report["worst_layer"], 2);
}

// Base logits read from a file: only the quantized model runs, and there is nothing to attribute.
TEST(EvalRunner, BaseLogitsFromAFileRunOnlyTheQuantizedModel) {
  const std::string q = converted_tiny(modelopt_args());
  const std::string saved = fresh_temp_dir("eval-runner-logits") + "/base.safetensors";
  eval::EvalOptions o;
  o.quantized = q, o.base = tiny(), o.threads = 2, o.runner = engine::make_cpu_runner, o.save_base_logits = saved;
  const std::vector<int64_t> ids = eval_token_ids();
  const std::vector<int64_t> two(ids.begin(), ids.begin() + 2 * 96);
  const eval::EvalResult first = eval::evaluate(o, two, 2);
  o.save_base_logits.clear();
  o.base_logits = saved;
  const eval::EvalResult second = eval::evaluate(o, two, 2);
  EXPECT_TRUE(second.base_logits_from_file);
  EXPECT_TRUE(second.attribution.empty());
  EXPECT_EQ(second.stats.kld.mean, first.stats.kld.mean);
}

}  // namespace
}  // namespace fp4kit::testing
