// Activation-weighted NVFP4 block scales: with H a multiple of the identity the mse sweep's bytes;
// with a general H the candidate an independent F64 evaluation of eᵀHe ranks best; unusable blocks
// of H fall back to the plain squared error and are counted; the functions without statistics
// refuse the method.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "base/error.h"
#include "convert/nvfp4_quantizer.h"
#include "formats/e4m3.h"
#include "formats/nvfp4_hessian_sweep.h"
#include "formats/nvfp4_scale_search.h"
#include "formats/scale_search_blocks.h"
#include "isa_cases.h"
#include "source_bytes.h"

namespace fp4kit {
namespace {

using testing::adversarial_block;
using testing::random_gram;
using testing::round_to;
using testing::source_bytes;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

struct Quantized {
  std::vector<uint8_t> packed, scales;
};

// A [rows, cols] tensor stored in `dtype`.
struct Tensor {
  std::vector<float> values;  // already representable in dtype
  std::vector<uint8_t> bytes;
  DType dtype = DType::F32;
  FloatSpan span() const { return FloatSpan{bytes.data(), dtype, values.size()}; }
};

Tensor make_tensor(std::vector<float> v, DType dtype) {
  Tensor t;
  t.values = round_to(v, dtype);
  t.bytes = source_bytes(t.values, dtype);
  t.dtype = dtype;
  return t;
}

float amax_of(const std::vector<float>& v) {
  float m = 0.0f;
  for (float x : v) {
    if (std::isnan(x)) return x;
    m = std::fabs(x) > m ? std::fabs(x) : m;
  }
  return m;
}

Quantized mse_reference(const Tensor& t, float g) {
  Quantized q{std::vector<uint8_t>(t.values.size() / 2), std::vector<uint8_t>(t.values.size() / 16)};
  nvfp4_search_quantize(t.span(), nvfp4_search_scaling(g, Nvfp4ScaleMethod::Mse, Nvfp4Numerics::ModelOpt, t.dtype),
                        q.packed.data(), q.scales.data());
  return q;
}

Quantized hessian(const Tensor& t, float g, const std::vector<HessianBlockWeight>& w, Nvfp4HessianStats* stats = nullptr) {
  Quantized q{std::vector<uint8_t>(t.values.size() / 2), std::vector<uint8_t>(t.values.size() / 16)};
  // One row group: every row takes the same blocks.
  nvfp4_hessian_quantize_ref(t.span(), 0, w, HessianLayout{w.size(), t.values.size()},
                             nvfp4_search_scaling(g, Nvfp4ScaleMethod::Hessian, Nvfp4Numerics::ModelOpt, t.dtype),
                             q.packed.data(), q.scales.data(), stats);
  return q;
}

std::vector<float> scaled_identity(float c) {
  std::vector<float> h(256, 0.0f);
  for (int i = 0; i < 16; ++i) h[static_cast<size_t>(i * 17)] = c;
  return h;
}

// Random and adversarial rows: normal weights, and the shared adversarial blocks (zeros, constant
// blocks, grid and boundary values, tiny blocks, ±g) with NaN, Inf, subnormal and huge values
// mixed in.
std::vector<float> test_values(std::mt19937& rng, size_t blocks, float g, bool non_finite) {
  std::vector<float> v;
  std::normal_distribution<float> n;
  for (size_t b = 0; b < blocks; ++b) {
    std::vector<float> x = b % 2 ? adversarial_block(rng, g) : std::vector<float>(16);
    if (b % 2 == 0)
      for (float& e : x) e = n(rng) * g * 0.2f;
    switch (b % 11) {
      case 3: x[5] = 1e-40f; x[6] = -1e-42f; break;  // subnormal
      case 5: if (non_finite) x[2] = kNaN; break;
      case 7: if (non_finite) x[9] = -kInf; break;
      case 9: for (float& e : x) e = 0.0f; break;
      default: break;
    }
    v.insert(v.end(), x.begin(), x.end());
  }
  return v;
}

TEST(Nvfp4HessianSweep, MultipleOfIdentityGivesTheMseBytes) {
  std::mt19937 rng(17);
  const int64_t cols = 64, rows = 96;
  for (DType dtype : {DType::BF16, DType::F32}) {
    for (float g : {1.0f, 0.0123f, 3.0e4f, 1e-30f}) {
      for (bool non_finite : {false, true}) {
        const Tensor t = make_tensor(test_values(rng, static_cast<size_t>(rows * cols / 16), g, non_finite), dtype);
        const float global = non_finite ? amax_of(t.values) : g;
        const Quantized mse = mse_reference(t, global);
        for (float c : {1.0f, 37.25f, 4096.0f * 4096.0f}) {
          for (double damping : {0.0, kDefaultHessianDamping, 0.5}) {
            const std::vector<float> h = scaled_identity(c);
            const std::vector<HessianBlockWeight> w(static_cast<size_t>(cols / 16), hessian_block_weight(h.data(), damping));
            Nvfp4HessianStats stats;
            const Quantized q = hessian(t, global, w, &stats);
            EXPECT_EQ(q.scales, mse.scales) << dtype_name(dtype) << " g " << g << " c " << c << " damping " << damping
                                            << " non-finite " << non_finite;
            EXPECT_EQ(q.packed, mse.packed) << dtype_name(dtype) << " g " << g << " c " << c;
            EXPECT_EQ(stats.fallback_blocks, 0u);
            EXPECT_EQ(stats.blocks, static_cast<uint64_t>(rows * cols / 16));
          }
        }
      }
    }
  }
}

// E2M1 round half to even on the magnitude grid, written out independently of formats/e2m1.h.
double e2m1_round(double y) {
  static const double grid[] = {0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0};
  if (y >= 6.0) return 6.0;
  int best = 0;
  for (int i = 1; i < 8; ++i) {
    const double d = std::fabs(y - grid[i]), db = std::fabs(y - grid[best]);
    if (d < db || (d == db && i % 2 == 0)) best = i;
  }
  return grid[best];
}

// eᵀ(H + λ·mean(diag)·I)e in F64 for the block x at E4M3 code `code` as the block scale's candidate.
double oracle_loss(const float* x, int code, float g, const std::vector<float>& h, double damping) {
  const double scale = static_cast<double>(E4M3{static_cast<uint8_t>(code)}.to_float()) / 448.0 * g / 6.0;
  double mean = 0.0;
  for (int i = 0; i < 16; ++i) mean += h[static_cast<size_t>(i * 17)] / 16.0;
  double e[16];
  for (int i = 0; i < 16; ++i) {
    const double a = std::fabs(static_cast<double>(x[i]));
    e[i] = (x[i] < 0.0f ? -1.0 : 1.0) * (a - e2m1_round(a / scale) * scale);
  }
  double loss = 0.0;
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j)
      loss += e[i] * (h[static_cast<size_t>(i * 16 + j)] + (i == j ? damping * mean : 0.0)) * e[j];
  return loss;
}

TEST(Nvfp4HessianSweep, PicksTheCandidateAnF64OracleRanksBest) {
  std::mt19937 rng(23);
  std::normal_distribution<float> n;
  const int64_t cols = 128, rows = 40;
  const float g = 2.5f;
  std::vector<std::vector<float>> grams;
  std::vector<HessianBlockWeight> w;
  for (int64_t c = 0; c < cols / 16; ++c) {
    grams.push_back(random_gram(rng));
    w.push_back(hessian_block_weight(grams.back().data(), kDefaultHessianDamping));
    ASSERT_TRUE(w.back().usable);
  }
  std::vector<float> v(static_cast<size_t>(rows * cols));
  for (float& e : v) e = n(rng) * 0.4f;
  v[7] = g;
  const Tensor t = make_tensor(v, DType::F32);
  const Quantized hq = hessian(t, g, w), mq = mse_reference(t, g);
  double hessian_total = 0.0, mse_total = 0.0;
  size_t differ = 0;
  for (size_t b = 0; b < t.values.size() / 16; ++b) {
    const float* x = t.values.data() + 16 * b;
    const std::vector<float>& h = grams[b % static_cast<size_t>(cols / 16)];
    double best = std::numeric_limits<double>::infinity();
    for (int code = 1; code <= 126; ++code) best = std::fmin(best, oracle_loss(x, code, g, h, kDefaultHessianDamping));
    // The export gives back the winning candidate's own code.
    const double chosen = oracle_loss(x, hq.scales[b] & 0x7F, g, h, kDefaultHessianDamping);
    ASSERT_TRUE(std::isfinite(chosen) && std::isfinite(best));
    EXPECT_TRUE(chosen <= best * (1.0 + 1e-5) + 1e-30) << "block " << b << ": " << chosen << " vs best " << best;
    hessian_total += chosen;
    mse_total += oracle_loss(x, mq.scales[b] & 0x7F, g, h, kDefaultHessianDamping);
    differ += hq.scales[b] != mq.scales[b];
  }
  // The weighting changes choices, and lowers the weighted error the choices were made for.
  EXPECT_TRUE(differ >= 5u) << differ;
  EXPECT_TRUE(hessian_total < mse_total * 0.999) << hessian_total << " vs mse " << mse_total;
}

TEST(Nvfp4HessianSweep, UnusableBlocksFallBackToMseAndAreCounted) {
  std::mt19937 rng(5);
  const int64_t cols = 96, rows = 8;
  const Tensor t = make_tensor(test_values(rng, static_cast<size_t>(rows * cols / 16), 1.0f, false), DType::BF16);
  const Quantized mse = mse_reference(t, 1.0f);
  std::vector<float> nan_h = random_gram(rng), inf_h = random_gram(rng), negative = random_gram(rng);
  nan_h[37] = kNaN;
  inf_h[0] = kInf;
  negative[17] = -1.0f;
  const std::vector<float> zero(256, 0.0f), good = random_gram(rng), off_diagonal_only = [] {
    std::vector<float> h(256, 1.0f);
    for (int i = 0; i < 16; ++i) h[static_cast<size_t>(i * 17)] = 0.0f;
    return h;
  }();
  const std::vector<const std::vector<float>*> blocks = {&nan_h, &good, &inf_h, &zero, &negative, &off_diagonal_only};
  std::vector<HessianBlockWeight> w;
  for (const auto* h : blocks) w.push_back(hessian_block_weight(h->data(), kDefaultHessianDamping));
  EXPECT_FALSE(w[0].usable);
  EXPECT_TRUE(w[1].usable);
  EXPECT_FALSE(w[2].usable);
  EXPECT_FALSE(w[3].usable);
  EXPECT_FALSE(w[4].usable);
  EXPECT_FALSE(w[5].usable);
  Nvfp4HessianStats stats;
  const Quantized q = hessian(t, 1.0f, w, &stats);
  EXPECT_EQ(stats.blocks, static_cast<uint64_t>(rows * cols / 16));
  EXPECT_EQ(stats.fallback_blocks, static_cast<uint64_t>(rows * 5));
  for (size_t b = 0; b < q.scales.size(); ++b) {
    if (b % 6 == 1) continue;
    EXPECT_EQ(q.scales[b], mse.scales[b]) << "block " << b;
    for (size_t i = 0; i < 8; ++i) EXPECT_EQ(q.packed[8 * b + i], mse.packed[8 * b + i]) << "block " << b;
  }
}

TEST(Nvfp4HessianSweep, NonFiniteWeightsKeepTheMseSweepsAnswer) {
  // A NaN makes every candidate's loss NaN, an infinite weight every loss infinite or NaN: the
  // block keeps candidate 0 as the mse sweep does, whatever H is.
  std::mt19937 rng(9);
  std::vector<float> gram = random_gram(rng);
  const std::vector<HessianBlockWeight> w = {hessian_block_weight(gram.data(), kDefaultHessianDamping)};
  std::vector<float> v(32, 0.25f);
  v[3] = kNaN;
  v[16 + 4] = kInf;
  const Tensor t = make_tensor(v, DType::F32);
  const Quantized q = hessian(t, 1.0f, w), mse = mse_reference(t, 1.0f);
  EXPECT_EQ(q.scales, mse.scales);
  EXPECT_EQ(q.packed, mse.packed);
}

TEST(Nvfp4HessianSweep, ParallelTensorEqualsTheReference) {
  std::mt19937 rng(31);
  const int64_t cols = 48, rows = 200;
  const Tensor t = make_tensor(test_values(rng, static_cast<size_t>(rows * cols / 16), 0.7f, false), DType::BF16);
  std::vector<std::vector<float>> grams = {random_gram(rng), random_gram(rng), random_gram(rng)};
  std::vector<HessianBlockWeight> w;
  for (const auto& h : grams) w.push_back(hessian_block_weight(h.data(), kDefaultHessianDamping));
  const Quantized ref = hessian(t, 0.7f, w);
  const Nvfp4SearchScaling sc = nvfp4_search_scaling(0.7f, Nvfp4ScaleMethod::Hessian, Nvfp4Numerics::ModelOpt, t.dtype);
  for (unsigned threads : {1u, 3u}) {
    Nvfp4HessianStats stats;
    const Nvfp4Tensor q = quantize_nvfp4_hessian(t.span(), w, HessianLayout{w.size(), rows}, sc, threads, stats);
    EXPECT_EQ(q.scales, ref.scales) << threads;
    EXPECT_EQ(q.packed, ref.packed) << threads;
    EXPECT_EQ(q.global, sc.weight_scale_2);
    EXPECT_EQ(stats.blocks, static_cast<uint64_t>(rows * cols / 16));
  }
}

TEST(Nvfp4HessianSweep, SearchWithoutStatisticsRefusesTheMethod) {
  std::vector<float> v(16, 1.0f);
  const FloatSpan span{v.data(), DType::F32, v.size()};
  uint8_t packed[8], scales[1];
  float amax[1];
  const Nvfp4SearchScaling sc = nvfp4_search_scaling(1.0f, Nvfp4ScaleMethod::Hessian, Nvfp4Numerics::ModelOpt, DType::F32);
  EXPECT_THROW(nvfp4_search_quantize(span, sc, packed, scales), Error);
  EXPECT_THROW(nvfp4_search_block_amax(span, sc, amax), Error);
  for (Isa isa : all_isas()) EXPECT_THROW(nvfp4_search_kernels(isa).quantize(span, sc, packed, scales), Error);
}

}  // namespace
}  // namespace fp4kit
