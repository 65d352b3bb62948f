// The forward pass against transformers' DeepseekV4ForCausalLM on the tiny checkpoint
// (tests/data/dsv4-tiny/reference.safetensors: float32 CPU run, eager attention and experts).
//
// Tolerances. transformers' own float32 runs differ by up to 1.8e-5 in the logits (max |logit| 4.7)
// and 1.1e-4 in the hidden states between CPU and GPU: that is the noise floor of f32 with another
// summation order, and this engine sums in its own fixed order (matmul.h). We allow 5e-5 absolute on
// the logits (about 3x that floor, 1e-5 of their range) and 5e-6 of each layer's largest stream value
// on the hidden states (their magnitude grows with depth; measured: 1.36e-5 on the logits, and
// 6.4e-7 .. 1.9e-6 of the largest value from layer 0 to layer 3, i.e. 3.8e-5 .. 2.2e-4 absolute
// against values up to 115, which is twice transformers' own CPU/GPU spread). A real error (a wrong
// clamp, sign, scale, rope pair or mask) moves them by 1e-3 or more. Discrete choices must be identical: the closest
// expert selection gap is 4.4e-4 and the closest indexer top-k gap 1.2e-3 (relative), both far above
// the f32 noise.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "engine/generate.h"
#include "engine_test_util.h"

namespace fp4kit::testing {
namespace {

constexpr float kLogitTolerance = 5e-5f;
constexpr float kHiddenRelativeTolerance = 5e-6f;

struct ReferenceRun {
  Reference ref;
  std::vector<int64_t> ids, hidden_positions;
  std::vector<std::vector<float>> hidden;  // per layer, after it: [tokens, hc, H]
  std::vector<engine::Routing> routing;
  std::vector<float> logits, final_hidden;
  int64_t boundary_ties = 0;
  int64_t batch = 0, seq = 0;
};

const ReferenceRun& reference_run() {
  static const std::unique_ptr<ReferenceRun> run = [] {
    auto r = std::make_unique<ReferenceRun>();
    r->ids = r->ref.i64("input_ids");
    r->hidden_positions = r->ref.i64("hidden_positions");
    const auto shape = r->ref.shape("input_ids");
    r->batch = shape[0];
    r->seq = shape[1];
    engine::Engine eng(tiny_dir(), {2, size_t{1} << 28, nullptr, false});
    engine::ForwardState s = eng.embed(r->ids, r->batch);
    r->hidden.push_back(s.hidden);
    for (int64_t l = 0; l < eng.config().layers(); ++l) {
      eng.run_layer(l, s);
      r->hidden.push_back(s.hidden);
    }
    r->routing = s.routing;
    r->boundary_ties = s.indexer_boundary_ties;
    r->final_hidden = eng.final_hidden(s);
    r->logits = eng.head(s);
    return r;
  }();
  return *run;
}

TEST(EngineReference, LogitsMatchTransformers) {
  const ReferenceRun& r = reference_run();
  const std::vector<float> expected = r.ref.f32("logits");
  ASSERT_EQ(r.logits.size(), expected.size());
  const float diff = max_abs_diff(r.logits, expected);
  EXPECT_TRUE(finite_below(diff, kLogitTolerance));
  // Every position's argmax agrees.
  const int64_t V = 1024;
  for (size_t row = 0; row < expected.size() / V; ++row)
    ASSERT_EQ(engine::argmax(&r.logits[row * V], V), engine::argmax(&expected[row * V], V)) << "row " << row;
  EXPECT_TRUE(finite_below(max_abs_diff(r.final_hidden, r.ref.f32("last_hidden_state")), 5e-5f));
}

TEST(EngineReference, HiddenStatesMatchTransformersAfterEveryLayer) {
  const ReferenceRun& r = reference_run();
  const int64_t H = 128, hc = 4, P = static_cast<int64_t>(r.hidden_positions.size());
  for (size_t l = 0; l <= 4; ++l) {
    const std::string name = l == 0 ? "hidden.embed" : "hidden.layer" + std::to_string(l - 1);
    const std::vector<float> expected = r.ref.f32(name);
    const int64_t streams = l == 0 ? 1 : hc;
    float diff = 0, scale = 0;
    for (int64_t b = 0; b < r.batch; ++b)
      for (int64_t i = 0; i < P; ++i)
        for (int64_t k = 0; k < streams * H; ++k) {
          const float mine = r.hidden[l][(b * r.seq + r.hidden_positions[i]) * hc * H + k];
          const float theirs = expected[(b * P + i) * streams * H + k];
          diff = max_keeping_nan(diff, std::abs(mine - theirs));
          scale = max_keeping_nan(scale, std::abs(theirs));
        }
    EXPECT_TRUE(finite_at_most(diff, kHiddenRelativeTolerance * scale)) << name << ": max diff " << diff << " of max " << scale;
  }
}

TEST(EngineReference, RoutingMatchesTransformers) {
  const ReferenceRun& r = reference_run();
  for (int l = 0; l < 4; ++l) {
    const std::vector<int64_t> idx = r.ref.i64("router." + std::to_string(l) + ".indices");
    const std::vector<float> w = r.ref.f32("router." + std::to_string(l) + ".weights");
    ASSERT_EQ(r.routing[l].experts, idx) << "layer " << l;
    EXPECT_TRUE(finite_below(max_abs_diff(r.routing[l].weights, w), 2e-6f)) << "layer " << l;
  }
  EXPECT_EQ(r.boundary_ties, 0);
}

TEST(EngineReference, GreedyGenerationMatchesTransformers) {
  Reference ref;
  const std::vector<int64_t> prompt = ref.i64("gen.prompt_ids");
  const std::vector<int64_t> output = ref.i64("gen.output_ids");
  const std::vector<float> step_logits = ref.f32("gen.step_logits");
  const int64_t n = static_cast<int64_t>(output.size() - prompt.size());
  const auto runner = engine::make_cpu_runner(tiny_dir(), {2, size_t{1} << 28, nullptr, false});
  const engine::Generation g = engine::generate_greedy(*runner, prompt, n);
  EXPECT_EQ(g.tokens, std::vector<int64_t>(output.begin() + static_cast<ptrdiff_t>(prompt.size()), output.end()));
  EXPECT_TRUE(finite_below(max_abs_diff(g.step_logits, step_logits), kLogitTolerance));
}

// The loop without a cache (each step reruns the sequence) gives the same tokens.
TEST(EngineReference, GreedyGenerationByRerunningMatchesTransformers) {
  Reference ref;
  const std::vector<int64_t> prompt = ref.i64("gen.prompt_ids");
  const std::vector<int64_t> output = ref.i64("gen.output_ids");
  const std::vector<float> step_logits = ref.f32("gen.step_logits");
  const int64_t n = 4;  // each step reruns the sequence: four are enough to cover the loop
  const auto runner = engine::make_cpu_runner(tiny_dir(), {2, size_t{1} << 28, nullptr, false});
  const engine::Generation g = engine::generate_greedy(*runner, prompt, n, /*use_cache=*/false);
  const auto first = output.begin() + static_cast<ptrdiff_t>(prompt.size());
  EXPECT_EQ(g.tokens, std::vector<int64_t>(first, first + n));
  EXPECT_TRUE(finite_below(max_abs_diff(g.step_logits, std::vector<float>(step_logits.begin(), step_logits.begin() + n * 1024)),
                           kLogitTolerance));
  // An end-of-sequence id stops the loop after emitting it.
  const engine::Generation stopped = engine::generate_greedy(*runner, prompt, n, false, output[prompt.size() + 1]);
  EXPECT_EQ(stopped.tokens, std::vector<int64_t>(first, first + 2));
}

}  // namespace
}  // namespace fp4kit::testing
