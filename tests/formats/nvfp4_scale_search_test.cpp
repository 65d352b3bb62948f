// Searched NVFP4 block scales: the windowed MSE sweep against the full 126-candidate sweep on random
// and adversarial blocks, four-over-six's choice, ModelOpt's static export of a searched amax, and
// the method names.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "convert/nvfp4_quantizer.h"
#include "formats/bf16.h"
#include "formats/e4m3.h"
#include "formats/float_bits.h"
#include "formats/nvfp4_four_over_six.h"
#include "formats/nvfp4_mse_sweep.h"
#include "formats/nvfp4_scale_search.h"
#include "formats/scale_search_blocks.h"
#include "oracle_file.h"
#include "source_bytes.h"

namespace fp4kit {
namespace {

using testing::adversarial_block;
using testing::BytesEqual;
using testing::e4m3_value;
using testing::round_to;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// The windowed sweep and the full sweep agree on `blocks` 16-blocks of `values`.
void expect_window_equals_full(const std::vector<float>& values, float g, int lanes, const char* what) {
  const Nvfp4MseCandidates cand(g);
  size_t edge_hits = 0;
  for (size_t b = 0; b < values.size() / 16; ++b) {
    const float* x = values.data() + 16 * b;
    const int full = mse_sweep_full(x, cand, lanes), fast = mse_sweep(x, cand, lanes);
    ASSERT_EQ(full, fast) << what << ": block " << b << " g " << g;
    float amax = 0;
    for (int i = 0; i < 16; ++i) amax = std::fmax(amax, std::fabs(x[i]));
    const Nvfp4MseWindow w = mse_sweep_window(amax, g);
    // (Edges clamped to the first or last code are the E4M3 range's, not the window's.)
    if (!w.full() && w.last > w.first && ((full == w.first && w.first > 0) || (full == w.last && w.last < Nvfp4MseCandidates::kCount - 1)))
      ++edge_hits;
  }
  // The window is wider than needed by one code each side; nothing should land on its edges.
  EXPECT_EQ(edge_hits, 0u) << what;
}

TEST(Nvfp4ScaleSearch, MethodNames) {
  for (const char* name : {"max", "mse", "four-over-six", "hessian"}) {
    const auto m = scale_method_from_name(name);
    ASSERT_TRUE(m) << name;
    EXPECT_EQ(scale_method_name(*m), name);
  }
  EXPECT_FALSE(scale_method_from_name("gptq"));
  EXPECT_FALSE(scale_method_from_name("MSE"));
  EXPECT_EQ(scale_method_names(), "max, mse, four-over-six, hessian");
  EXPECT_TRUE(scale_method_supports(Nvfp4ScaleMethod::Mse, Nvfp4Numerics::ModelOptCuda));
  EXPECT_FALSE(scale_method_supports(Nvfp4ScaleMethod::FourOverSix, Nvfp4Numerics::CompressedTensors));
  EXPECT_TRUE(scale_method_supports(Nvfp4ScaleMethod::Max, Nvfp4Numerics::CompressedTensors));
}

TEST(Nvfp4ScaleSearch, GlobalScales) {
  for (float amax : {1.0f, 0.0371f, 3.3e-5f, 448.0f, 0.0f}) {
    for (Nvfp4Numerics n : {Nvfp4Numerics::ModelOpt, Nvfp4Numerics::ModelOptCuda}) {
      EXPECT_EQ(f32_bits(nvfp4_method_global_scale(amax, Nvfp4ScaleMethod::Max, n, DType::BF16)),
                f32_bits(nvfp4_global_scale(amax, n, DType::BF16)));
      // mse keeps the max method's global scale.
      EXPECT_EQ(f32_bits(nvfp4_method_global_scale(amax, Nvfp4ScaleMethod::Mse, n, DType::BF16)),
                f32_bits(nvfp4_global_scale(amax, n, DType::BF16)));
    }
    EXPECT_EQ(f32_bits(nvfp4_method_global_scale(amax, Nvfp4ScaleMethod::FourOverSix, Nvfp4Numerics::ModelOpt,
                                                 DType::BF16)),
              f32_bits(amax / 1536.0f));
    const float r = 1.0f / 1536.0f;
    EXPECT_EQ(f32_bits(nvfp4_method_global_scale(amax, Nvfp4ScaleMethod::FourOverSix, Nvfp4Numerics::ModelOptCuda,
                                                 DType::BF16)),
              f32_bits(amax * r));
  }
}

TEST(Nvfp4ScaleSearch, CandidatesAreTheE4M3Grid) {
  const float g = 0.8125f;
  const Nvfp4MseCandidates cand(g);
  for (int k = 0; k < Nvfp4MseCandidates::kCount; ++k) {
    // The exported scale of each candidate's block amax is its own E4M3 code.
    EXPECT_EQ(modelopt_static_block_scale(cand.block_amax(k), g, 448.0f, true), k + 1) << k;
    EXPECT_EQ(modelopt_static_block_scale(cand.block_amax(k), g, 448.0f, false), k + 1) << k;
    EXPECT_NEAR(cand.scale(k), e4m3_value(k + 1) * g / 2688.0f, 1e-6f * cand.scale(k));
  }
}

TEST(Nvfp4ScaleSearch, WindowEqualsFullSweepRandom) {
  std::mt19937 rng(17);
  for (DType dtype : {DType::BF16, DType::F32}) {
    const int lanes = mse_sweep_lanes(dtype);
    for (int trial = 0; trial < 12; ++trial) {
      std::vector<float> v(16 * 1500);
      std::normal_distribution<float> normal;
      std::student_t_distribution<float> heavy(3.0f);
      const float unit = std::ldexp(1.0f, static_cast<int>(rng() % 40) - 20);
      for (float& e : v) e = (trial % 2 ? heavy(rng) : normal(rng)) * unit;
      v = round_to(v, dtype);
      float g = 0;
      for (float e : v) g = std::fmax(g, std::fabs(e));
      if (trial % 3 == 2) g *= 5.0f;  // a fused partner holds the larger amax
      expect_window_equals_full(v, g, lanes, dtype == DType::BF16 ? "random bf16" : "random f32");
    }
  }
}

TEST(Nvfp4ScaleSearch, WindowEqualsFullSweepAdversarial) {
  std::mt19937 rng(2606);
  for (DType dtype : {DType::BF16, DType::F32}) {
    const int lanes = mse_sweep_lanes(dtype);
    for (float g : {1.0f, 0.0234375f, 3.0e-3f, 448.0f, 1.7e5f, 0x1p-90f}) {
      std::vector<float> v;
      for (int b = 0; b < 3000; ++b) {
        const std::vector<float> x = adversarial_block(rng, g);
        v.insert(v.end(), x.begin(), x.end());
      }
      v = round_to(v, dtype);
      expect_window_equals_full(v, g, lanes, "adversarial");
    }
  }
}

// Blocks whose optimum sits at the edges of the proven range [q0 - 3, q0 + 7]: a random search for
// them, then the window must still find what the full sweep finds.
TEST(Nvfp4ScaleSearch, WindowAtTheBoundEdges) {
  std::mt19937 rng(7618);
  const float g = 1.0f;
  const Nvfp4MseCandidates cand(g);
  size_t low = 0, high = 0;
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (int trial = 0; trial < 40000; ++trial) {
    float x[16];
    // Mostly large elements near the max (pulling the scale up) or many small ones (pulling it down).
    const float m = std::ldexp(1.0f, -static_cast<int>(rng() % 6)) * (0.5f + u(rng));
    const bool up = rng() & 1;
    for (float& e : x) e = m * (up ? 0.4f + 0.6f * u(rng) : u(rng) * u(rng) * 0.6f);
    x[0] = m;
    const int full = mse_sweep_full(x, cand, 2);
    ASSERT_EQ(full, mse_sweep(x, cand, 2)) << trial;
    const int q0 = E4M3::from_float(m * 448.0f / g).bits;
    if (full + 1 <= q0 - 2) ++low;
    if (full + 1 >= q0 + 5) ++high;
  }
  // The search reaches far into the range, on both sides.
  EXPECT_GT(low, 0u);
  EXPECT_GT(high, 0u);
}

TEST(Nvfp4ScaleSearch, SpecialBlocks) {
  const Nvfp4MseCandidates cand(1.0f);
  float zeros[16] = {};
  EXPECT_EQ(mse_sweep_full(zeros, cand, 2), 0);
  EXPECT_EQ(mse_sweep(zeros, cand, 2), 0);
  float with_nan[16] = {0.5f, kNaN};
  EXPECT_EQ(mse_sweep_full(with_nan, cand, 2), 0);  // every loss NaN: the first candidate stays
  EXPECT_EQ(mse_sweep(with_nan, cand, 2), 0);
  float with_inf[16] = {0.5f, kInf};
  EXPECT_EQ(mse_sweep(with_inf, cand, 4), mse_sweep_full(with_inf, cand, 4));
  // A block holding only the global amax: E2M1 6 at E4M3 448 is exact.
  float top[16] = {1.0f};
  EXPECT_EQ(mse_sweep(top, cand, 2), mse_sweep_full(top, cand, 2));
  // Global amax 0 (an all-zero tensor) and NaN.
  for (float g : {0.0f, kNaN, kInf}) {
    const Nvfp4MseCandidates c(g);
    EXPECT_EQ(mse_sweep(zeros, c, 2), 0) << g;
    EXPECT_EQ(mse_sweep(top, c, 2), mse_sweep_full(top, c, 2)) << g;
  }
}

TEST(Nvfp4ScaleSearch, FourOverSixChoice) {
  // A block whose values are exact at scale amax/4 (0, 1, 2, 3, 4 of it) and not at amax/6: M=4 wins.
  float x4[16];
  for (int i = 0; i < 16; ++i) x4[i] = static_cast<float>(i % 5) * 0.25f;
  EXPECT_TRUE(four_over_six_picks_four(x4, 1.0f, 1.0f));
  // Values exact at amax/6 (0, 1, 2, 3, 4, 6 of it): M=6 wins.
  const float grid6[] = {0.0f, 1.0f, 2.0f, 3.0f, 4.0f, 6.0f};
  float x6[16];
  for (int i = 0; i < 16; ++i) x6[i] = grid6[i % 6] / 6.0f;
  EXPECT_FALSE(four_over_six_picks_four(x6, 1.0f, 1.0f));
  // An all-zero block ties: M=6 (the first candidate).
  float zeros[16] = {};
  EXPECT_FALSE(four_over_six_picks_four(zeros, 0.0f, 1.0f));
  // The fake-quant scale of the largest block at M=6 and M=4 is E4M3 256 and 384 of g/1536.
  EXPECT_NEAR(four_over_six_fake_scale(1.0f, 1.0f), 1.0f / 6.0f, 1e-7f);
  EXPECT_NEAR(four_over_six_fake_scale(1.5f, 1.0f), 1.5f / 6.0f, 1e-7f);
}

TEST(Nvfp4ScaleSearch, StaticExportEdges) {
  // A zero block amax exports as scale 1.0 normalised: 448 / (g/6) clamped to 448.
  EXPECT_EQ(modelopt_static_block_scale(0.0f, 1.0f, 448.0f, false), 0x7E);
  // Global amax 0: 1.0 * 448 / 0 = inf, clamped to 448.
  EXPECT_EQ(modelopt_static_block_scale(0.0f, 0.0f, 448.0f, true), 0x7E);
  // Tiny amax: clamped up to 2^-9.
  EXPECT_EQ(modelopt_static_block_scale(1e-9f, 1.0f, 448.0f, true), 0x01);
  // NaN: positive on the GPU.
  EXPECT_EQ(modelopt_static_block_scale(kNaN, 1.0f, 448.0f, true), 0x7F);
  // Four over six: the max block at M=4 exports 384.
  EXPECT_EQ(E4M3{modelopt_static_block_scale(1.5f, 1.0f, 256.0f, true)}.to_float(), 384.0f);
  EXPECT_EQ(E4M3{modelopt_static_block_scale(1.0f, 1.0f, 256.0f, false)}.to_float(), 256.0f);
}

TEST(Nvfp4ScaleSearch, TensorFullEqualsFastAndThreads) {
  std::mt19937 rng(99);
  std::normal_distribution<float> normal;
  std::vector<float> v(64 * 512);
  for (float& e : v) e = normal(rng) * 0.02f;
  for (size_t b = 0; b < 64; ++b) {
    const std::vector<float> x = adversarial_block(rng, 0.05f);
    std::copy(x.begin(), x.end(), v.begin() + 16 * static_cast<long>(b * 7));
  }
  for (DType dtype : {DType::BF16, DType::F32}) {
    const std::vector<uint8_t> bytes = testing::source_bytes(v, dtype);
    const FloatSpan src{bytes.data(), dtype, v.size()};
    const float g = nvfp4_ref::amax(src);
    for (Nvfp4ScaleMethod m : {Nvfp4ScaleMethod::Mse, Nvfp4ScaleMethod::FourOverSix}) {
      for (Nvfp4Numerics n : {Nvfp4Numerics::ModelOpt, Nvfp4Numerics::ModelOptCuda}) {
        const Nvfp4SearchScaling sc = nvfp4_search_scaling(g, m, n, dtype);
        std::vector<uint8_t> packed(v.size() / 2), scales(v.size() / 16);
        nvfp4_search_quantize(src, sc, packed.data(), scales.data(), /*full_sweep=*/true);
        for (unsigned threads : {1u, 3u}) {
          const Nvfp4Tensor t = quantize_nvfp4_searched(src, sc, threads);
          EXPECT_TRUE(BytesEqual(t.packed, packed));
          EXPECT_TRUE(BytesEqual(t.scales, scales));
          EXPECT_EQ(f32_bits(t.global), f32_bits(sc.weight_scale_2));
        }
      }
    }
  }
}

// The search lowers the block error against max scaling (it can only match or improve it in the
// sweep's own metric, the candidate set containing max scaling's scale).
TEST(Nvfp4ScaleSearch, MseNeverWorseThanMaxInItsMetric) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  std::vector<float> v(16 * 4000);
  for (float& e : v) e = round_to_bf16(normal(rng));
  float g = 0;
  for (float e : v) g = std::fmax(g, std::fabs(e));
  const Nvfp4MseCandidates cand(g);
  double max_err = 0, mse_err = 0;
  for (size_t b = 0; b < v.size() / 16; ++b) {
    float mag[16], amax = 0;
    for (int i = 0; i < 16; ++i) {
      mag[i] = std::fabs(v[16 * b + i]);
      amax = std::fmax(amax, mag[i]);
    }
    const int k_max = (E4M3::from_float(amax / (6.0f * (g / 2688.0f))).bits & 0x7F) - 1;
    const int k = mse_sweep(v.data() + 16 * b, cand, 2);
    const float best = mse_block_loss(mag, cand, k, 2);
    EXPECT_LE(best, mse_block_loss(mag, cand, k_max, 2));
    max_err += mse_block_loss(mag, cand, k_max, 2);
    mse_err += best;
  }
  EXPECT_LT(mse_err, 0.9 * max_err);
}

}  // namespace
}  // namespace fp4kit
