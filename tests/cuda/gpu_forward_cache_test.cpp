// The GPU forward pass continuing sequences from its device caches (embed_continued / embed_next)
// against the same sequences run whole from position 0, on the tiny V4 checkpoint: two sequences of
// 300 tokens, a 100-token prompt, then steps of 1 to 64 tokens. The steps cross everything a cache
// must carry: the sliding window (64) wrapping, CSA entries completing mid-step with the indexer
// choosing 8 of up to 75, HCA entries at 128 and 256, and the caches growing past their first size.
// In F32 the continuation is the whole pass's arithmetic with products of fewer rows (cuBLASLt's sum
// order may differ), so the bound is the F32 bound the GPU pass meets against transformers; in BF16
// those last-bit differences can flip a linear input's BF16 rounding, so the bound is KL-based.
// Greedy generation with the caches (and without) gives transformers' tokens.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"
#include "checkpoint_edit.h"
#include "engine/engine_test_util.h"
#include "engine/generate.h"
#include "gpu_engine/gpu_forward.h"
#include "gpu_engine/gpu_layer_runner.h"
#include "gpu_test.h"
#include "logit_divergence.h"
#include "nan_aware.h"
#include "verify/verify_test_util.h"

namespace fp4kit {
namespace {

constexpr int64_t kBatch = 2, kLength = 300, kPrompt = 100;

gpu_engine::GpuForwardOptions with(gpu_engine::Precision precision) {
  gpu_engine::GpuForwardOptions o;
  o.precision = precision;
  return o;
}

std::vector<int64_t> sequences(int64_t vocab) {
  std::vector<int64_t> ids(static_cast<size_t>(kBatch * kLength));
  uint64_t x = 11;
  for (auto& id : ids) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    id = static_cast<int64_t>((x >> 33) % static_cast<uint64_t>(vocab));
  }
  return ids;
}

// Tokens [from, from + n) of every sequence, sequence-major.
std::vector<int64_t> slice(const std::vector<int64_t>& ids, int64_t from, int64_t n) {
  std::vector<int64_t> out;
  for (int64_t b = 0; b < kBatch; ++b)
    out.insert(out.end(), ids.begin() + b * kLength + from, ids.begin() + b * kLength + from + n);
  return out;
}

// The logits of the whole pass and of the continuation, rows in the whole pass's order.
struct Both {
  std::vector<float> whole, continued;
};

Both run_both(gpu_engine::Precision precision) {
  gpu_engine::GpuForward gpu(testing::tiny_dir(), with(precision));
  const int64_t V = gpu.config().base.vocab_size, L = gpu.config().layers();
  const std::vector<int64_t> ids = sequences(V);
  Both r;
  r.whole = gpu.forward(ids, kBatch);
  r.continued.assign(r.whole.size(), NAN);
  // Cache sized for 16 tokens at first: it grows (and keeps its rows) several times.
  const std::vector<int64_t> steps{1, 3, 4, 5, 7, 1, 2, 64, 13, 1, 1, 27, 4, 8, 16, 3, 40};
  int64_t past = 0, n = kPrompt;
  for (size_t step = 0; past < kLength; ++step) {
    if (step == 0) gpu.embed_continued(slice(ids, 0, n), kBatch, 16);
    else gpu.embed_next(slice(ids, past, n));
    for (int64_t l = 0; l < L; ++l) gpu.run_layer(l);
    const std::vector<float> logits = gpu.head();
    EXPECT_EQ(logits.size(), static_cast<size_t>(kBatch * n * V)) << "step " << step;
    for (int64_t b = 0; b < kBatch; ++b)
      std::copy_n(logits.begin() + b * n * V, n * V, r.continued.begin() + (b * kLength + past) * V);
    past += n;
    n = std::min(steps[step % steps.size()], kLength - past);
  }
  return r;
}

// The BF16 bound of two passes whose products ran on different row counts: last-bit differences can
// flip a linear input's BF16 rounding, so the logits are held to each other by KL and top-1.
void expect_bf16_agreement(const std::vector<float>& reference, const std::vector<float>& other) {
  const testing::Divergence d = testing::divergence(reference, other, 1024);
  EXPECT_TRUE(testing::finite_below(d.kld_mean, 1e-3)) << "mean KL";
  EXPECT_TRUE(testing::finite_below(d.kld_max, 2e-2)) << "largest KL";
  EXPECT_GE(d.top1_same, d.positions * 97 / 100) << "top-1 agreement of " << d.positions;
}

TEST(CudaGpuForwardCache, ContinuationMatchesTheWholeSequenceInF32) {
  FP4KIT_REQUIRE_GPU();
  const Both r = run_both(gpu_engine::Precision::F32);
  EXPECT_TRUE(testing::finite_below(testing::max_abs_diff(r.continued, r.whole), 1e-4));
}

TEST(CudaGpuForwardCache, ContinuationMatchesTheWholeSequenceInBf16) {
  FP4KIT_REQUIRE_GPU();
  const Both r = run_both(gpu_engine::Precision::Bf16);
  expect_bf16_agreement(r.whole, r.continued);
}

// Greedy generation on the GPU in F32, with the caches and rerunning the sequence at each step,
// gives transformers' tokens, and the logits each token was chosen from within the GPU pass's F32 bound.
TEST(CudaGpuForwardCache, GreedyGenerationMatchesTransformersWithAndWithoutCaches) {
  FP4KIT_REQUIRE_GPU();
  testing::Reference ref;
  const std::vector<int64_t> prompt = ref.i64("gen.prompt_ids"), output = ref.i64("gen.output_ids");
  const std::vector<float> step_logits = ref.f32("gen.step_logits");
  const int64_t n = static_cast<int64_t>(output.size() - prompt.size());
  const auto runner = gpu_engine::make_gpu_runner(testing::tiny_dir(), {}, gpu_engine::Precision::F32);
  for (bool use_cache : {true, false}) {
    const engine::Generation g = engine::generate_greedy(*runner, prompt, n, use_cache);
    EXPECT_EQ(g.tokens, std::vector<int64_t>(output.begin() + static_cast<ptrdiff_t>(prompt.size()), output.end()))
        << (use_cache ? "with" : "without") << " caches";
    EXPECT_TRUE(testing::finite_below(testing::max_abs_diff(g.step_logits, step_logits), 1e-4))
        << (use_cache ? "with" : "without") << " caches";
  }
}

TEST(CudaGpuForwardCache, ContinuingWhatCannotBeContinuedIsAnError) {
  FP4KIT_REQUIRE_GPU();
  gpu_engine::GpuForward gpu(testing::tiny_dir(), with(gpu_engine::Precision::F32));
  EXPECT_THROW(gpu.embed_next({1, 2}), Error) << "no batch";
  gpu.embed({1, 2, 3, 4}, 2);
  for (int64_t l = 0; l < gpu.config().layers(); ++l) gpu.run_layer(l);
  gpu.head();
  EXPECT_THROW(gpu.embed_next({5, 6}), Error) << "a batch started without caches";
  gpu.embed_continued({1, 2, 3, 4}, 2, 8);
  EXPECT_THROW(gpu.embed_next({5, 6}), Error) << "its layers have not run";
  for (int64_t l = 0; l < gpu.config().layers(); ++l) gpu.run_layer(l);
  gpu.head();
  EXPECT_THROW(gpu.embed_next({5, 6, 7}), InputError) << "3 ids for 2 sequences";
  EXPECT_THROW(gpu.embed_next({5, 1 << 20}), InputError) << "an id outside the vocabulary";
  std::vector<float> streams = gpu.hidden();
  gpu.embed_next({5, 6});
  gpu.run_layer(0);
  EXPECT_THROW(gpu.rerun_layer(0, streams), Error) << "rerunning a continuation";
}

// Sequences of different lengths advanced together (one batch through the products, attention per
// sequence on its own caches) against each advanced alone, from identical saved states: prompts of
// 37, 70 and 129 tokens, then 70 steps of one token, so that the sequences cross the sliding window,
// CSA entries and the HCA entry at 128 at different steps. The products run on 3 rows instead of 1,
// so the bounds are those of the continuation above.
struct AloneAndTogether {
  std::vector<float> alone, together;
};

AloneAndTogether advance_both_ways(gpu_engine::Precision precision) {
  gpu_engine::GpuForward gpu(testing::tiny_dir(), with(precision));
  const int64_t V = gpu.config().base.vocab_size, L = gpu.config().layers();
  const std::vector<int64_t> prompts{37, 70, 129};
  constexpr int64_t kSteps = 70;
  const std::vector<int64_t> ids = sequences(V);  // 600 ids: prompts and steps are taken from it
  std::vector<gpu_engine::GpuForward::SavedBatch> alone, together;
  int64_t at = 0;
  for (const int64_t n : prompts) {
    const std::vector<int64_t> prompt(ids.begin() + at, ids.begin() + at + n);
    at += n;
    for (auto* set : {&alone, &together}) {
      gpu.embed_continued(prompt, 1, 16);
      for (int64_t l = 0; l < L; ++l) gpu.run_layer(l);
      gpu.head();
      set->push_back(gpu.save_batch());
    }
  }
  AloneAndTogether r;
  for (int64_t step = 0; step < kSteps; ++step) {
    std::vector<int64_t> next;
    for (size_t i = 0; i < prompts.size(); ++i) next.push_back(ids[static_cast<size_t>(at++)]);
    for (size_t i = 0; i < prompts.size(); ++i) {
      gpu.restore_batch(std::move(alone[i]));
      gpu.embed_next({next[i]});
      for (int64_t l = 0; l < L; ++l) gpu.run_layer(l);
      const std::vector<float> logits = gpu.head();
      EXPECT_EQ(logits.size(), static_cast<size_t>(V));
      r.alone.insert(r.alone.end(), logits.begin(), logits.end());
      alone[i] = gpu.save_batch();
    }
    const std::vector<float> logits = gpu.advance_together(together, next);
    EXPECT_EQ(logits.size(), prompts.size() * static_cast<size_t>(V)) << "step " << step;
    r.together.insert(r.together.end(), logits.begin(), logits.end());
  }
  return r;
}

TEST(CudaGpuForwardCache, AdvancingTogetherMatchesEachSequenceAloneInF32) {
  FP4KIT_REQUIRE_GPU();
  const AloneAndTogether r = advance_both_ways(gpu_engine::Precision::F32);
  ASSERT_EQ(r.alone.size(), r.together.size());
  EXPECT_TRUE(testing::finite_below(testing::max_abs_diff(r.together, r.alone), 1e-4));
}

TEST(CudaGpuForwardCache, AdvancingTogetherMatchesEachSequenceAloneInBf16) {
  FP4KIT_REQUIRE_GPU();
  const AloneAndTogether r = advance_both_ways(gpu_engine::Precision::Bf16);
  ASSERT_EQ(r.alone.size(), r.together.size());
  expect_bf16_agreement(r.alone, r.together);
}

// Prompts of several new sequences in one call, then prompt chunks of running sequences beside a
// new one's prompt, then a decode step, against each sequence advanced alone: three 37-token
// prompts together, then 21 tokens of each of them and a fourth sequence's 21-token prompt, then
// one token each. Every call's logits are each sequence's last token's.
AloneAndTogether prompts_both_ways(gpu_engine::Precision precision) {
  gpu_engine::GpuForward gpu(testing::tiny_dir(), with(precision));
  const int64_t V = gpu.config().base.vocab_size, L = gpu.config().layers();
  const std::vector<int64_t> ids = sequences(V);
  std::vector<gpu_engine::GpuForward::SavedBatch> alone, together;
  AloneAndTogether r;
  int64_t at = 0;
  // Each call: n new tokens of each of `count` sequences, those from `first_new` on new ones.
  auto call = [&](int64_t count, int64_t n, int64_t first_new) {
    std::vector<int64_t> all;
    for (int64_t i = 0; i < count; ++i) {
      const std::vector<int64_t> mine(ids.begin() + at, ids.begin() + at + n);
      at += n;
      all.insert(all.end(), mine.begin(), mine.end());
      if (i >= first_new) {
        gpu.embed_continued(mine, 1, 16);
        alone.emplace_back();
        together.push_back(gpu.new_sequence(16));
      } else {
        gpu.restore_batch(std::move(alone[static_cast<size_t>(i)]));
        gpu.embed_next(mine);
      }
      for (int64_t l = 0; l < L; ++l) gpu.run_layer(l);
      const std::vector<float> logits = gpu.head(true);
      EXPECT_EQ(logits.size(), static_cast<size_t>(V));
      r.alone.insert(r.alone.end(), logits.begin(), logits.end());
      alone[static_cast<size_t>(i)] = gpu.save_batch();
    }
    const std::vector<float> logits = gpu.advance_together(together, all);
    EXPECT_EQ(logits.size(), static_cast<size_t>(count * V)) << count << " sequences of " << n << " tokens";
    r.together.insert(r.together.end(), logits.begin(), logits.end());
  };
  call(3, 37, 0);
  call(4, 21, 3);
  call(4, 1, 4);
  return r;
}

TEST(CudaGpuForwardCache, PromptsTogetherMatchEachSequenceAloneInF32) {
  FP4KIT_REQUIRE_GPU();
  const AloneAndTogether r = prompts_both_ways(gpu_engine::Precision::F32);
  ASSERT_EQ(r.alone.size(), r.together.size());
  EXPECT_TRUE(testing::finite_below(testing::max_abs_diff(r.together, r.alone), 1e-4));
}

TEST(CudaGpuForwardCache, PromptsTogetherMatchEachSequenceAloneInBf16) {
  FP4KIT_REQUIRE_GPU();
  const AloneAndTogether r = prompts_both_ways(gpu_engine::Precision::Bf16);
  ASSERT_EQ(r.alone.size(), r.together.size());
  expect_bf16_agreement(r.alone, r.together);
}

// Two sequences saved after their prompts (ids 1 2 3 and 4 5), each ready for its next token.
std::vector<gpu_engine::GpuForward::SavedBatch> two_running(gpu_engine::GpuForward& gpu) {
  std::vector<gpu_engine::GpuForward::SavedBatch> saved;
  for (const std::vector<int64_t>& prompt : {std::vector<int64_t>{1, 2, 3}, std::vector<int64_t>{4, 5}}) {
    gpu.embed_continued(prompt, 1, 8);
    for (int64_t l = 0; l < gpu.config().layers(); ++l) gpu.run_layer(l);
    gpu.head();
    saved.push_back(gpu.save_batch());
  }
  return saved;
}

TEST(CudaGpuForwardCache, AdvancingTogetherRefusesWhatItCannotContinue) {
  FP4KIT_REQUIRE_GPU();
  gpu_engine::GpuForward gpu(testing::tiny_dir(), with(gpu_engine::Precision::F32));
  const int64_t L = gpu.config().layers();
  std::vector<gpu_engine::GpuForward::SavedBatch> saved = two_running(gpu);
  EXPECT_THROW(gpu.advance_together(saved, {7}), Error) << "one id for two sequences";
  EXPECT_THROW(gpu.advance_together(saved, {7, 1 << 20}), InputError) << "an id outside the vocabulary";
  std::vector<gpu_engine::GpuForward::SavedBatch> none;
  EXPECT_THROW(gpu.advance_together(none, {}), Error) << "no sequences";
  // The refusals changed nothing: the two go on together.
  EXPECT_EQ(gpu.advance_together(saved, {7, 8}).size(), 2 * static_cast<size_t>(gpu.config().base.vocab_size));
  // A saved batch of two sequences is not one sequence.
  gpu.embed_continued({1, 2, 3, 4}, 2, 8);
  for (int64_t l = 0; l < L; ++l) gpu.run_layer(l);
  gpu.head();
  saved.push_back(gpu.save_batch());
  EXPECT_THROW(gpu.advance_together(saved, {1, 2, 3}), Error) << "a batch of two sequences";
  // A restored batch has given its last step's streams back: no logits before its next step.
  gpu.restore_batch(std::move(saved.front()));
  EXPECT_THROW(gpu.head(), Error) << "head of a restored batch";
  gpu.embed_next({9});
  for (int64_t l = 0; l < L; ++l) gpu.run_layer(l);
  EXPECT_EQ(gpu.head().size(), static_cast<size_t>(gpu.config().base.vocab_size));
}

// A decode step reads its checks back once, at its end, yet names a failure inside it as the checks
// made in place name it: a non-finite value in the token embedding, a hash-routed layer's table
// entry outside the experts. In BF16 the routed experts take the grouped path, where nothing of the
// routing comes back to the host during the step; in F32 the routing is read back where it is made.
TEST(CudaGpuForwardCache, AdvancingTogetherNamesAFailureInsideTheStep) {
  FP4KIT_REQUIRE_GPU();
  const std::string dir = testing::copy_tiny_checkpoint("gpu-advance-checks");
  const int64_t H = 128;  // the tiny model's hidden size (embed.weight [1024, 128] BF16)
  const uint16_t nan_bf16 = 0x7fc0;
  testing::write_tensor_bytes(dir, "embed.weight", static_cast<uint64_t>(900 * H + 5) * 2, &nan_bf16, 2);
  const int64_t far = int64_t{1} << 20;  // layer 1's experts for token 901: the second is past the last
  testing::write_tensor_bytes(dir, "layers.1.ffn.gate.tid2eid", static_cast<uint64_t>(901 * 2 + 1) * 8, &far, 8);
  for (const gpu_engine::Precision precision : {gpu_engine::Precision::F32, gpu_engine::Precision::Bf16}) {
    SCOPED_TRACE(gpu_engine::precision_name(precision));
    gpu_engine::GpuForward gpu(dir, with(precision));
    ASSERT_EQ(gpu.config().hidden(), H);
    const int64_t V = gpu.config().base.vocab_size;
    const auto message_of = [&](const std::vector<int64_t>& ids) -> std::string {
      std::vector<gpu_engine::GpuForward::SavedBatch> saved = two_running(gpu);
      try {
        gpu.advance_together(saved, ids);
      } catch (const InputError& e) {
        return e.what();
      }
      return "(no error)";
    };
    std::string m = message_of({7, 900});  // sequence 1 (prompt 4 5) takes its token at position 2
    EXPECT_NE(m.find("non-finite activation in the output of the token embedding (sequence 1, position 2)"), std::string::npos) << m;
    m = message_of({901, 7});
    EXPECT_NE(m.find("tensor 'layers.1.ffn.gate.tid2eid' routes token 0 (id 901) outside the experts"), std::string::npos) << m;
    // Both refused in one step: the embedding's failure comes first, as it would in place.
    m = message_of({901, 900});
    EXPECT_NE(m.find("the token embedding (sequence 1"), std::string::npos) << m;
    // Tokens the damage does not touch go on, their logits finite.
    std::vector<gpu_engine::GpuForward::SavedBatch> saved = two_running(gpu);
    for (int step = 0; step < 3; ++step) {
      const std::vector<float> logits = gpu.advance_together(saved, {7 + step, 8 + step});
      ASSERT_EQ(logits.size(), static_cast<size_t>(2 * V));
      for (size_t i = 0; i < logits.size(); ++i) ASSERT_TRUE(std::isfinite(logits[i])) << "step " << step << " logit " << i;
    }
  }
}

}  // namespace
}  // namespace fp4kit
