// Tokens drawn on the device (cuda/token_draw.h) against the server's CPU sampler (serve::draw_token,
// the reference): the same token for every row, parameter set and uniform number, on V4-size rows
// of random logits and on small rows made of ties, signed zeros, one dominant logit and extreme
// temperatures; logprobs within 1e-9 (the normalizer's sum runs in another order); non-finite
// logits named per row; parameters out of range refused.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "base/error.h"
#include "cuda/token_draw.h"
#include "gpu_test.h"
#include "serve/sampling.h"

namespace fp4kit {
namespace {

engine::TokenDraw as_engine(const cuda::TokenDrawRow& r) {
  engine::TokenDraw d;
  d.temperature = r.temperature, d.top_p = r.top_p, d.min_p = r.min_p, d.uniform = r.uniform, d.top_k = r.top_k;
  d.top_logprobs = r.top_logprobs, d.logprobs = r.logprobs;
  return d;
}

// Draws every row on the device and on the CPU; returns how many rows were compared.
int expect_draws_match(const std::vector<float>& logits, int64_t vocab, const std::vector<cuda::TokenDrawRow>& rows,
                       const std::string& what) {
  cuda::Stream stream;
  const cuda::DeviceBuffer d = testing::upload(logits, stream, "logits");
  const std::vector<cuda::TokenDrawResult> got = cuda::draw_tokens(d.data<float>(), vocab, rows, stream.get());
  EXPECT_EQ(got.size(), rows.size()) << what;
  int compared = 0;
  for (size_t r = 0; r < rows.size() && r < got.size(); ++r) {
    const serve::SampledToken want = serve::draw_token(logits.data() + r * static_cast<size_t>(vocab), vocab, as_engine(rows[r]));
    const cuda::TokenDrawRow& q = rows[r];
    const std::string at = what + " row " + std::to_string(r) + " (T " + std::to_string(q.temperature) + ", top_k " +
                           std::to_string(q.top_k) + ", top_p " + std::to_string(q.top_p) + ", min_p " +
                           std::to_string(q.min_p) + ", u " + std::to_string(q.uniform) + ")";
    EXPECT_EQ(got[r].first_non_finite, -1) << at;
    EXPECT_EQ(got[r].token, want.token) << at;
    if (q.logprobs || q.top_logprobs > 0) {
      EXPECT_NEAR(got[r].logprob, want.logprob, 1e-9) << at;  // fails on NaN
    } else {
      EXPECT_TRUE(std::isnan(got[r].logprob)) << at;
    }
    EXPECT_EQ(got[r].top_ids.size(), want.top.size()) << at;
    for (size_t t = 0; t < want.top.size() && t < got[r].top_ids.size(); ++t) {
      EXPECT_EQ(got[r].top_ids[t], want.top[t].token) << at << " top " << t;
      EXPECT_NEAR(got[r].top_logprobs[t], want.top[t].logprob, 1e-9) << at << " top " << t;
    }
    ++compared;
  }
  return compared;
}

// Every combination of these knobs, each with its own uniform number.
std::vector<cuda::TokenDrawRow> parameter_grid(uint64_t seed) {
  std::vector<cuda::TokenDrawRow> rows;
  uint64_t step = 0;
  for (double t : {0.0, 0.05, 0.8, 1.0, 3.0})
    for (int64_t k : {int64_t{0}, int64_t{1}, int64_t{40}, int64_t{5000}})
      for (double p : {1.0, 0.9, 0.3})
        for (double mp : {0.0, 0.02, 0.5}) {
          cuda::TokenDrawRow r;
          r.temperature = t, r.top_k = k, r.top_p = p, r.min_p = mp;
          r.uniform = serve::sampling_uniform(seed, step++);
          r.logprobs = step % 2 == 0;
          r.top_logprobs = static_cast<int32_t>(step % 3 == 0 ? 5 : 0);
          rows.push_back(r);
        }
  return rows;
}

TEST(CudaTokenDraw, EqualsTheCpuSamplerOnV4SizeRows) {
  FP4KIT_REQUIRE_GPU();
  constexpr int64_t V = 129280;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  int compared = 0;
  for (uint64_t seed : {1u, 2u}) {
    const std::vector<cuda::TokenDrawRow> grid = parameter_grid(seed);
    std::vector<float> logits(grid.size() * V);
    for (float& x : logits) x = normal(rng);
    compared += expect_draws_match(logits, V, grid, "seed " + std::to_string(seed));
  }
  EXPECT_EQ(compared, 2 * 180);
}

TEST(CudaTokenDraw, EqualsTheCpuSamplerOnTiesZerosAndExtremes) {
  FP4KIT_REQUIRE_GPU();
  constexpr int64_t V = 1000;
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> small(-2, 2);
  std::vector<std::vector<float>> kinds;
  std::vector<float> ties(V);  // five values over the whole row: long runs of equal logits
  for (float& x : ties) x = static_cast<float>(small(rng));
  kinds.push_back(ties);
  std::vector<float> zeros(V);  // +0 and -0 mixed (equal logits) and a few negatives
  for (int64_t i = 0; i < V; ++i) zeros[static_cast<size_t>(i)] = i % 7 == 0 ? -1.5f : (i % 2 ? -0.0f : 0.0f);
  kinds.push_back(zeros);
  kinds.push_back(std::vector<float>(V, 2.5f));  // all equal
  std::vector<float> dominant(V, -30.0f);        // one logit far above the rest
  dominant[613] = 60.0f;
  kinds.push_back(dominant);
  std::vector<float> wide(V);  // spread far beyond exp's range at small temperatures
  std::uniform_real_distribution<float> u(-1e4f, 1e4f);
  for (float& x : wide) x = u(rng);
  kinds.push_back(wide);
  std::vector<float> tiny(V);  // subnormal logits
  for (int64_t i = 0; i < V; ++i) tiny[static_cast<size_t>(i)] = static_cast<float>(i % 13) * 1e-41f;
  kinds.push_back(tiny);
  int compared = 0;
  for (size_t k = 0; k < kinds.size(); ++k) {
    std::vector<cuda::TokenDrawRow> grid = parameter_grid(100 + k);
    // Extreme settings too: top_k past the vocabulary, min_p 1, a uniform next to 0 and next to 1.
    for (double uniform : {0x1p-54, 1.0 - 0x1p-53, 0.5}) {
      cuda::TokenDrawRow r;
      r.temperature = 0.7, r.top_k = 5 * V, r.min_p = 1.0, r.uniform = uniform, r.top_logprobs = 3, r.logprobs = true;
      grid.push_back(r);
      r.min_p = 0.0, r.top_p = 0.999999, r.temperature = 100.0;
      grid.push_back(r);
    }
    std::vector<float> logits;
    for (size_t r = 0; r < grid.size(); ++r) logits.insert(logits.end(), kinds[k].begin(), kinds[k].end());
    compared += expect_draws_match(logits, V, grid, "kind " + std::to_string(k));
  }
  EXPECT_EQ(compared, static_cast<int>(kinds.size()) * 186);
}

// Calls whose rows are all greedy without top logprobs take the first largest logit with no sort:
// the same tokens and logprobs as the CPU sampler on V4-size rows, ties, signed zeros and extremes,
// and a non-finite logit still named per row.
TEST(CudaTokenDraw, AllGreedyRowsTakeTheFirstLargestLogitWithoutTheSort) {
  FP4KIT_REQUIRE_GPU();
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<cuda::TokenDrawRow> rows(6);
  for (size_t r = 0; r < rows.size(); ++r) rows[r].temperature = r % 3 == 0 ? -1.0 : 0.0, rows[r].logprobs = r % 2 == 0;
  constexpr int64_t V = 129280;
  std::vector<float> big(rows.size() * V);
  for (float& x : big) x = normal(rng);
  big[2 * V + 77] = big[2 * V + 5000] = 40.0f;  // a tie at the top: the lower id
  EXPECT_EQ(expect_draws_match(big, V, rows, "greedy V4-size"), 6);
  constexpr int64_t S = 1000;
  std::vector<float> small(rows.size() * S);
  std::uniform_int_distribution<int> few(-2, 2);
  for (float& x : small) x = static_cast<float>(few(rng));
  for (int64_t i = 0; i < S; ++i) small[static_cast<size_t>(S + i)] = i % 2 ? -0.0f : 0.0f;  // +0 and -0 tie
  for (int64_t i = 0; i < S; ++i) small[static_cast<size_t>(3 * S + i)] = static_cast<float>(i % 13) * 1e-41f;  // subnormals
  small[static_cast<size_t>(4 * S + 999)] = 3e38f;
  EXPECT_EQ(expect_draws_match(small, S, rows, "greedy ties"), 6);
  cuda::Stream stream;
  small[static_cast<size_t>(5 * S + 321)] = std::numeric_limits<float>::quiet_NaN();
  small[static_cast<size_t>(5 * S + 700)] = -std::numeric_limits<float>::infinity();
  const cuda::DeviceBuffer d = testing::upload(small, stream, "logits");
  const std::vector<cuda::TokenDrawResult> got = cuda::draw_tokens(d.data<float>(), S, rows, stream.get());
  ASSERT_EQ(got.size(), rows.size());
  EXPECT_EQ(got[5].first_non_finite, 321);
  EXPECT_EQ(got[4].first_non_finite, -1);
  EXPECT_EQ(got[4].token, 999);
}

// Calls whose rows all take every token as a candidate (no top_k, top_p or min_p; greedy rows too)
// with at most one top logprob walk the tokens in id order without the sort: the same tokens,
// logprobs and top logprob as the CPU sampler, on V4-size rows and on rows of ties, signed zeros,
// one dominant logit, a spread beyond exp's range and subnormals; uniform numbers next to 0 and 1.
TEST(CudaTokenDraw, EveryTokenACandidateWalksTheIdsWithoutTheSort) {
  FP4KIT_REQUIRE_GPU();
  std::vector<cuda::TokenDrawRow> rows;
  uint64_t step = 0;
  for (double t : {0.0, 0.05, 0.8, 1.0, 3.0})
    for (int64_t k : {int64_t{0}, int64_t{129280}, int64_t{1} << 40})
      for (int32_t top : {0, 1}) {
        cuda::TokenDrawRow r;
        r.temperature = t, r.top_k = k, r.top_logprobs = top, r.logprobs = step % 2 == 0;
        r.uniform = step % 7 == 0 ? 0x1p-54 : step % 7 == 1 ? 1.0 - 0x1p-53 : serve::sampling_uniform(21, step);
        ++step;
        rows.push_back(r);
      }
  constexpr int64_t V = 129280;
  std::mt19937 rng(23);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> big(rows.size() * V);
  for (float& x : big) x = normal(rng);
  EXPECT_EQ(expect_draws_match(big, V, rows, "id order V4-size"), static_cast<int>(rows.size()));
  constexpr int64_t S = 1000;
  std::uniform_int_distribution<int> few(-2, 2);
  std::uniform_real_distribution<float> wide(-1e4f, 1e4f);
  std::vector<float> small(rows.size() * S);
  for (size_t r = 0; r < rows.size(); ++r)
    for (int64_t i = 0; i < S; ++i) {
      float& x = small[r * S + static_cast<size_t>(i)];
      switch (r % 5) {
        case 0: x = static_cast<float>(few(rng)); break;      // long runs of ties
        case 1: x = i % 2 ? -0.0f : 0.0f; break;              // +0 and -0
        case 2: x = i == 613 ? 60.0f : -30.0f; break;         // one dominant logit
        case 3: x = wide(rng); break;                          // beyond exp's range at small temperatures
        default: x = static_cast<float>(i % 13) * 1e-41f;      // subnormals
      }
    }
  EXPECT_EQ(expect_draws_match(small, S, rows, "id order small"), static_cast<int>(rows.size()));
}

TEST(CudaTokenDraw, NonFiniteLogitsAreNamedPerRowAndOtherRowsStillDraw) {
  FP4KIT_REQUIRE_GPU();
  constexpr int64_t V = 700;
  std::vector<float> logits = testing::random_floats(3 * V, 9);
  logits[V + 500] = std::numeric_limits<float>::infinity();
  logits[V + 77] = std::numeric_limits<float>::quiet_NaN();
  logits[2 * V + 699] = -std::numeric_limits<float>::infinity();
  cuda::Stream stream;
  const cuda::DeviceBuffer d = testing::upload(logits, stream, "logits");
  std::vector<cuda::TokenDrawRow> rows(3);
  rows[0].temperature = 0;
  const std::vector<cuda::TokenDrawResult> got = cuda::draw_tokens(d.data<float>(), V, rows, stream.get());
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].first_non_finite, -1);
  EXPECT_EQ(got[0].token, serve::draw_token(logits.data(), V, as_engine(rows[0])).token);
  EXPECT_EQ(got[1].first_non_finite, 77);
  EXPECT_EQ(got[2].first_non_finite, 699);
}

TEST(CudaTokenDraw, ParametersOutOfRangeAreRefusedNamingTheRow) {
  FP4KIT_REQUIRE_GPU();
  constexpr int64_t V = 64;
  cuda::Stream stream;
  const cuda::DeviceBuffer d = testing::upload(testing::random_floats(2 * V, 3), stream, "logits");
  const auto refused = [&](cuda::TokenDrawRow bad, const std::string& field) {
    std::vector<cuda::TokenDrawRow> rows(2);
    rows[1] = bad;
    try {
      cuda::draw_tokens(d.data<float>(), V, rows, stream.get());
      ADD_FAILURE() << field << " accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("row 1: " + field), std::string::npos) << e.what();
    }
  };
  cuda::TokenDrawRow r;
  r.top_p = 0.0;
  refused(r, "top_p");
  r = {}, r.min_p = 1.5;
  refused(r, "min_p");
  r = {}, r.uniform = 1.0;
  refused(r, "the uniform");
  r = {}, r.temperature = std::numeric_limits<double>::quiet_NaN();
  refused(r, "temperature");
  r = {}, r.top_k = -1;
  refused(r, "top_k");
  EXPECT_TRUE(cuda::draw_tokens(d.data<float>(), V, {}, stream.get()).empty());
}

}  // namespace
}  // namespace fp4kit
