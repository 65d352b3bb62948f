// GPTQ over NVFP4 codes with fixed block scales: with H a multiple of the identity the plain
// rounding's bytes of every scale method and numerics; on correlated activations a lower layer-
// output error than plain rounding on the same scales; damping retried for a singular H; NaN/Inf,
// zero and indefinite H left to plain rounding with the reason; rows holding NaN rounded plainly;
// the same bytes on any thread count; the fast path's bytes equal the reference's.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "base/parallel.h"
#include "formats/nvfp4.h"
#include "formats/nvfp4_gptq.h"
#include "formats/nvfp4_scale_search.h"
#include "formats/scale_search_blocks.h"
#include "nan_aware.h"
#include "source_bytes.h"

namespace fp4kit {
namespace {

using testing::finite_below;
using testing::round_to;
using testing::source_bytes;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// A weight [n, k] in `dtype`, quantized by a scale method: the plain rounding's bytes and the
// scaling its codes are rounded with.
struct Weight {
  int64_t n = 0, k = 0;
  std::vector<float> values;
  std::vector<uint8_t> bytes;
  DType dtype = DType::BF16;
  FloatSpan span() const { return FloatSpan{bytes.data(), dtype, values.size()}; }
};

Weight make_weight(std::vector<float> v, int64_t n, int64_t k, DType dtype) {
  Weight w;
  w.n = n;
  w.k = k;
  w.values = round_to(v, dtype);
  w.bytes = source_bytes(w.values, dtype);
  w.dtype = dtype;
  return w;
}

// Normal weights (σ 0.05) [n, k] in BF16.
Weight normal_weight(std::mt19937& rng, int64_t n, int64_t k) {
  std::normal_distribution<float> d(0.0f, 0.05f);
  std::vector<float> v(static_cast<size_t>(n * k));
  for (float& x : v) x = d(rng);
  return make_weight(v, n, k, DType::BF16);
}

struct Rounded {
  std::vector<uint8_t> packed, scales;
  Nvfp4Scaling scaling;
};

float amax_of(const std::vector<float>& v) {
  float m = 0;
  for (float x : v) m = std::fabs(x) > m ? std::fabs(x) : m;
  return m;
}

Rounded plain_rounding(const Weight& w, Nvfp4ScaleMethod method, Nvfp4Numerics numerics) {
  Rounded r{std::vector<uint8_t>(w.values.size() / 2), std::vector<uint8_t>(w.values.size() / 16), {}};
  const float amax = amax_of(w.values);
  if (method == Nvfp4ScaleMethod::Max) {
    r.scaling = nvfp4_scaling(amax, numerics, w.dtype);
    nvfp4_ref::quantize(w.span(), r.scaling, r.packed.data(), r.scales.data());
  } else {
    const Nvfp4SearchScaling sc = nvfp4_search_scaling(amax, method, numerics, w.dtype);
    r.scaling = Nvfp4Scaling{numerics, sc.weight_scale_2, w.dtype};
    nvfp4_search_quantize(w.span(), sc, r.packed.data(), r.scales.data());
  }
  return r;
}

std::vector<uint8_t> gptq_codes(const Weight& w, const Rounded& r, const std::vector<double>& h, const GptqOptions& o,
                                unsigned threads = 2, GptqFactor* factor_out = nullptr) {
  const GptqFactor f = gptq_factor(h, static_cast<size_t>(w.k), o, threads);
  std::vector<uint8_t> packed(w.values.size() / 2);
  nvfp4_gptq_quantize_rows(w.span(), static_cast<size_t>(w.k), r.scales.data(), r.scaling, f, o.block, packed.data());
  if (factor_out) *factor_out = f;
  return packed;
}

std::vector<double> scaled_identity(int64_t k, double c) {
  std::vector<double> h(static_cast<size_t>(k * k), 0.0);
  for (int64_t i = 0; i < k; ++i) h[static_cast<size_t>(i * k + i)] = c;
  return h;
}

// Random weights with adversarial rows: zeros, a lone large value, values on E2M1 decision
// boundaries of their block's scale, tiny values.
std::vector<float> test_values(std::mt19937& rng, int64_t n, int64_t k) {
  std::normal_distribution<float> d(0.0f, 0.02f);
  std::vector<float> v(static_cast<size_t>(n * k));
  for (float& x : v) x = d(rng);
  for (int64_t c = 0; c < k; ++c) {
    v[static_cast<size_t>(c)] = 0.0f;                                     // row 0: zeros
    v[static_cast<size_t>(k + c)] = c % 16 == 3 ? 1.5f : 0.0001f * static_cast<float>(c);  // row 1: one large value per block
    v[static_cast<size_t>(2 * k + c)] = 0.25f * static_cast<float>(c % 13);  // row 2: grid and boundary values
  }
  return v;
}

TEST(Nvfp4Gptq, ScaledIdentityGivesThePlainRoundingOfEveryMethod) {
  std::mt19937 rng(1);
  const int64_t n = 24, k = 96;
  size_t cases = 0;
  for (DType dtype : {DType::BF16, DType::F32}) {
    const Weight w = make_weight(test_values(rng, n, k), n, k, dtype);
    for (Nvfp4Numerics numerics : {Nvfp4Numerics::ModelOpt, Nvfp4Numerics::ModelOptCuda, Nvfp4Numerics::CompressedTensors})
      for (Nvfp4ScaleMethod method : {Nvfp4ScaleMethod::Max, Nvfp4ScaleMethod::Mse, Nvfp4ScaleMethod::FourOverSix}) {
        if (!scale_method_supports(method, numerics)) continue;
        const Rounded r = plain_rounding(w, method, numerics);
        for (size_t block : {16u, 32u, 128u})
          for (bool act_order : {false, true})
            for (double c : {1.0, 3.7, 1e-20}) {
              GptqFactor f;
              const std::vector<uint8_t> g = gptq_codes(w, r, scaled_identity(k, c), {0.01, block, act_order}, 2, &f);
              ASSERT_TRUE(f.usable) << f.why;
              EXPECT_TRUE(g == r.packed) << scale_method_name(method) << " " << numerics_name(numerics) << " block "
                                         << block << " act_order " << act_order << " c " << c;
              ++cases;
            }
      }
  }
  EXPECT_EQ(cases, 2u * 7u * 3u * 2u * 3u);
}

// Activations with correlated channels of different sizes: x = z·A with A mixing neighbours.
std::vector<float> correlated_rows(std::mt19937& rng, int64_t rows, int64_t k) {
  std::normal_distribution<float> d;
  std::vector<float> scale(static_cast<size_t>(k));
  for (int64_t c = 0; c < k; ++c) scale[static_cast<size_t>(c)] = 0.2f + 2.0f * std::fabs(d(rng));
  std::vector<float> x(static_cast<size_t>(rows * k));
  std::vector<float> z(static_cast<size_t>(k));
  for (int64_t r = 0; r < rows; ++r) {
    for (float& v : z) v = d(rng);
    const float common = d(rng);
    for (int64_t c = 0; c < k; ++c) {
      const float mixed = z[static_cast<size_t>(c)] + 0.8f * z[static_cast<size_t>((c + 1) % k)] +
                          0.6f * z[static_cast<size_t>((c + 7) % k)] + 0.9f * common;
      x[static_cast<size_t>(r * k + c)] = scale[static_cast<size_t>(c)] * mixed;
    }
  }
  return x;
}

std::vector<double> xtx_of(const std::vector<float>& x, int64_t rows, int64_t k) {
  std::vector<double> h(static_cast<size_t>(k * k), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < k; ++j)
        h[static_cast<size_t>(i * k + j)] +=
            static_cast<double>(x[static_cast<size_t>(r * k + i)]) * x[static_cast<size_t>(r * k + j)];
  return h;
}

// ‖X·Wᵀ − X·Ŵᵀ‖ / ‖X·Wᵀ‖.
double output_error(const std::vector<float>& x, int64_t rows, const Weight& w, const std::vector<uint8_t>& packed,
                    const Rounded& r) {
  std::vector<float> wq(w.values.size());
  nvfp4_ref::dequantize(packed.data(), r.scales.data(), wq.size(), r.scaling, wq.data());
  double err = 0, ref = 0;
  for (int64_t row = 0; row < rows; ++row)
    for (int64_t o = 0; o < w.n; ++o) {
      double a = 0, b = 0;
      for (int64_t c = 0; c < w.k; ++c) {
        const double xv = x[static_cast<size_t>(row * w.k + c)];
        a += xv * w.values[static_cast<size_t>(o * w.k + c)];
        b += xv * wq[static_cast<size_t>(o * w.k + c)];
      }
      err += (a - b) * (a - b);
      ref += a * a;
    }
  return std::sqrt(err / ref);
}

TEST(Nvfp4Gptq, LowersTheLayerOutputErrorOnCorrelatedActivations) {
  std::mt19937 rng(2);
  const int64_t n = 32, k = 128, rows = 512;
  const Weight w = normal_weight(rng, n, k);
  const std::vector<float> x = correlated_rows(rng, rows, k);
  const std::vector<double> h = xtx_of(x, rows, k);
  for (Nvfp4ScaleMethod method : {Nvfp4ScaleMethod::Max, Nvfp4ScaleMethod::Mse, Nvfp4ScaleMethod::FourOverSix})
    for (bool act_order : {false, true})
      for (size_t block : {16u, 128u}) {
        const Rounded r = plain_rounding(w, method, Nvfp4Numerics::ModelOptCuda);
        const double rtn = output_error(x, rows, w, r.packed, r);
        const double gptq = output_error(x, rows, w, gptq_codes(w, r, h, {0.01, block, act_order}), r);
        std::printf("%-13s act_order %d block %3zu: plain %.5f  gptq %.5f\n", std::string(scale_method_name(method)).c_str(),
                    act_order, block, rtn, gptq);
        // GPTQ's gain on such activations is large: at least a quarter of the error goes.
        EXPECT_TRUE(finite_below(gptq, 0.75 * rtn)) << scale_method_name(method) << " act_order " << act_order;
      }
}

TEST(Nvfp4Gptq, SingularHessianIsDampedAndRetried) {
  std::mt19937 rng(3);
  const int64_t n = 8, k = 64, rows = 20;  // fewer rows than channels: XᵀX is singular
  const std::vector<float> x = correlated_rows(rng, rows, k);
  std::vector<double> h = xtx_of(x, rows, k);
  for (int64_t i = 0; i < k; ++i) h[static_cast<size_t>(i * k + 5)] = h[static_cast<size_t>(5 * k + i)] = 0.0;
  GptqFactor f = gptq_factor(h, static_cast<size_t>(k), {0.01, 16, false}, 1);
  EXPECT_TRUE(f.usable);
  EXPECT_EQ(f.damping, 0.01);
  // Without damping the factorisation fails and the retries start at 0.01.
  f = gptq_factor(h, static_cast<size_t>(k), {0.0, 16, false}, 1);
  ASSERT_TRUE(f.usable) << f.why;
  EXPECT_EQ(f.damping, 0.01);
  const Weight w = normal_weight(rng, n, k);
  const Rounded r = plain_rounding(w, Nvfp4ScaleMethod::Max, Nvfp4Numerics::ModelOpt);
  const double rtn = output_error(x, rows, w, r.packed, r);
  const double gptq = output_error(x, rows, w, gptq_codes(w, r, h, {0.0, 16, false}), r);
  EXPECT_TRUE(finite_below(gptq, rtn)) << gptq << " vs " << rtn;
}

TEST(Nvfp4Gptq, UnusableHessianLeavesPlainRoundingAndSaysWhy) {
  std::mt19937 rng(4);
  const int64_t n = 6, k = 32;
  const Weight w = make_weight(test_values(rng, n, k), n, k, DType::BF16);
  const Rounded r = plain_rounding(w, Nvfp4ScaleMethod::Mse, Nvfp4Numerics::ModelOpt);
  const std::vector<double> good = xtx_of(correlated_rows(rng, 100, k), 100, k);
  struct Case {
    std::vector<double> h;
    const char* why;
  };
  std::vector<Case> cases;
  cases.push_back({good, "NaN or Inf"});
  cases.back().h[3 * k + 7] = std::numeric_limits<double>::quiet_NaN();
  cases.push_back({good, "NaN or Inf"});
  cases.back().h[0] = std::numeric_limits<double>::infinity();
  cases.push_back({std::vector<double>(static_cast<size_t>(k * k), 0.0), "all-zero diagonal"});
  cases.push_back({good, "negative diagonal"});
  cases.back().h[2 * k + 2] = -1.0;
  // Indefinite beyond any damping tried: a huge off-diagonal pair.
  cases.push_back({scaled_identity(k, 1.0), "not positive definite"});
  cases.back().h[1] = cases.back().h[static_cast<size_t>(k)] = 100.0;
  for (const Case& c : cases) {
    GptqFactor f;
    const std::vector<uint8_t> g = gptq_codes(w, r, c.h, {}, 1, &f);
    EXPECT_FALSE(f.usable);
    EXPECT_NE(f.why.find(c.why), std::string::npos) << f.why;
    EXPECT_TRUE(g == r.packed) << c.why;
  }
}

TEST(Nvfp4Gptq, RowsHoldingNanAreRoundedPlainlyTheOthersCompensated) {
  std::mt19937 rng(5);
  const int64_t n = 4, k = 64, rows = 300;
  std::normal_distribution<float> d(0.0f, 0.05f);
  std::vector<float> v(static_cast<size_t>(n * k));
  for (float& e : v) e = d(rng);
  v[static_cast<size_t>(2 * k + 9)] = kNaN;
  const Weight w = make_weight(v, n, k, DType::F32);
  Rounded r = plain_rounding(w, Nvfp4ScaleMethod::Max, Nvfp4Numerics::ModelOpt);
  // The NaN makes the global amax NaN: give the codes a finite scaling, as a caller with a fused
  // group's finite amax would.
  std::vector<float> finite = w.values;
  finite[static_cast<size_t>(2 * k + 9)] = 0.0f;
  r.scaling = nvfp4_scaling(amax_of(finite), Nvfp4Numerics::ModelOpt, DType::F32);
  nvfp4_ref::quantize_with_scales(w.span(), r.scales.data(), r.scaling, r.packed.data());
  const std::vector<double> h = xtx_of(correlated_rows(rng, rows, k), rows, k);
  const GptqFactor f = gptq_factor(h, static_cast<size_t>(k), {}, 1);
  std::vector<uint8_t> packed(w.values.size() / 2);
  const GptqRowStats s = nvfp4_gptq_quantize_rows(w.span(), static_cast<size_t>(k), r.scales.data(), r.scaling, f, 128,
                                                  packed.data());
  EXPECT_EQ(s.rows, 3u);
  EXPECT_EQ(s.skipped_rows, 1u);
  const size_t row_bytes = static_cast<size_t>(k / 2);
  EXPECT_TRUE(std::equal(packed.begin() + 2 * row_bytes, packed.begin() + 3 * row_bytes, r.packed.begin() + 2 * row_bytes));
  EXPECT_FALSE(std::equal(packed.begin(), packed.begin() + row_bytes, r.packed.begin()));  // compensated
}

// The fast path against the scalar reference: the same bytes and counts on ragged row counts
// (panels and register tiles not filled), every batch size, act order, a factor from few rows
// (large compensations), adversarial values, and rows holding NaN or Inf.
TEST(Nvfp4Gptq, FastPathGivesTheReferenceBytes) {
  std::mt19937 rng(8);
  size_t cases = 0;
  for (int64_t k : {16, 48, 144, 272})
    for (int64_t calib_rows : {k / 2, 4 * k}) {
      const int64_t n = 37;
      std::vector<float> v = test_values(rng, n, k);
      v[static_cast<size_t>(5 * k + k / 2)] = kNaN;
      v[static_cast<size_t>(33 * k + 1)] = std::numeric_limits<float>::infinity();
      const Weight w = make_weight(v, n, k, DType::F32);
      Rounded r = plain_rounding(w, Nvfp4ScaleMethod::Max, Nvfp4Numerics::ModelOpt);
      std::vector<float> finite = w.values;
      finite[static_cast<size_t>(5 * k + k / 2)] = finite[static_cast<size_t>(33 * k + 1)] = 0.0f;
      r.scaling = nvfp4_scaling(amax_of(finite), Nvfp4Numerics::ModelOpt, DType::F32);
      const std::vector<double> h = xtx_of(correlated_rows(rng, calib_rows, k), calib_rows, k);
      for (size_t block : {16u, 32u, 128u})
        for (bool act_order : {false, true}) {
          const GptqOptions o{0.01, block, act_order};
          const GptqFactor f = gptq_factor(h, static_cast<size_t>(k), o, 2);
          ASSERT_TRUE(f.usable) << f.why;
          std::vector<uint8_t> fast(w.values.size() / 2, 0xAA), ref(w.values.size() / 2, 0x55);
          const GptqRowStats sf = nvfp4_gptq_quantize_rows(w.span(), static_cast<size_t>(k), r.scales.data(), r.scaling,
                                                           f, block, fast.data());
          const GptqRowStats sr = nvfp4_gptq_ref::quantize_rows(w.span(), static_cast<size_t>(k), r.scales.data(),
                                                                r.scaling, f, block, ref.data());
          EXPECT_TRUE(fast == ref) << "k " << k << " calib rows " << calib_rows << " block " << block << " act order "
                                   << act_order;
          EXPECT_EQ(sf.rows, 35u);
          EXPECT_EQ(sf.skipped_rows, 2u);
          EXPECT_EQ(sr.rows, sf.rows);
          EXPECT_EQ(sr.skipped_rows, sf.skipped_rows);
          ++cases;
        }
    }
  EXPECT_EQ(cases, 4u * 2u * 3u * 2u);
}

TEST(Nvfp4Gptq, SameBytesOnAnyThreadCountAndInPieces) {
  std::mt19937 rng(6);
  const int64_t n = 16, k = 160, rows = 400;
  const Weight w = normal_weight(rng, n, k);
  const Rounded r = plain_rounding(w, Nvfp4ScaleMethod::Mse, Nvfp4Numerics::ModelOptCuda);
  const std::vector<double> h = xtx_of(correlated_rows(rng, rows, k), rows, k);
  const GptqOptions o{0.01, 32, true};
  const std::vector<uint8_t> one = gptq_codes(w, r, h, o, 1), four = gptq_codes(w, r, h, o, 4);
  EXPECT_TRUE(one == four);
  // Rows in pieces (as convert spreads them over threads) give the whole tensor's bytes.
  const GptqFactor f = gptq_factor(h, static_cast<size_t>(k), o, 1);
  std::vector<uint8_t> pieces(one.size());
  for (int64_t r0 = 0; r0 < n; r0 += 5) {
    const int64_t m = std::min<int64_t>(5, n - r0);
    nvfp4_gptq_quantize_rows(w.span().subspan(static_cast<size_t>(r0 * k), static_cast<size_t>(m * k)),
                             static_cast<size_t>(k), r.scales.data() + r0 * k / 16, r.scaling, f, o.block,
                             pieces.data() + r0 * k / 2);
  }
  EXPECT_TRUE(pieces == one);
  EXPECT_FALSE(one == r.packed);
}

}  // namespace
}  // namespace fp4kit
