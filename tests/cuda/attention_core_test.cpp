// The tiled attention core (many heads sharing a row's keys) against the reference kernel, one
// block per (row, head), which the GPU forward tests hold to the CPU engine: sliding window only,
// every causal compressed entry, and indexer picks, at V4-Flash-like and smaller shapes, with
// random inputs; NaN in a query stays in that head's output. A continuation from a cache gives the
// whole pass's rows exactly. Only the score's dot product sums in
// another order, so the bound is a few F32 ulps of the outputs' size; NaN fails every comparison.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "cuda/v4_attention.h"
#include "gpu_test.h"

namespace fp4kit {
namespace {

using testing::random_floats;
using testing::upload;

struct Case {
  int64_t batch, seq, heads, head_dim, window, ratio, pick_stride;
  cuda::CompressedKeys keys;
};

// Runs both kernels on one random problem; returns their outputs (tiled first).
std::pair<std::vector<float>, std::vector<float>> run_both(const Case& c, uint32_t seed, bool nan_query = false,
                                                           bool* tiled_ran = nullptr) {
  cuda::Stream s;
  const int64_t T = c.batch * c.seq, D = c.head_dim, count = c.ratio > 0 ? c.seq / c.ratio : 0;
  std::vector<float> q = random_floats(static_cast<size_t>(T * c.heads * D), seed, -1.5f, 1.5f);
  if (nan_query) q[static_cast<size_t>((5 * c.heads + 3) * D + 7)] = std::nanf("");  // row 5, head 3
  const std::vector<float> kv = random_floats(static_cast<size_t>(T * D), seed + 1, -1.5f, 1.5f);
  const std::vector<float> entries = random_floats(static_cast<size_t>(std::max<int64_t>(c.batch * count * D, 1)), seed + 2, -1.5f, 1.5f);
  const std::vector<float> sink = random_floats(static_cast<size_t>(c.heads), seed + 3, -1.5f, 1.5f);
  std::vector<int32_t> picks(static_cast<size_t>(std::max<int64_t>(T * c.pick_stride, 1)), -1), pick_count(static_cast<size_t>(T), 0);
  if (c.keys == cuda::CompressedKeys::Picked) {
    std::mt19937 rng(seed + 4);
    for (int64_t row = 0; row < T; ++row) {
      const int64_t visible = (row % c.seq + 1) / c.ratio;
      std::vector<int32_t> all(static_cast<size_t>(visible));
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng);
      const int64_t k = std::min(visible, c.pick_stride);
      std::sort(all.begin(), all.begin() + k);
      std::copy(all.begin(), all.begin() + k, picks.begin() + row * c.pick_stride);
      pick_count[static_cast<size_t>(row)] = static_cast<int32_t>(k);
    }
  }
  const cuda::DeviceBuffer dq = upload(q, s, "q"), dkv = upload(kv, s, "kv"), de = upload(entries, s, "entries");
  const cuda::DeviceBuffer dsink = upload(sink, s, "sink"), dp = upload(picks, s, "picks"), dc = upload(pick_count, s, "counts");
  cuda::DeviceBuffer out_tiled(static_cast<size_t>(T * c.heads * D) * 4), out_ref(static_cast<size_t>(T * c.heads * D) * 4);
  cuda::AttentionCore a;
  a.q = dq.data<float>(), a.kv = dkv.data<float>(), a.sink = dsink.data<float>();
  a.heads = c.heads, a.head_dim = D, a.window = c.window, a.ratio = c.ratio, a.compressed = c.keys;
  if (c.keys != cuda::CompressedKeys::None) a.entries = de.data<float>();
  if (c.keys == cuda::CompressedKeys::Picked)
    a.picks = dp.data<int32_t>(), a.pick_count = dc.data<int32_t>(), a.pick_stride = c.pick_stride;
  const cuda::SequenceBatch sb{c.batch, c.seq};
  a.out = out_ref.data<float>();
  cuda::attention_core_reference(a, sb, s.get());
  a.out = out_tiled.data<float>();
  int64_t max_keys = std::min(c.window, c.seq);
  if (c.keys == cuda::CompressedKeys::AllCausal) max_keys += count;
  if (c.keys == cuda::CompressedKeys::Picked) max_keys += std::min(c.pick_stride, count);
  const bool ran = cuda::attention_core_tiled(a, sb, max_keys, s.get());
  if (tiled_ran) *tiled_ran = ran;
  return {testing::read_back<float>(out_tiled.data(), static_cast<size_t>(T * c.heads * D), s),
          testing::read_back<float>(out_ref.data(), static_cast<size_t>(T * c.heads * D), s)};
}

void expect_close(const Case& c, uint32_t seed) {
  bool ran = false;
  const auto [tiled, ref] = run_both(c, seed, false, &ran);
  ASSERT_TRUE(ran) << "the tiled kernel did not take this shape";
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::fabs(double(tiled[i]) - double(ref[i]));
    if (!(d <= worst)) worst = d, at = i;  // NaN becomes the worst
    if (std::isnan(d)) break;
  }
  EXPECT_LE(worst, 3e-6) << "at output " << at << ": tiled " << tiled[at] << ", reference " << ref[at];
}

TEST(CudaAttentionCore, TiledMatchesTheReferenceOverTheSlidingWindow) {
  FP4KIT_REQUIRE_GPU();
  expect_close({2, 200, 64, 512, 128, 0, 0, cuda::CompressedKeys::None}, 11);
  // Few rows (decode-like): 16 heads a block, scores in 128-dimension tiles.
  expect_close({1, 100, 64, 512, 128, 0, 0, cuda::CompressedKeys::None}, 12);
}

TEST(CudaAttentionCore, TiledMatchesTheReferenceWithEveryCausalEntry) {
  FP4KIT_REQUIRE_GPU();
  expect_close({2, 160, 128, 128, 32, 8, 0, cuda::CompressedKeys::AllCausal}, 21);
  // Few rows with a head of 64 dimensions: 16 heads a block, 32-dimension score tiles.
  expect_close({1, 60, 64, 64, 32, 8, 0, cuda::CompressedKeys::AllCausal}, 22);
}

TEST(CudaAttentionCore, TiledMatchesTheReferenceWithIndexerPicks) {
  FP4KIT_REQUIRE_GPU();
  expect_close({3, 96, 64, 256, 16, 4, 12, cuda::CompressedKeys::Picked}, 31);
  // 32 heads per block: rows too long for 64 heads' scores in shared memory.
  expect_close({1, 3000, 32, 64, 128, 4, 700, cuda::CompressedKeys::Picked}, 41);
}

TEST(CudaAttentionCore, NanInAQueryStaysInThatHeadsOutput) {
  FP4KIT_REQUIRE_GPU();
  const Case c{1, 40, 64, 128, 16, 0, 0, cuda::CompressedKeys::None};
  const auto [tiled, ref] = run_both(c, 51, true);
  const size_t D = 128, head = (5 * 64 + 3) * D;
  for (size_t i = 0; i < tiled.size(); ++i) {
    const bool poisoned = i >= head && i < head + D;
    ASSERT_EQ(std::isnan(tiled[i]), poisoned) << "output " << i;
    ASSERT_EQ(std::isnan(ref[i]), poisoned) << "output " << i;
  }
}

// A continuation: the last n rows of each sequence as queries (at position past + t), the keys of
// every token held in a cache of larger capacity whose unused rows are NaN. Both kernels must give
// exactly the whole pass's outputs for those rows: the same keys in the same order.
void expect_continuation_equals_whole(const Case& c, int64_t n, uint32_t seed) {
  cuda::Stream s;
  const int64_t T = c.batch * c.seq, D = c.head_dim, count = c.ratio > 0 ? c.seq / c.ratio : 0, past = c.seq - n;
  const int64_t cap = c.seq + 7;
  const std::vector<float> q = random_floats(static_cast<size_t>(T * c.heads * D), seed, -1.5f, 1.5f);
  const std::vector<float> kv = random_floats(static_cast<size_t>(T * D), seed + 1, -1.5f, 1.5f);
  const std::vector<float> entries = random_floats(static_cast<size_t>(std::max<int64_t>(c.batch * count * D, 1)), seed + 2, -1.5f, 1.5f);
  const std::vector<float> sink = random_floats(static_cast<size_t>(c.heads), seed + 3, -1.5f, 1.5f);
  std::vector<int32_t> picks(static_cast<size_t>(std::max<int64_t>(T * c.pick_stride, 1)), 0), pick_count(static_cast<size_t>(T), 0);
  if (c.keys == cuda::CompressedKeys::Picked)
    for (int64_t row = 0; row < T; ++row) {  // every other visible entry, from the newest down
      const int64_t visible = (row % c.seq + 1) / c.ratio;
      int32_t k = 0;
      for (int64_t e = visible - 1; e >= 0 && k < c.pick_stride; e -= 2) picks[static_cast<size_t>(row * c.pick_stride + k++)] = static_cast<int32_t>(e);
      std::sort(picks.begin() + row * c.pick_stride, picks.begin() + row * c.pick_stride + k);
      pick_count[static_cast<size_t>(row)] = k;
    }
  // The continuation's inputs: its rows of q and the picks, the keys at stride cap.
  std::vector<float> q_new, kv_cache(static_cast<size_t>(c.batch * cap * D), std::nanf(""));
  std::vector<int32_t> picks_new, count_new;
  for (int64_t b = 0; b < c.batch; ++b) {
    const int64_t first = b * c.seq + past;
    q_new.insert(q_new.end(), q.begin() + first * c.heads * D, q.begin() + (first + n) * c.heads * D);
    picks_new.insert(picks_new.end(), picks.begin() + first * c.pick_stride, picks.begin() + (first + n) * c.pick_stride);
    count_new.insert(count_new.end(), pick_count.begin() + first, pick_count.begin() + first + n);
    std::copy_n(kv.begin() + b * c.seq * D, c.seq * D, kv_cache.begin() + b * cap * D);
  }
  picks_new.resize(std::max<size_t>(picks_new.size(), 1));
  const cuda::DeviceBuffer dq = upload(q, s, "q"), dkv = upload(kv, s, "kv"), de = upload(entries, s, "entries");
  const cuda::DeviceBuffer dsink = upload(sink, s, "sink"), dp = upload(picks, s, "picks"), dc = upload(pick_count, s, "counts");
  const cuda::DeviceBuffer dq_new = upload(q_new, s, "q new"), dkv_cache = upload(kv_cache, s, "kv cache");
  const cuda::DeviceBuffer dp_new = upload(picks_new, s, "picks new"), dc_new = upload(count_new, s, "counts new");
  cuda::DeviceBuffer out_whole(static_cast<size_t>(T * c.heads * D) * 4), out_new(static_cast<size_t>(c.batch * n * c.heads * D) * 4);
  cuda::AttentionCore a;
  a.sink = dsink.data<float>(), a.heads = c.heads, a.head_dim = D, a.window = c.window, a.ratio = c.ratio;
  a.compressed = c.keys;
  if (c.keys != cuda::CompressedKeys::None) a.entries = de.data<float>();
  for (bool tiled : {false, true}) {
    auto run = [&](const cuda::SequenceBatch& sb) {
      if (!tiled) return cuda::attention_core_reference(a, sb, s.get()), true;
      int64_t max_keys = std::min(c.window, sb.total());
      if (c.keys == cuda::CompressedKeys::AllCausal) max_keys += count;
      if (c.keys == cuda::CompressedKeys::Picked) max_keys += std::min(c.pick_stride, count);
      return cuda::attention_core_tiled(a, sb, max_keys, s.get());
    };
    a.q = dq.data<float>(), a.kv = dkv.data<float>(), a.out = out_whole.data<float>();
    if (c.keys == cuda::CompressedKeys::Picked) a.picks = dp.data<int32_t>(), a.pick_count = dc.data<int32_t>(), a.pick_stride = c.pick_stride;
    ASSERT_TRUE(run({c.batch, c.seq})) << "the tiled kernel did not take this shape";
    a.q = dq_new.data<float>(), a.kv = dkv_cache.data<float>(), a.out = out_new.data<float>();
    if (c.keys == cuda::CompressedKeys::Picked) a.picks = dp_new.data<int32_t>(), a.pick_count = dc_new.data<int32_t>();
    ASSERT_TRUE(run({c.batch, n, past, cap}));
    const std::vector<float> whole = testing::read_back<float>(out_whole.data(), static_cast<size_t>(T * c.heads * D), s);
    const std::vector<float> got = testing::read_back<float>(out_new.data(), static_cast<size_t>(c.batch * n * c.heads * D), s);
    for (int64_t b = 0; b < c.batch; ++b)
      for (int64_t i = 0; i < n * c.heads * D; ++i) {
        const float want = whole[static_cast<size_t>((b * c.seq + past) * c.heads * D + i)];
        const float have = got[static_cast<size_t>(b * n * c.heads * D + i)];
        ASSERT_TRUE(std::isfinite(have) && have == want)
            << (tiled ? "tiled" : "reference") << " kernel, sequence " << b << ", output " << i << ": " << have
            << " for " << want;
      }
  }
}

TEST(CudaAttentionCore, ContinuationGivesTheWholeSequencesRows) {
  FP4KIT_REQUIRE_GPU();
  expect_continuation_equals_whole({2, 200, 64, 512, 128, 0, 0, cuda::CompressedKeys::None}, 5, 71);
  expect_continuation_equals_whole({2, 160, 128, 128, 32, 8, 0, cuda::CompressedKeys::AllCausal}, 1, 72);
  expect_continuation_equals_whole({3, 96, 64, 256, 16, 4, 12, cuda::CompressedKeys::Picked}, 9, 73);
}

TEST(CudaAttentionCore, TiledDeclinesShapesItDoesNotTake) {
  FP4KIT_REQUIRE_GPU();
  bool ran = true;
  run_both({1, 20, 4, 64, 8, 0, 0, cuda::CompressedKeys::None}, 61, false, &ran);
  EXPECT_FALSE(ran) << "4 heads";
  run_both({1, 20, 64, 48, 8, 0, 0, cuda::CompressedKeys::None}, 62, false, &ran);
  EXPECT_FALSE(ran) << "head_dim 48";
}

}  // namespace
}  // namespace fp4kit
