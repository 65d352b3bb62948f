// Properties of the forward pass that need no reference: decoding with the cache is the uncached
// forward (each token's arithmetic is the same, so bit for bit), feeding a sequence in chunks equals
// feeding it whole, and neither the thread count nor the other sequences of a batch change a result.
#include <gtest/gtest.h>

#include <random>

#include "engine/generate.h"
#include "engine_test_util.h"

namespace fp4kit::testing {
namespace {

engine::EngineOptions options(unsigned threads) { return {threads, size_t{1} << 28, nullptr, false}; }

std::vector<int64_t> random_ids(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> id(2, 1023);
  std::vector<int64_t> ids(n);
  for (auto& v : ids) v = id(rng);
  ids[0] = 0;
  return ids;
}

std::vector<float> run_all_layers(engine::Engine& eng, engine::ForwardState& s) {
  for (int64_t l = 0; l < eng.config().layers(); ++l) eng.run_layer(l, s);
  return eng.head(s);
}

TEST(EngineCache, CachedGenerationEqualsUncachedForward) {
  // The prompt ends at 126: decoding crosses position 127, where the HCA layer's first entry appears,
  // and runs with the CSA indexer choosing 8 of up to 33 entries.
  const std::vector<int64_t> prompt = random_ids(126, 1);
  const auto runner = engine::make_cpu_runner(tiny_dir(), options(2));
  const engine::Generation cached = engine::generate_greedy(*runner, prompt, 6, true);
  const engine::Generation uncached = engine::generate_greedy(*runner, prompt, 6, false);
  EXPECT_EQ(cached.tokens, uncached.tokens);
  EXPECT_EQ(max_abs_diff(cached.step_logits, uncached.step_logits), 0.0f);
}

TEST(EngineCache, ChunkedContinuationEqualsOneChunk) {
  engine::Engine eng(tiny_dir(), options(2));
  const std::vector<int64_t> ids = random_ids(150, 2);
  engine::ForwardState whole = eng.embed(ids, 1);
  const std::vector<float> expected = run_all_layers(eng, whole);
  // Chunks of 61, 70 (crossing the HCA window end at 127) and 19 tokens.
  std::vector<float> got;
  engine::ForwardState s;
  size_t begin = 0;
  for (size_t len : {61u, 70u, 19u}) {
    const std::vector<int64_t> chunk(ids.begin() + static_cast<ptrdiff_t>(begin), ids.begin() + static_cast<ptrdiff_t>(begin + len));
    if (begin == 0) s = eng.embed(chunk, 1);
    else eng.embed_next(s, chunk);
    const std::vector<float> logits = run_all_layers(eng, s);
    got.insert(got.end(), logits.begin(), logits.end());
    begin += len;
  }
  EXPECT_EQ(max_abs_diff(got, expected), 0.0f);
}

TEST(EngineCache, ResultsDoNotDependOnThreadsOrBatch) {
  const std::vector<int64_t> a = random_ids(80, 3), b = random_ids(80, 4);
  std::vector<int64_t> both = a;
  both.insert(both.end(), b.begin(), b.end());
  engine::Engine one(tiny_dir(), options(1)), three(tiny_dir(), options(3));
  const std::vector<float> batch1 = one.forward(both, 2);
  const std::vector<float> batch3 = three.forward(both, 2);
  EXPECT_EQ(max_abs_diff(batch1, batch3), 0.0f);
  const std::vector<float> alone = three.forward(b, 1);
  EXPECT_EQ(max_abs_diff(alone, std::vector<float>(batch1.begin() + static_cast<ptrdiff_t>(alone.size()), batch1.end())), 0.0f);
}

}  // namespace
}  // namespace fp4kit::testing
