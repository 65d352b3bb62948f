// The server's scheduler over the GPU pass (gpu_engine/gpu_sequence_model.h, what `serve --device
// cuda` runs): in F32, greedy tokens equal transformers' greedy generation on the tiny V4 checkpoint
// (tests/data/dsv4-tiny/reference.safetensors) while two other requests of other lengths share the
// decode steps and the prompts run in chunks of 7; a request alone gives the same tokens as beside
// the others. Each request's caches live on the device between steps.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "engine/engine_test_util.h"
#include "gpu_engine/gpu_sequence_model.h"
#include "gpu_test.h"
#include "serve/scheduler.h"

namespace fp4kit {
namespace {

struct Recorded {
  std::shared_ptr<serve::GenerationJob> job = std::make_shared<serve::GenerationJob>();
  std::vector<int64_t> tokens;
  serve::FinishReason reason = serve::FinishReason::Error;
  std::string error;
  bool finished = false;
  std::mutex mutex;
  std::condition_variable done;

  Recorded(std::vector<int64_t> prompt, int64_t max_tokens) {
    job->prompt = std::move(prompt);
    job->max_tokens = max_tokens;
    job->sampling.temperature = 0;
    job->on_token = [this](const serve::SampledToken& t) {
      tokens.push_back(t.token);
      return serve::TokenVerdict::Continue;
    };
    job->on_finish = [this](serve::FinishReason r, const std::string& e) {
      std::lock_guard lock(mutex);
      reason = r, error = e, finished = true;
      done.notify_all();
    };
  }
  void wait() {
    std::unique_lock lock(mutex);
    ASSERT_TRUE(done.wait_for(lock, std::chrono::seconds(120), [&] { return finished; }));
  }
};

TEST(CudaServe, GreedyTokensEqualTransformersAlsoInABatchAndInChunks) {
  FP4KIT_REQUIRE_GPU();
  const testing::Reference ref;
  const std::vector<int64_t> prompt = ref.i64("gen.prompt_ids"), output = ref.i64("gen.output_ids");
  const std::vector<int64_t> expected(output.begin() + static_cast<ptrdiff_t>(prompt.size()), output.end());
  const auto model = gpu_engine::make_gpu_sequence_model(testing::tiny_dir(), gpu_engine::Precision::F32, {}, 64);
  serve::ServeMetrics metrics;
  serve::Scheduler scheduler(*model, {3, 8, 7}, metrics);
  // The caches start at 64 tokens: a grows past them.
  Recorded a(prompt, static_cast<int64_t>(expected.size())), b({0, 5, 9, 33}, 20);
  Recorded c(std::vector<int64_t>(prompt.begin(), prompt.begin() + 50), 12);
  ASSERT_TRUE(scheduler.submit(a.job));
  ASSERT_TRUE(scheduler.submit(b.job));
  ASSERT_TRUE(scheduler.submit(c.job));
  a.wait();
  b.wait();
  c.wait();
  EXPECT_EQ(a.tokens, expected) << a.error;
  EXPECT_EQ(a.reason, serve::FinishReason::Length) << a.error;
  EXPECT_EQ(b.tokens.size(), 20u) << b.error;
  EXPECT_EQ(c.tokens.size(), 12u) << c.error;
  EXPECT_GE(scheduler.largest_batch(), 2);
  Recorded b_alone({0, 5, 9, 33}, 20);
  ASSERT_TRUE(scheduler.submit(b_alone.job));
  b_alone.wait();
  EXPECT_EQ(b_alone.tokens, b.tokens);
}

// The GPU pass with its logits brought to the host and drawn there (the path before the device drew
// its own tokens).
class HostDrawn : public engine::SequenceModel {
 public:
  explicit HostDrawn(engine::SequenceModel& inner) : inner_(inner) {}
  const engine::ModelConfig& config() const override { return inner_.config(); }
  std::unique_ptr<Sequence> start() override { return inner_.start(); }
  std::vector<float> advance(const std::vector<Sequence*>& sequences, const std::vector<int64_t>& ids) override {
    return inner_.advance(sequences, ids);
  }

 private:
  engine::SequenceModel& inner_;
};

// Tokens and logprobs of three seeded requests that share decode steps.
std::vector<std::vector<serve::SampledToken>> seeded_tokens(engine::SequenceModel& model) {
  serve::ServeMetrics metrics;
  serve::Scheduler scheduler(model, {3, 8, 6}, metrics);
  std::vector<std::unique_ptr<Recorded>> jobs;
  std::vector<std::vector<serve::SampledToken>> out(3);
  const std::vector<std::vector<int64_t>> prompts = {{0, 11, 12, 13, 14, 15, 16, 17, 18, 19}, {0, 5, 9}, {0, 40, 41}};
  for (size_t j = 0; j < prompts.size(); ++j) {
    jobs.push_back(std::make_unique<Recorded>(prompts[j], 10));
    serve::SamplingParams& s = jobs.back()->job->sampling;
    s.temperature = 0.6 + 0.3 * static_cast<double>(j), s.top_p = j == 1 ? 0.85 : 1.0, s.top_k = j == 2 ? 25 : 0;
    s.min_p = j == 0 ? 0.02 : 0.0, s.seed = 77 + j, s.logprobs = true, s.top_logprobs = j == 0 ? 3 : 0;
    jobs.back()->job->on_token = [&out, j](const serve::SampledToken& t) {
      out[j].push_back(t);
      return serve::TokenVerdict::Continue;
    };
    EXPECT_TRUE(scheduler.submit(jobs.back()->job));
  }
  for (auto& j : jobs) j->wait();
  return out;
}

TEST(CudaServe, TokensDrawnOnTheDeviceEqualThoseDrawnOnTheHost) {
  FP4KIT_REQUIRE_GPU();
  for (const auto precision : {gpu_engine::Precision::F32, gpu_engine::Precision::Bf16}) {
    const auto model = gpu_engine::make_gpu_sequence_model(testing::tiny_dir(), precision, {}, 64);
    ASSERT_TRUE(model->draws_tokens());
    const auto on_device = seeded_tokens(*model);
    HostDrawn host(*model);
    const auto on_host = seeded_tokens(host);
    for (size_t j = 0; j < 3; ++j) {
      ASSERT_EQ(on_device[j].size(), 10u) << "request " << j;
      ASSERT_EQ(on_host[j].size(), 10u) << "request " << j;
      for (size_t t = 0; t < 10; ++t) {
        EXPECT_EQ(on_device[j][t].token, on_host[j][t].token) << "request " << j << " token " << t;
        EXPECT_NEAR(on_device[j][t].logprob, on_host[j][t].logprob, 1e-9) << "request " << j << " token " << t;
        ASSERT_EQ(on_device[j][t].top.size(), on_host[j][t].top.size());
        for (size_t i = 0; i < on_host[j][t].top.size(); ++i)
          EXPECT_EQ(on_device[j][t].top[i].token, on_host[j][t].top[i].token);
      }
    }
  }
}

}  // namespace
}  // namespace fp4kit
