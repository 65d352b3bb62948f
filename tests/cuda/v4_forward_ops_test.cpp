// The V4 forward pass's small operations on the GPU against the CPU engine's own functions on
// random inputs (the engine matches transformers): row RMS norms, the partial rotary embedding at
// large positions, and the hyper-connections (pre with its Sinkhorn mixing, post, head). Sums run
// in another order on the GPU, so the bound is a few ulps relative; NaN fails every comparison.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <tuple>

#include "base/error.h"
#include "cuda/elementwise.h"
#include "cuda/v4_hyper_connection.h"
#include "cuda/v4_moe.h"
#include "cuda/v4_norm_rope.h"
#include "engine/hyper_connection.h"
#include "engine/model_config.h"
#include "engine/moe.h"
#include "engine/ops.h"
#include "engine/rope.h"
#include "formats/bf16.h"
#include "gpu_test.h"
#include "test_data.h"

namespace fp4kit {
namespace {

using testing::random_floats;
using testing::upload;

// Largest |gpu - cpu| / (|cpu| + floor); fails on NaN or a length mismatch. `floor` is about the size
// of the terms a value sums (a sum that cancels to near zero keeps the absolute error of its terms).
void expect_close(const std::vector<float>& gpu, const std::vector<float>& cpu, double tol, double floor,
                  const char* what) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    ASSERT_TRUE(std::isfinite(gpu[i]) && std::isfinite(cpu[i])) << what << " [" << i << "]: " << gpu[i] << " vs " << cpu[i];
    const double e = std::fabs(static_cast<double>(gpu[i]) - cpu[i]) / (std::fabs(cpu[i]) + floor);
    if (e > worst) worst = e, at = i;
  }
  EXPECT_LE(worst, tol) << what << ": worst at [" << at << "] " << gpu[at] << " vs " << cpu[at];
}

TEST(CudaV4Ops, RmsNormRowsMatchesTheEngine) {
  FP4KIT_REQUIRE_GPU();
  cuda::Stream s;
  for (int64_t n : {1, 7, 512, 4096, 16384}) {
    const int64_t rows = 5;
    auto x = random_floats(static_cast<size_t>(rows * n), 11 + static_cast<uint32_t>(n));
    x[0] = 1e-30f;  // tiny and large values in the same row
    x[static_cast<size_t>(n - 1)] = 3e4f;
    const auto w = random_floats(static_cast<size_t>(n), 5, 0.5f, 1.5f);
    for (bool weighted : {false, true}) {
      std::vector<float> cpu(x.size());
      for (int64_t r = 0; r < rows; ++r)
        engine::rms_norm(&x[r * n], static_cast<size_t>(n), weighted ? w.data() : nullptr, 1e-6f, &cpu[r * n]);
      auto dx = upload(x, s, "x");
      auto dw = upload(w, s, "w");
      cuda::DeviceBuffer out(x.size() * 4, "out");
      cuda::rms_norm_rows(dx.data<float>(), rows, n, weighted ? dw.data<float>() : nullptr, 1e-6f, out.data<float>(), s.get());
      expect_close(testing::read_back<float>(out.data(), x.size(), s), cpu, 4e-7, 1e-6, "rms_norm");
      // In place, with the BF16 copy: each value the encoder's rounding of the F32 result.
      cuda::DeviceBuffer out16(x.size() * 2, "out bf16");
      cuda::rms_norm_rows(dx.data<float>(), rows, n, weighted ? dw.data<float>() : nullptr, 1e-6f, dx.data<float>(), s.get(),
                          out16.data<uint16_t>());
      const auto in_place = testing::read_back<float>(dx.data(), x.size(), s);
      expect_close(in_place, cpu, 4e-7, 1e-6, "rms_norm in place");
      const auto got16 = testing::read_back<uint16_t>(out16.data(), x.size(), s);
      size_t differ = 0;
      for (size_t i = 0; i < x.size(); ++i) differ += got16[i] != BF16::from_float(in_place[i]).bits;
      EXPECT_EQ(differ, 0u) << "BF16 copies that are not the rounding of the F32 result, n " << n;
    }
  }
}

// The clamped SwiGLU against the engine's (engine/moe.cpp: silu(min(g, limit)) · clamp(u)), with
// values past the clamp, infinities and NaN; its BF16 copy is the encoder's rounding of each result.
TEST(CudaV4Ops, SwigluClampedMatchesTheEngineAndRoundsToBf16) {
  FP4KIT_REQUIRE_GPU();
  cuda::Stream s;
  const size_t n = 70001;
  auto g = random_floats(n, 21, -25.0f, 25.0f), u = random_floats(n, 22, -25.0f, 25.0f);
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  g[0] = nan, u[1] = nan, g[2] = inf, g[3] = -inf, u[4] = inf, u[5] = -inf, g[6] = 0.0f, g[7] = -0.0f;
  g[8] = 1e-30f, g[9] = -88.0f, g[10] = 3.4e38f;
  for (const float limit : {10.0f, 0.0f}) {
    std::vector<float> cpu(n);
    for (size_t i = 0; i < n; ++i) {
      float gi = g[i], ui = u[i];
      if (limit > 0) gi = std::min(gi, limit), ui = std::clamp(ui, -limit, limit);
      cpu[i] = engine::silu(gi) * ui;
    }
    auto dg = upload(g, s, "g");
    auto du = upload(u, s, "u");
    cuda::DeviceBuffer d16(n * 2, "g bf16");
    cuda::swiglu_clamped(dg.data<float>(), du.data<float>(), static_cast<int64_t>(n), limit, s.get(), d16.data<uint16_t>());
    const auto got = testing::read_back<float>(dg.data(), n, s);
    const auto got16 = testing::read_back<uint16_t>(d16.data(), n, s);
    size_t bad = 0, bad16 = 0;
    for (size_t i = 0; i < n; ++i) {
      const bool ok = std::isnan(cpu[i]) ? std::isnan(got[i])
                      : std::isinf(cpu[i]) ? got[i] == cpu[i]
                                           : std::isfinite(got[i]) && std::fabs(got[i] - cpu[i]) <= 1e-6 * std::fabs(cpu[i]) + 1e-37;
      if (!ok && ++bad <= 5) ADD_FAILURE() << "limit " << limit << " [" << i << "] g " << g[i] << " u " << u[i] << ": " << got[i] << " vs " << cpu[i];
      if (got16[i] != BF16::from_float(got[i]).bits && ++bad16 <= 5)
        ADD_FAILURE() << "limit " << limit << " [" << i << "] bf16 " << got16[i] << " for " << got[i];
    }
    EXPECT_EQ(bad, 0u) << "limit " << limit;
    EXPECT_EQ(bad16, 0u) << "limit " << limit;
  }
}

TEST(CudaV4Ops, RopeMatchesTheEngineAtLargePositions) {
  FP4KIT_REQUIRE_GPU();
  cuda::Stream s;
  engine::YarnParams yarn;
  yarn.enabled = true;
  yarn.factor = 16;
  yarn.original_max_position = 65536;
  for (const engine::Rope& rope : {engine::Rope(64, 10000.0f, {}), engine::Rope(64, 160000.0f, yarn)}) {
    const int64_t rows = 9, heads = 3, D = 128;
    const std::vector<int64_t> pos = {0, 1, 2, 127, 128, 4095, 65535, 131071, 1000003};
    auto v = random_floats(static_cast<size_t>(rows * heads * D), 3);
    for (bool inverse : {false, true}) {
      std::vector<float> cpu = v;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t h = 0; h < heads; ++h) rope.apply(&cpu[(r * heads + h) * D + D - 64], pos[r], inverse);
      auto dv = upload(v, s, "v");
      auto dp = upload(pos, s, "positions");
      auto df = upload(rope.inv_freq(), s, "inv_freq");
      cuda::RopeRows r;
      r.v = dv.data<float>();
      r.rows = rows, r.heads = heads, r.row_stride = heads * D, r.head_stride = D, r.offset = D - 64;
      r.positions = dp.data<int64_t>(), r.inv_freq = df.data<float>(), r.dim = 64, r.inverse = inverse;
      cuda::rope_rows(r, s.get());
      // cos/sin of angles up to 1e6 rad: both sides use f32 libm-quality functions; allow 4e-6 of the scale 2.
      expect_close(testing::read_back<float>(dv.data(), v.size(), s), cpu, 2e-6, 2.0, "rope");
    }
  }
}

// The norm and the rope in one launch (the attention's q heads and its kv row) against the two
// launches they replace, bit for bit: weighted and not, several heads a position, positions up to
// 10^6, a row of zeros (eps alone), huge and tiny values, NaN in one row (it stays in its row).
TEST(CudaV4Ops, NormThenRopeInOneLaunchIsBitIdentical) {
  FP4KIT_REQUIRE_GPU();
  cuda::Stream s;
  const engine::Rope rope(64, 10000.0f, {});
  auto df = upload(rope.inv_freq(), s, "inv_freq");
  for (const auto& [tokens, heads, D] : {std::tuple<int64_t, int64_t, int64_t>{5, 4, 512}, {1, 1, 512}, {3, 2, 128}, {2, 1, 64}}) {
    const int64_t rows = tokens * heads;
    auto v = random_floats(static_cast<size_t>(rows * D), 41 + static_cast<uint32_t>(D), -3.0f, 3.0f);
    std::fill(v.begin(), v.begin() + D, 0.0f);
    if (rows > 1) v[static_cast<size_t>(D)] = 3e30f, v[static_cast<size_t>(D + 1)] = 1e-30f;
    if (rows > 2) v[static_cast<size_t>(2 * D + 3)] = std::numeric_limits<float>::quiet_NaN();
    const auto w = random_floats(static_cast<size_t>(D), 9, 0.5f, 1.5f);
    std::vector<int64_t> pos(static_cast<size_t>(tokens));
    for (int64_t t = 0; t < tokens; ++t) pos[static_cast<size_t>(t)] = t == 0 ? 1000003 : 7 * t;
    auto dw = upload(w, s, "w");
    auto dp = upload(pos, s, "positions");
    for (const bool weighted : {false, true}) {
      auto two = upload(v, s, "two launches");
      auto one = upload(v, s, "one launch");
      cuda::rms_norm_rows(two.data<float>(), rows, D, weighted ? dw.data<float>() : nullptr, 1e-6f, two.data<float>(), s.get());
      cuda::RopeRows r;
      r.v = two.data<float>(), r.rows = tokens, r.heads = heads, r.row_stride = heads * D, r.head_stride = D, r.offset = D - 64;
      r.positions = dp.data<int64_t>(), r.inv_freq = df.data<float>(), r.dim = 64;
      cuda::rope_rows(r, s.get());
      cuda::NormRopeRows f;
      f.x = one.data<float>(), f.rows = rows, f.n = D, f.weight = weighted ? dw.data<float>() : nullptr, f.eps = 1e-6f;
      f.positions = dp.data<int64_t>(), f.rows_per_position = heads, f.inv_freq = df.data<float>(), f.dim = 64, f.offset = D - 64;
      cuda::rms_norm_rope_rows(f, s.get());
      const auto a = testing::read_back<uint32_t>(two.data(), v.size(), s);
      const auto b = testing::read_back<uint32_t>(one.data(), v.size(), s);
      size_t differ = 0;
      for (size_t i = 0; i < a.size(); ++i)
        if (a[i] != b[i] && ++differ <= 5) ADD_FAILURE() << "D " << D << " heads " << heads << " [" << i << "] " << a[i] << " vs " << b[i];
      EXPECT_EQ(differ, 0u) << "D " << D << " heads " << heads << (weighted ? " weighted" : "");
      size_t nan_rows = 0;
      for (int64_t row = 0; row < rows; ++row) {
        bool any = false;
        for (int64_t i = 0; i < D; ++i) {
          float x;
          std::memcpy(&x, &b[static_cast<size_t>(row * D + i)], 4);
          any |= std::isnan(x);
        }
        nan_rows += any;
      }
      EXPECT_EQ(nan_rows, rows > 2 ? 1u : 0u) << "a NaN stays in its row";
    }
  }
  cuda::NormRopeRows bad;
  bad.x = reinterpret_cast<float*>(16), bad.rows = 1, bad.n = 32, bad.positions = reinterpret_cast<const int64_t*>(16);
  bad.inv_freq = reinterpret_cast<const float*>(16), bad.dim = 64, bad.offset = 0;
  EXPECT_THROW(cuda::rms_norm_rope_rows(bad, s.get()), InputError) << "a rope slice past the row";
}

// hc_post's own check of what it writes: the index of the first non-finite result, as a scan of
// the new streams finds it (an infinite y in two tokens, an overflow in a third), and nothing
// lowered where every result is finite; the streams the same bits as without the check.
TEST(CudaV4Ops, HcPostFindsTheFirstNonFiniteResultItWrites) {
  FP4KIT_REQUIRE_GPU();
  cuda::Stream s;
  cuda::HcShape shape;
  shape.tokens = 5, shape.hc = 4, shape.hidden = 640;
  const int64_t T = shape.tokens, hc = shape.hc, H = shape.hidden, n = T * hc * H;
  const auto streams = random_floats(static_cast<size_t>(n), 61);
  const auto post = random_floats(static_cast<size_t>(T * hc), 62, 0.1f, 2.0f);
  const auto comb = random_floats(static_cast<size_t>(T * hc * hc), 63, 0.0f, 1.0f);
  for (const bool finite : {true, false}) {
    auto y = random_floats(static_cast<size_t>(T * H), 64);
    if (!finite) {
      y[static_cast<size_t>(3 * H + 5)] = std::numeric_limits<float>::infinity();
      y[static_cast<size_t>(2 * H + 600)] = -std::numeric_limits<float>::infinity();
      y[static_cast<size_t>(4 * H + 1)] = 3e38f;  // post · y overflows
    }
    auto d_plain = upload(streams, s, "streams");
    auto d_checked = upload(streams, s, "streams");
    auto d_y = upload(y, s, "y");
    auto d_post = upload(post, s, "post");
    auto d_comb = upload(comb, s, "comb");
    auto d_first = upload(std::vector<int64_t>{n}, s, "first non-finite");
    cuda::hc_post(d_plain.data<float>(), d_y.data<float>(), d_post.data<float>(), d_comb.data<float>(), shape, s.get());
    cuda::hc_post(d_checked.data<float>(), d_y.data<float>(), d_post.data<float>(), d_comb.data<float>(), shape, s.get(),
                  d_first.data<int64_t>());
    const auto plain = testing::read_back<uint32_t>(d_plain.data(), static_cast<size_t>(n), s);
    const auto checked = testing::read_back<uint32_t>(d_checked.data(), static_cast<size_t>(n), s);
    EXPECT_TRUE(plain == checked) << "the check changed the streams";
    int64_t want = n;
    for (int64_t i = 0; i < n && want == n; ++i) {
      float v;
      std::memcpy(&v, &checked[static_cast<size_t>(i)], 4);
      if (!std::isfinite(v)) want = i;
    }
    EXPECT_EQ(testing::read_back<int64_t>(d_first.data(), 1, s)[0], want) << (finite ? "finite" : "infinite y");
    if (!finite) {
      EXPECT_LT(want, n) << "the test's infinities must reach the streams";
    }
  }
}

// The inverse rope that also rounds every value of each head to BF16 (the attention output, for
// wo_a): the F32 values the same bits as the plain rope's, every BF16 value the encoder's rounding
// of its F32 value, rotated or not; nothing outside the heads' width written.
TEST(CudaV4Ops, RopeRowsRoundsEveryValueOfTheHeadToBf16) {
  FP4KIT_REQUIRE_GPU();
  cuda::Stream s;
  const engine::Rope rope(64, 10000.0f, {});
  auto df = upload(rope.inv_freq(), s, "inv_freq");
  const int64_t rows = 3, heads = 4, D = 512;
  auto v = random_floats(static_cast<size_t>(rows * heads * D), 71, -4.0f, 4.0f);
  v[5] = std::numeric_limits<float>::quiet_NaN(), v[D - 1] = std::numeric_limits<float>::infinity(), v[7] = 3.4e38f;
  const std::vector<int64_t> pos = {0, 17, 1000003};
  auto dp = upload(pos, s, "positions");
  for (const bool inverse : {true, false}) {
    auto plain = upload(v, s, "plain");
    auto with16 = upload(v, s, "with bf16");
    cuda::DeviceBuffer out16(v.size() * 2, "bf16");
    cuda::fill_bytes(out16.data(), 0xAB, out16.bytes(), s);
    cuda::RopeRows r;
    r.rows = rows, r.heads = heads, r.row_stride = heads * D, r.head_stride = D, r.offset = D - 64;
    r.positions = dp.data<int64_t>(), r.inv_freq = df.data<float>(), r.dim = 64, r.inverse = inverse;
    r.v = plain.data<float>();
    cuda::rope_rows(r, s.get());
    r.v = with16.data<float>(), r.out16 = out16.data<uint16_t>(), r.head_width = D;
    cuda::rope_rows(r, s.get());
    const auto a = testing::read_back<uint32_t>(plain.data(), v.size(), s);
    const auto b = testing::read_back<uint32_t>(with16.data(), v.size(), s);
    const auto b16 = testing::read_back<uint16_t>(out16.data(), v.size(), s);
    size_t differ = 0, bad16 = 0;
    for (size_t i = 0; i < v.size(); ++i) {
      differ += a[i] != b[i];
      float f;
      std::memcpy(&f, &b[i], 4);
      bad16 += b16[i] != BF16::from_float(f).bits;
    }
    EXPECT_EQ(differ, 0u) << "F32 values that differ from the plain rope's" << (inverse ? " (inverse)" : "");
    EXPECT_EQ(bad16, 0u) << "BF16 values that are not the rounding of the F32 value" << (inverse ? " (inverse)" : "");
  }
  cuda::RopeRows bad;
  bad.v = reinterpret_cast<float*>(16), bad.rows = 1, bad.positions = reinterpret_cast<const int64_t*>(16);
  bad.inv_freq = reinterpret_cast<const float*>(16), bad.dim = 64, bad.offset = 480;
  bad.out16 = reinterpret_cast<uint16_t*>(16), bad.head_width = 512;
  EXPECT_THROW(cuda::rope_rows(bad, s.get()), InputError) << "a rope slice past the head's width";
}

struct HcFixture {
  engine::ModelConfig cfg = engine::ModelConfig::load(testing::test_data("dsv4-tiny"));
  int64_t T = 37, hc = cfg.hc(), H = cfg.hidden();
  cuda::HcShape shape() const {
    cuda::HcShape s;
    s.tokens = T, s.hc = hc, s.hidden = H, s.hc_eps = cfg.hc_eps, s.rms_eps = cfg.rms_eps, s.sinkhorn_iters = cfg.hc_sinkhorn_iters;
    return s;
  }
};

// At the tiny fixture's width and at a wider one (many chunks of the tiled mixing kernel, many
// blocks of the split one), with a token count that leaves the last block of 32 tokens partly empty
// and with the few tokens of decode steps (the split mixing kernel, up to 8 tokens).
class CudaV4OpsHc : public ::testing::TestWithParam<std::tuple<int64_t, int64_t>> {};

TEST_P(CudaV4OpsHc, HyperConnectionsMatchTheEngine) {
  FP4KIT_REQUIRE_GPU();
  HcFixture f;
  const auto [width, tokens] = GetParam();
  if (width > 0) f.cfg.base.hidden_size = f.H = width;
  f.T = tokens;
  ASSERT_GE(f.hc, 2);
  cuda::Stream s;
  const int64_t T = f.T, hc = f.hc, H = f.H, rows = (2 + hc) * hc;
  const auto streams = random_floats(static_cast<size_t>(T * hc * H), 21);
  const auto fn = random_floats(static_cast<size_t>(rows * hc * H), 22, -0.05f, 0.05f);
  const auto base = random_floats(static_cast<size_t>(rows), 23, -1.0f, 1.0f);
  const std::vector<float> scale = {0.7f, 1.3f, 2.1f};
  const auto y = random_floats(static_cast<size_t>(T * H), 24);

  // CPU: the engine's functions.
  engine::HcMix mix;
  std::vector<float> collapsed(static_cast<size_t>(T * H));
  engine::hc_pre(streams.data(), T, {fn.data(), base.data(), scale.data()}, f.cfg, 2, collapsed.data(), mix);
  std::vector<float> updated = streams;
  engine::hc_post(updated.data(), y.data(), T, mix, f.cfg, 2);
  std::vector<float> head(static_cast<size_t>(T * H));
  engine::hc_head(updated.data(), T, {fn.data(), base.data(), scale.data()}, f.cfg, 2, head.data());

  // GPU.
  auto d_streams = upload(streams, s, "streams");
  auto d_fn = upload(fn, s, "fn"), d_base = upload(base, s, "base"), d_scale = upload(scale, s, "scale");
  auto d_y = upload(y, s, "y");
  cuda::DeviceBuffer d_collapsed(collapsed.size() * 4), d_post(static_cast<size_t>(T * hc) * 4),
      d_comb(static_cast<size_t>(T * hc * hc) * 4), d_head(head.size() * 4),
      d_scratch(static_cast<size_t>(cuda::hc_scratch_floats(f.shape())) * 4);
  const cuda::HcParamsDevice p{d_fn.data<float>(), d_base.data<float>(), d_scale.data<float>()};
  cuda::hc_pre(d_streams.data<float>(), f.shape(), p, d_collapsed.data<float>(), d_post.data<float>(), d_comb.data<float>(),
               d_scratch.data<float>(), s.get());
  // The mixing logits sum hc·H products in another order than the CPU: the rounding noise of both
  // sums grows with the square root of their length (bounds set at the tiny width, 256).
  const double order = std::max(1.0, std::sqrt(static_cast<double>(hc * H) / 256.0));
  expect_close(testing::read_back<float>(d_post.data(), mix.post.size(), s), mix.post, 2e-6 * order, 1e-3, "hc_pre post");
  expect_close(testing::read_back<float>(d_comb.data(), mix.comb.size(), s), mix.comb, 2e-5 * order, 1e-3, "hc_pre comb");
  expect_close(testing::read_back<float>(d_collapsed.data(), collapsed.size(), s), collapsed, 2e-6, 1.0, "hc_pre collapsed");
  {
    // With the sublayer's input norm in the same launch: the engine's rms_norm of its collapsed rows,
    // and bit for bit the GPU's collapse followed by rms_norm_rows.
    const auto norm = random_floats(static_cast<size_t>(H), 25, 0.5f, 1.5f);
    std::vector<float> normed(collapsed.size());
    for (int64_t t = 0; t < T; ++t)
      engine::rms_norm(&collapsed[static_cast<size_t>(t * H)], static_cast<size_t>(H), norm.data(), f.shape().rms_eps,
                       &normed[static_cast<size_t>(t * H)]);
    auto d_norm = upload(norm, s, "norm");
    cuda::DeviceBuffer d_normed(collapsed.size() * 4), d_two(collapsed.size() * 4), d_normed16(collapsed.size() * 2);
    cuda::hc_pre(d_streams.data<float>(), f.shape(), p, d_normed.data<float>(), d_post.data<float>(), d_comb.data<float>(),
                 d_scratch.data<float>(), s.get(), d_norm.data<float>(), d_normed16.data<uint16_t>());
    cuda::rms_norm_rows(d_collapsed.data<float>(), T, H, d_norm.data<float>(), f.shape().rms_eps, d_two.data<float>(), s.get());
    const auto fused = testing::read_back<float>(d_normed.data(), normed.size(), s);
    const auto two = testing::read_back<uint32_t>(d_two.data(), normed.size(), s);
    expect_close(fused, normed, 1e-5, 1.0, "hc_pre collapsed and normed");
    size_t differ = 0;
    for (size_t i = 0; i < fused.size(); ++i) {
      uint32_t bits;
      std::memcpy(&bits, &fused[i], 4);
      differ += bits != two[i];
    }
    EXPECT_EQ(differ, 0u) << "values of the fused collapse and norm that differ from collapse then rms_norm_rows";
    const auto fused16 = testing::read_back<uint16_t>(d_normed16.data(), normed.size(), s);
    size_t differ16 = 0;
    for (size_t i = 0; i < fused.size(); ++i) differ16 += fused16[i] != BF16::from_float(fused[i]).bits;
    EXPECT_EQ(differ16, 0u) << "BF16 copies that are not the rounding of the F32 result";
  }
  // hc_post and hc_head on the CPU's mixing, so that each is checked on its own.
  auto d_post_cpu = upload(mix.post, s, "post"), d_comb_cpu = upload(mix.comb, s, "comb");
  cuda::hc_post(d_streams.data<float>(), d_y.data<float>(), d_post_cpu.data<float>(), d_comb_cpu.data<float>(), f.shape(), s.get());
  expect_close(testing::read_back<float>(d_streams.data(), updated.size(), s), updated, 2e-6, 1.0, "hc_post");
  const cuda::HcParamsDevice hp{d_fn.data<float>(), d_base.data<float>(), d_scale.data<float>()};
  cuda::hc_head(d_streams.data<float>(), f.shape(), hp, d_head.data<float>(), d_scratch.data<float>(), s.get());
  expect_close(testing::read_back<float>(d_head.data(), head.size(), s), head, 2e-6, 1.0, "hc_head");
}

INSTANTIATE_TEST_SUITE_P(WidthsAndTokens, CudaV4OpsHc,
                         ::testing::Combine(::testing::Values(int64_t{0}, int64_t{1024}),
                                            ::testing::Values(int64_t{1}, int64_t{3}, int64_t{8}, int64_t{37})));

// The calibration amax of a linear input on the device against a host loop (maxima are exact, so
// bit for bit), with and without row weights, on random rows with large, negative and zero values;
// a NaN anywhere gives NaN in both outputs.
// The router's choices on the GPU (the warp kernel up to 512 experts, the thread kernel beyond)
// against the CPU engine's (engine::route_scores) on the same scores, bit for bit: random scores,
// many ties (equal scores and biases: the lower expert wins), ±0, infinities, NaN scores and a NaN
// bias (both -inf). Then the fused transform (scores_are_logits) against router_scores before it;
// and hash routing with an id outside the vocabulary, flagged.
TEST(CudaV4Ops, RouteTokensMatchTheEngine) {
  FP4KIT_REQUIRE_GPU();
  cuda::Stream s;
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (const auto& [E, k] : {std::pair<int64_t, int64_t>{256, 6}, {384, 6}, {8, 2}, {33, 8}, {512, 32}, {640, 6}}) {
    const int64_t T = 37;
    auto logits = random_floats(static_cast<size_t>(T * E), 31 + static_cast<uint32_t>(E), -6.0f, 6.0f);
    auto bias = random_floats(static_cast<size_t>(E), 7 + static_cast<uint32_t>(E), -0.5f, 0.5f);
    for (int64_t e = 0; e < E; e += 5) bias[static_cast<size_t>(e)] = 0.25f;   // ties through equal biases
    for (int64_t e = 0; e < E; ++e) logits[static_cast<size_t>(E + e)] = 1.5f;  // token 1: every score equal
    for (int64_t e = 0; e < E; e += 3) logits[static_cast<size_t>(2 * E + e)] = -inf;  // token 2: scores of 0
    logits[static_cast<size_t>(3 * E)] = nan, logits[static_cast<size_t>(3 * E + 1)] = inf;
    for (int64_t e = 0; e < E; ++e) logits[static_cast<size_t>(4 * E + e)] = nan;  // token 4: every score NaN
    logits[static_cast<size_t>(5 * E + 2)] = 40.0f, logits[static_cast<size_t>(5 * E + 3)] = 40.0f;  // tied on top
    bias[static_cast<size_t>(E - 1)] = nan;
    bias[1] = -0.0f, bias[2] = 0.0f;
    auto d_logits = upload(logits, s, "logits");
    auto d_bias = upload(bias, s, "bias");
    cuda::DeviceBuffer d_scores(logits.size() * 4, "scores");
    cuda::copy_on_device(d_scores.data(), d_logits.data(), logits.size() * 4, s);
    cuda::router_scores(d_scores.data<float>(), T * E, s.get());
    const auto scores = testing::read_back<float>(d_scores.data(), logits.size(), s);
    const engine::Routing cpu = engine::route_scores(scores.data(), T, E, k, bias.data(), nullptr, nullptr, 2.5f);
    for (const bool fused : {false, true}) {
      cuda::DeviceBuffer chosen(static_cast<size_t>(T * k) * 4, "chosen"), weights(static_cast<size_t>(T * k) * 4, "weights");
      cuda::DeviceBuffer bad(8, "bad");
      cuda::fill_bytes(bad.data(), 0, 8, s);
      cuda::RouteTokens r;
      r.scores = fused ? d_logits.data<float>() : d_scores.data<float>(), r.scores_are_logits = fused;
      r.bias = d_bias.data<float>();
      r.tokens = T, r.experts = E, r.k = k, r.scaling = 2.5f;
      r.chosen = chosen.data<int32_t>(), r.weights = weights.data<float>(), r.bad = bad.data<int64_t>();
      cuda::route_tokens(r, s.get());
      const auto got_e = testing::read_back<int32_t>(chosen.data(), static_cast<size_t>(T * k), s);
      const auto got_w = testing::read_back<float>(weights.data(), static_cast<size_t>(T * k), s);
      EXPECT_EQ(testing::read_back<int64_t>(bad.data(), 1, s)[0], 0) << "E " << E;
      size_t wrong = 0;
      for (size_t i = 0; i < got_e.size(); ++i) {
        uint32_t a, b;
        std::memcpy(&a, &got_w[i], 4), std::memcpy(&b, &cpu.weights[i], 4);
        const bool same_w = a == b || (std::isnan(got_w[i]) && std::isnan(cpu.weights[i]));
        if ((got_e[i] != cpu.experts[i] || !same_w) && ++wrong <= 5)
          ADD_FAILURE() << "E " << E << " k " << k << (fused ? " fused" : "") << " token " << i / k << " slot " << i % k
                        << ": expert " << got_e[i] << " weight " << got_w[i] << " vs " << cpu.experts[i] << " " << cpu.weights[i];
      }
      EXPECT_EQ(wrong, 0u) << "E " << E << " k " << k << (fused ? " fused" : "");
    }
  }
  // Hash routing: token 3's id is outside the vocabulary; the others take their table rows.
  const int64_t E = 16, k = 4, V = 10, T = 6;
  std::vector<int64_t> table(static_cast<size_t>(V * k)), ids = {0, 9, 4, 10, 2, 2};
  for (size_t i = 0; i < table.size(); ++i) table[i] = static_cast<int64_t>((i * 7) % E);
  const auto logits = random_floats(static_cast<size_t>(T * E), 5, -3.0f, 3.0f);
  auto d_logits = upload(logits, s, "logits");
  auto d_table = upload(table, s, "tid2eid");
  auto d_ids = upload(ids, s, "ids");
  cuda::DeviceBuffer chosen(static_cast<size_t>(T * k) * 4, "chosen"), weights(static_cast<size_t>(T * k) * 4, "weights");
  cuda::DeviceBuffer bad(8, "bad");
  cuda::fill_bytes(bad.data(), 0, 8, s);
  cuda::RouteTokens r;
  r.scores = d_logits.data<float>(), r.scores_are_logits = true;
  r.tid2eid = d_table.data<int64_t>(), r.ids = d_ids.data<int64_t>();
  r.tokens = T, r.experts = E, r.k = k, r.vocab = V, r.scaling = 1.0f;
  r.chosen = chosen.data<int32_t>(), r.weights = weights.data<float>(), r.bad = bad.data<int64_t>();
  cuda::route_tokens(r, s.get());
  EXPECT_EQ(testing::read_back<int64_t>(bad.data(), 1, s)[0], 4) << "token 3 + 1";
  const auto got_e = testing::read_back<int32_t>(chosen.data(), static_cast<size_t>(T * k), s);
  std::vector<float> scores(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) scores[i] = std::sqrt(engine::softplus(logits[i]));
  std::vector<int64_t> valid_ids = ids;
  valid_ids[3] = 0;  // the engine reads the table row of every id it gets
  const engine::Routing cpu = engine::route_scores(scores.data(), T, E, k, nullptr, table.data(), valid_ids.data(), 1.0f);
  for (int64_t t = 0; t < T; ++t) {
    if (t == 3) continue;
    for (int64_t j = 0; j < k; ++j)
      EXPECT_EQ(got_e[static_cast<size_t>(t * k + j)], cpu.experts[static_cast<size_t>(t * k + j)]) << "token " << t;
  }
}

TEST(CudaV4Ops, LinearAmaxEqualsTheHostMaximaAndKeepsNan) {
  FP4KIT_REQUIRE_GPU();
  cuda::Stream s;
  for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {7, 300}, {129, 4096}}) {
    auto x = random_floats(static_cast<size_t>(rows * cols), 5 + static_cast<uint32_t>(cols));
    x[static_cast<size_t>(rows * cols - 1)] = -7e4f;
    if (rows > 1) std::fill(x.begin(), x.begin() + cols, 0.0f);  // a zero row
    const auto w = random_floats(static_cast<size_t>(rows), 3, -1.5f, 1.5f);
    float want_m = 0, want_w = 0;
    for (int64_t r = 0; r < rows; ++r) {
      float row = 0;
      for (int64_t c = 0; c < cols; ++c) row = std::max(row, std::fabs(x[static_cast<size_t>(r * cols + c)]));
      want_m = std::max(want_m, row);
      want_w = std::max(want_w, std::fabs(w[static_cast<size_t>(r)] * row));
    }
    auto dx = upload(x, s, "x");
    auto dw = upload(w, s, "w");
    cuda::DeviceBuffer out(8, "out"), scratch(static_cast<size_t>(rows) * 4, "scratch");
    cuda::linear_amax(dx.data<float>(), rows, cols, dw.data<float>(), out.data<float>(), scratch.data<float>(), s.get());
    auto got = testing::read_back<float>(out.data(), 2, s);
    EXPECT_EQ(got[0], want_m) << rows << "x" << cols;
    EXPECT_EQ(got[1], want_w) << rows << "x" << cols;
    cuda::linear_amax(dx.data<float>(), rows, cols, nullptr, out.data<float>(), scratch.data<float>(), s.get());
    got = testing::read_back<float>(out.data(), 2, s);
    EXPECT_EQ(got[0], want_m);
    EXPECT_EQ(got[1], want_m);  // without weights the second value is the first
    x[static_cast<size_t>(rows * cols / 2)] = NAN;
    dx = upload(x, s, "x with NaN");
    cuda::linear_amax(dx.data<float>(), rows, cols, dw.data<float>(), out.data<float>(), scratch.data<float>(), s.get());
    got = testing::read_back<float>(out.data(), 2, s);
    EXPECT_TRUE(std::isnan(got[0]) && std::isnan(got[1])) << got[0] << " " << got[1];
  }
}

TEST(CudaV4Ops, LaunchersRejectBadShapes) {
  FP4KIT_REQUIRE_GPU();
  cuda::Stream s;
  cuda::HcShape bad;
  bad.tokens = 1, bad.hc = 9, bad.hidden = 4;
  EXPECT_THROW(cuda::hc_post(nullptr, nullptr, nullptr, nullptr, bad, s.get()), InputError);
  cuda::RopeRows r;
  r.rows = 1, r.dim = 3;
  EXPECT_THROW(cuda::rope_rows(r, s.get()), InputError);
  EXPECT_THROW(cuda::rms_norm_rows(nullptr, 2, 0, nullptr, 1e-6f, nullptr, s.get()), InputError);
  cuda::HcShape ok;
  ok.tokens = 1, ok.hc = 4, ok.hidden = 8;
  uint16_t host_only[1];  // refused before anything runs
  EXPECT_THROW(cuda::hc_pre(nullptr, ok, {}, nullptr, nullptr, nullptr, nullptr, s.get(), nullptr, host_only), InputError)
      << "a BF16 copy without the norm";
}

}  // namespace
}  // namespace fp4kit
