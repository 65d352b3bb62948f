// GPTQ on the GPU (convert/gptq_gpu.h over cuda/gptq.h, F32) against the CPU path
// (formats/nvfp4_gptq.h, F64, the reference). Exactly the CPU's: the decisions (usable, the reason,
// the damping that succeeded, the processing order) and the row counts; the plain rounding of rows
// holding NaN/Inf and of unusable matrices; the codes when U is diagonal. Within stated bounds:
// U (F32 rounding), the codes (F32 arithmetic moves values that lie near a rounding boundary, and
// GPTQ carries each changed rounding on to the later columns of its row) and the layer-output error
// ‖X·Wᵀ − X·Ŵᵀ‖/‖X·Wᵀ‖ on the calibration rows and on held-back rows. Every number is checked
// finite explicitly. Cases: random and adversarial weights, K not a multiple of the batch, batches
// of 16 to 256 columns (above 128 the GPU splits them), act order, BF16/F16/F32 weights, three
// numerics, a near-singular XᵀX that needs damping, an indefinite one that needs 10× the damping,
// NaN/Inf/zero/negative XᵀX, rows holding NaN/Inf, more rows than one pass of the device holds, and
// `convert --gptq --device cuda` end to end on the tiny checkpoint.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "base/parallel.h"
#include "calib/calib_test_util.h"
#include "convert/gptq_gpu.h"
#include "convert/layer_output_error.h"
#include "convert/tiny_all_linear_args.h"
#include "engine/engine.h"
#include "formats/nvfp4.h"
#include "formats/nvfp4_gptq.h"
#include "formats/nvfp4_scale_search.h"
#include "gpu_test.h"
#include "io/checkpoint_index.h"
#include "models/stored_weight.h"
#include "nan_aware.h"
#include "run_command.h"
#include "source_bytes.h"
#include "test_data.h"
#include "verify/verify_test_util.h"

namespace fp4kit {
namespace {

using testing::finite_at_most;
using testing::finite_below;

// The bounds. Codes: the share of E2M1 codes that differ from the CPU path's. Layer-output error:
// the GPU's at most (1 + kErrorTolerance) times the CPU's, on the calibration rows and on held-back
// rows. U: the largest difference at most kFactorTolerance times the largest |U| of the CPU's.
constexpr double kMaxCodeDifference = 0.01;
constexpr double kErrorTolerance = 0.03;
constexpr double kFactorTolerance = 1e-4;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// A weight [n, k] in `dtype` and the plain rounding of a scale method: its scales and codes and the
// scaling its codes are rounded with.
struct Weight {
  int64_t n = 0, k = 0;
  DType dtype = DType::BF16;
  std::vector<float> values;  // as stored (rounded to dtype)
  std::vector<uint8_t> bytes;
  std::vector<uint8_t> packed, scales;
  Nvfp4Scaling scaling;
  FloatSpan span() const { return FloatSpan{bytes.data(), dtype, values.size()}; }
};

float finite_amax(const std::vector<float>& v) {
  float m = 0;
  for (float x : v)
    if (std::isfinite(x)) m = std::max(m, std::fabs(x));
  return m;
}

Weight make_weight(std::vector<float> v, int64_t n, int64_t k, DType dtype, Nvfp4ScaleMethod method,
                   Nvfp4Numerics numerics) {
  Weight w;
  w.n = n;
  w.k = k;
  w.dtype = dtype;
  w.bytes = testing::source_bytes(v, dtype);
  w.values.resize(v.size());
  for (size_t i = 0; i < v.size(); ++i) w.values[i] = w.span().at(i);
  w.packed.resize(v.size() / 2);
  w.scales.resize(v.size() / 16);
  // The finite values' amax, as a caller with a fused group's finite amax would give NaN rows.
  const float amax = finite_amax(w.values);
  if (method == Nvfp4ScaleMethod::Max) {
    w.scaling = nvfp4_scaling(amax, numerics, dtype);
    nvfp4_ref::quantize(w.span(), w.scaling, w.packed.data(), w.scales.data());
    // The plain rounding GPTQ falls back to: quantize_with_scales' rule on these scales.
    nvfp4_ref::quantize_with_scales(w.span(), w.scales.data(), w.scaling, w.packed.data());
  } else {
    const Nvfp4SearchScaling sc = nvfp4_search_scaling(amax, method, numerics, dtype);
    w.scaling = Nvfp4Scaling{numerics, sc.weight_scale_2, dtype};
    nvfp4_search_quantize(w.span(), sc, w.packed.data(), w.scales.data());
  }
  return w;
}

// Normal weights (σ 0.05) with adversarial rows: zeros, one large value per block, values on the
// E2M1 grid and its decision boundaries, tiny values.
std::vector<float> test_values(std::mt19937& rng, int64_t n, int64_t k) {
  std::normal_distribution<float> d(0.0f, 0.05f);
  std::vector<float> v(static_cast<size_t>(n * k));
  for (float& x : v) x = d(rng);
  for (int64_t c = 0; c < k && n >= 4; ++c) {
    v[static_cast<size_t>(c)] = 0.0f;
    v[static_cast<size_t>(k + c)] = c % 16 == 3 ? 1.5f : 0.0001f * static_cast<float>(c);
    v[static_cast<size_t>(2 * k + c)] = 0.025f * static_cast<float>(c % 13);
    v[static_cast<size_t>(3 * k + c)] = 1e-6f * d(rng);
  }
  return v;
}

// Activations with correlated channels of different sizes: x = z·A with A mixing neighbours and a
// component common to all channels.
std::vector<float> correlated_rows(std::mt19937& rng, int64_t rows, int64_t k) {
  std::normal_distribution<float> d;
  std::vector<float> scale(static_cast<size_t>(k));
  for (float& s : scale) s = 0.2f + 2.0f * std::fabs(d(rng));
  std::vector<float> x(static_cast<size_t>(rows * k)), z(static_cast<size_t>(k));
  for (int64_t r = 0; r < rows; ++r) {
    for (float& v : z) v = d(rng);
    const float common = d(rng);
    for (int64_t c = 0; c < k; ++c)
      x[static_cast<size_t>(r * k + c)] =
          scale[static_cast<size_t>(c)] * (z[static_cast<size_t>(c)] + 0.8f * z[static_cast<size_t>((c + 1) % k)] +
                                           0.6f * z[static_cast<size_t>((c + 7) % k)] + 0.9f * common);
  }
  return x;
}

std::vector<double> xtx_of(const std::vector<float>& x, int64_t rows, int64_t k) {
  std::vector<double> h(static_cast<size_t>(k * k), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * k;
    for (int64_t i = 0; i < k; ++i) {
      double* hi = h.data() + i * k;
      const double xi = xr[i];
      for (int64_t j = 0; j < k; ++j) hi[j] += xi * xr[j];
    }
  }
  return h;
}

// ‖X·Wᵀ − X·Ŵᵀ‖ / ‖X·Wᵀ‖ over the weight's finite rows.
double output_error(const std::vector<float>& x, int64_t rows, const Weight& w, const std::vector<uint8_t>& packed) {
  std::vector<float> wq(w.values.size());
  nvfp4_ref::dequantize(packed.data(), w.scales.data(), wq.size(), w.scaling, wq.data());
  double err = 0, ref = 0;
  for (int64_t o = 0; o < w.n; ++o) {
    const float* wo = w.values.data() + o * w.k;
    if (!std::all_of(wo, wo + w.k, [](float v) { return std::isfinite(v); })) continue;
    for (int64_t r = 0; r < rows; ++r) {
      double a = 0, b = 0;
      for (int64_t c = 0; c < w.k; ++c) {
        const double xv = x[static_cast<size_t>(r * w.k + c)];
        a += xv * wo[c];
        b += xv * wq[static_cast<size_t>(o * w.k + c)];
      }
      err += (a - b) * (a - b);
      ref += a * a;
    }
  }
  return std::sqrt(err / ref);
}

// Share of the E2M1 codes (nibbles) that differ.
double code_difference(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  EXPECT_EQ(a.size(), b.size());
  size_t differ = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    differ += ((a[i] ^ b[i]) & 0x0F ? 1 : 0) + ((a[i] ^ b[i]) & 0xF0 ? 1 : 0);
  return static_cast<double>(differ) / static_cast<double>(2 * a.size());
}

struct GptqRun {
  GptqFactor factor;
  GptqRowStats stats;
  std::vector<uint8_t> packed;
};

GptqRun run_cpu(const Weight& w, const std::vector<double>& h, const GptqOptions& o) {
  GptqRun r;
  r.factor = gptq_factor(h, static_cast<size_t>(w.k), o, default_threads());
  r.packed.assign(w.packed.size(), 0xAA);
  const size_t k = static_cast<size_t>(w.k);
  std::mutex mutex;
  parallel_for(static_cast<size_t>(w.n), kGptqRowsPerPiece, default_threads(), [&](size_t a, size_t b) {
    const GptqRowStats s = nvfp4_gptq_quantize_rows(w.span().subspan(a * k, (b - a) * k), k, w.scales.data() + a * k / 16,
                                                    w.scaling, r.factor, o.block, r.packed.data() + a * k / 2);
    std::lock_guard lock(mutex);
    r.stats.rows += s.rows;
    r.stats.skipped_rows += s.skipped_rows;
  });
  return r;
}

GptqRun run_gpu(GptqGpu& gpu, const Weight& w, const std::vector<double>& h, const GptqOptions& o) {
  GptqRun r;
  r.factor = gpu.factor(h, static_cast<size_t>(w.k), o);
  r.packed.assign(w.packed.size(), 0x55);
  r.stats = gpu.quantize_rows(w.span(), static_cast<size_t>(w.k), w.scales.data(), w.scaling, r.factor, o.block,
                              r.packed.data());
  return r;
}

void expect_same_decisions(const GptqRun& cpu, const GptqRun& gpu, const std::string& what) {
  EXPECT_EQ(gpu.factor.usable, cpu.factor.usable) << what;
  EXPECT_EQ(gpu.factor.why, cpu.factor.why) << what;
  EXPECT_EQ(gpu.factor.damping, cpu.factor.damping) << what;
  EXPECT_EQ(gpu.factor.order, cpu.factor.order) << what;
  EXPECT_EQ(gpu.stats.rows, cpu.stats.rows) << what;
  EXPECT_EQ(gpu.stats.skipped_rows, cpu.stats.skipped_rows) << what;
}

// The codes and the layer-output errors within the bounds; returns the code difference.
double expect_close(const GptqRun& cpu, const GptqRun& gpu, const Weight& w, const std::vector<float>& calib,
                    int64_t calib_rows, const std::vector<float>& held, int64_t held_rows, const std::string& what) {
  const double differ = code_difference(cpu.packed, gpu.packed);
  const double plain = output_error(calib, calib_rows, w, w.packed);
  const double ec = output_error(calib, calib_rows, w, cpu.packed), eg = output_error(calib, calib_rows, w, gpu.packed);
  const double hc = output_error(held, held_rows, w, cpu.packed), hg = output_error(held, held_rows, w, gpu.packed);
  std::printf("%-58s codes differ %7.4f%%  calibration: plain %.5f cpu %.5f gpu %.5f  held back: cpu %.5f gpu %.5f\n",
              what.c_str(), 100.0 * differ, plain, ec, eg, hc, hg);
  EXPECT_TRUE(finite_at_most(differ, kMaxCodeDifference)) << what;
  EXPECT_TRUE(finite_at_most(eg, ec * (1 + kErrorTolerance))) << what << " calibration rows";
  EXPECT_TRUE(finite_at_most(hg, hc * (1 + kErrorTolerance))) << what << " held-back rows";
  EXPECT_TRUE(finite_below(eg, plain)) << what << ": GPTQ on the GPU lowers the calibration rows' error";
  return differ;
}

// max |U_gpu − U_cpu| within kFactorTolerance of max |U_cpu|, every value finite.
void expect_factor_close(GptqGpu& gpu, const GptqFactor& cpu, const std::string& what) {
  const std::vector<double> u = gpu.factor_u();
  ASSERT_EQ(u.size(), cpu.u.size()) << what;
  double diff = 0, scale = 0;
  size_t nonfinite = 0;
  for (size_t i = 0; i < u.size(); ++i) {
    if (!std::isfinite(u[i])) ++nonfinite;
    diff = std::max(diff, std::fabs(u[i] - cpu.u[i]));
    scale = std::max(scale, std::fabs(cpu.u[i]));
  }
  std::printf("%-40s max |U_gpu − U_cpu| / max |U_cpu| = %.3g\n", what.c_str(), diff / scale);
  EXPECT_EQ(nonfinite, 0u) << what;
  EXPECT_TRUE(finite_at_most(diff, kFactorTolerance * scale)) << what << ": max |U| " << scale;
}

std::string describe(const Weight& w, const GptqOptions& o, const char* extra = "") {
  return "[" + std::to_string(w.n) + ", " + std::to_string(w.k) + "] " + std::string(dtype_name(w.dtype)) + " " +
         std::string(numerics_name(w.scaling.numerics)) + " block " + std::to_string(o.block) +
         (o.act_order ? " act-order" : "") + extra;
}

TEST(CudaGptq, FactorIsTheCpusUpperCholeskyOfTheInverse) {
  FP4KIT_REQUIRE_GPU();
  GptqGpu gpu;
  std::mt19937 rng(1);
  for (int64_t k : {16, 144, 512})
    for (int64_t rows : {k / 2 + 3, 4 * k})
      for (bool act_order : {false, true}) {
        const std::vector<double> h = xtx_of(correlated_rows(rng, rows, k), rows, k);
        const GptqOptions o{0.01, 128, act_order};
        const GptqFactor cpu = gptq_factor(h, static_cast<size_t>(k), o, default_threads());
        const GptqFactor g = gpu.factor(h, static_cast<size_t>(k), o);
        const std::string what = "k " + std::to_string(k) + " rows " + std::to_string(rows) + (act_order ? " act-order" : "");
        ASSERT_TRUE(cpu.usable) << cpu.why;
        ASSERT_TRUE(g.usable) << what << ": " << g.why;
        EXPECT_EQ(g.damping, cpu.damping) << what;
        EXPECT_EQ(g.order, cpu.order) << what;
        EXPECT_TRUE(g.u.empty()) << what;
        expect_factor_close(gpu, cpu, what);
      }
}

TEST(CudaGptq, ScaledIdentityGivesThePlainRoundingBytes) {
  FP4KIT_REQUIRE_GPU();
  GptqGpu gpu;
  std::mt19937 rng(2);
  const int64_t n = 37, k = 272;
  for (Nvfp4Numerics numerics : {Nvfp4Numerics::ModelOpt, Nvfp4Numerics::ModelOptCuda, Nvfp4Numerics::CompressedTensors})
    for (DType dtype : {DType::BF16, DType::F32}) {
      const Weight w = make_weight(test_values(rng, n, k), n, k, dtype, Nvfp4ScaleMethod::Max, numerics);
      std::vector<double> h(static_cast<size_t>(k * k), 0.0);
      for (int64_t i = 0; i < k; ++i) h[static_cast<size_t>(i * k + i)] = 3.7;
      for (size_t block : {16u, 128u, 256u})
        for (bool act_order : {false, true}) {
          const GptqOptions o{0.01, block, act_order};
          const GptqRun g = run_gpu(gpu, w, h, o);
          ASSERT_TRUE(g.factor.usable) << g.factor.why;
          EXPECT_TRUE(g.packed == w.packed) << describe(w, o);
          EXPECT_EQ(g.stats.rows, static_cast<uint64_t>(n));
        }
    }
}

TEST(CudaGptq, CodesAndLayerErrorsStayCloseToTheCpu) {
  FP4KIT_REQUIRE_GPU();
  GptqGpu gpu;
  std::mt19937 rng(3);
  struct Shape {
    int64_t n, k;
    DType dtype;
    Nvfp4ScaleMethod method;
    Nvfp4Numerics numerics;
  };
  // K = 272 and 176 are multiples of 16 but not of the batch; n not a multiple of the 16 rows a
  // block of the column kernel takes.
  const Shape shapes[] = {{37, 272, DType::BF16, Nvfp4ScaleMethod::Max, Nvfp4Numerics::ModelOpt},
                          {64, 176, DType::F16, Nvfp4ScaleMethod::Mse, Nvfp4Numerics::ModelOptCuda},
                          {48, 272, DType::F32, Nvfp4ScaleMethod::Max, Nvfp4Numerics::CompressedTensors},
                          {96, 1024, DType::BF16, Nvfp4ScaleMethod::Mse, Nvfp4Numerics::ModelOpt}};
  double worst = 0;
  for (const Shape& s : shapes) {
    const Weight w = make_weight(test_values(rng, s.n, s.k), s.n, s.k, s.dtype, s.method, s.numerics);
    // XᵀX of 2K rows; 256 more rows of the same activations held back.
    const int64_t calib_rows = 2 * s.k, held_rows = 256;
    const std::vector<float> x = correlated_rows(rng, calib_rows + held_rows, s.k);
    const std::vector<float> held(x.end() - held_rows * s.k, x.end());
    const std::vector<double> h = xtx_of(x, calib_rows, s.k);
    for (size_t block : {16u, 48u, 128u, 256u})
      for (bool act_order : {false, true}) {
        const GptqOptions o{0.01, block, act_order};
        const GptqRun c = run_cpu(w, h, o), g = run_gpu(gpu, w, h, o);
        const std::string what = describe(w, o);
        ASSERT_TRUE(c.factor.usable) << c.factor.why;
        expect_same_decisions(c, g, what);
        worst = std::max(worst, expect_close(c, g, w, x, calib_rows, held, held_rows, what));
      }
  }
  std::printf("largest share of codes that differ: %.4f%%\n", 100.0 * worst);
}

// Fewer calibration rows than channels and a channel no row touched: XᵀX is singular. With
// --gptq-damping 0 the factorization fails on both paths (an exact zero pivot) and both retry with
// 0.01. An indefinite matrix (XᵀX − 0.05·mean(diag)·I, its smallest eigenvalue −0.05·mean) fails at
// λ = 0.01 and succeeds at 0.1 on both, far from the boundary in either precision.
TEST(CudaGptq, NearSingularAndIndefiniteXtxAreDampedAsOnTheCpu) {
  FP4KIT_REQUIRE_GPU();
  GptqGpu gpu;
  std::mt19937 rng(4);
  const int64_t n = 40, k = 160;
  const Weight w = make_weight(test_values(rng, n, k), n, k, DType::BF16, Nvfp4ScaleMethod::Max, Nvfp4Numerics::ModelOpt);
  const int64_t rows = 100, held_rows = 128;
  std::vector<float> x = correlated_rows(rng, rows + held_rows, k);
  for (int64_t r = 0; r < rows + held_rows; ++r) x[static_cast<size_t>(r * k + 5)] = 0.0f;
  const std::vector<float> held(x.end() - held_rows * k, x.end());
  const std::vector<double> singular = xtx_of(x, rows, k);
  {
    const GptqOptions o{0.0, 32, false};
    const GptqRun c = run_cpu(w, singular, o), g = run_gpu(gpu, w, singular, o);
    ASSERT_TRUE(c.factor.usable) << c.factor.why;
    EXPECT_EQ(c.factor.damping, 0.01);
    expect_same_decisions(c, g, "singular, damping 0");
    expect_factor_close(gpu, c.factor, "singular, damping 0");
    expect_close(c, g, w, x, rows, held, held_rows, "singular XᵀX (100 rows, 160 channels), damping 0");
  }
  // Channels of equal size, so that every diagonal value stays far above the shift.
  std::vector<float> even = x;
  for (int64_t r = 0; r < rows + held_rows; ++r)
    for (int64_t c = 0; c < k; ++c) even[static_cast<size_t>(r * k + c)] = static_cast<float>(rng() % 2001) / 1000.0f - 1.0f;
  std::vector<double> indefinite = xtx_of(even, rows, k);
  double mean = 0;
  for (int64_t i = 0; i < k; ++i) mean += indefinite[static_cast<size_t>(i * k + i)] / static_cast<double>(k);
  for (int64_t i = 0; i < k; ++i) indefinite[static_cast<size_t>(i * k + i)] -= 0.05 * mean;
  for (bool act_order : {false, true}) {
    const GptqOptions o{0.01, 128, act_order};
    const GptqRun c = run_cpu(w, indefinite, o), g = run_gpu(gpu, w, indefinite, o);
    ASSERT_TRUE(c.factor.usable) << c.factor.why;
    EXPECT_EQ(c.factor.damping, 0.1);
    expect_same_decisions(c, g, "indefinite");
    expect_factor_close(gpu, c.factor, "indefinite");
    const std::vector<float> even_held(even.end() - held_rows * k, even.end());
    expect_close(c, g, w, even, rows, even_held, held_rows,
                 std::string("indefinite XᵀX, damping 0.01 -> 0.1") + (act_order ? " act-order" : ""));
  }
}

TEST(CudaGptq, UnusableXtxLeavesThePlainRoundingWithTheCpusReason) {
  FP4KIT_REQUIRE_GPU();
  GptqGpu gpu;
  std::mt19937 rng(5);
  const int64_t n = 20, k = 64;
  const Weight w = make_weight(test_values(rng, n, k), n, k, DType::BF16, Nvfp4ScaleMethod::Mse, Nvfp4Numerics::ModelOpt);
  const std::vector<double> good = xtx_of(correlated_rows(rng, 200, k), 200, k);
  struct Case {
    std::vector<double> h;
    const char* why;
  };
  std::vector<Case> cases;
  cases.push_back({good, "NaN or Inf"});
  cases.back().h[3 * k + 7] = std::numeric_limits<double>::quiet_NaN();  // off the diagonal
  cases.push_back({good, "NaN or Inf"});
  cases.back().h[5 * k + 5] = std::numeric_limits<double>::quiet_NaN();  // on it
  cases.push_back({good, "NaN or Inf"});
  cases.back().h[0] = std::numeric_limits<double>::infinity();
  cases.push_back({std::vector<double>(static_cast<size_t>(k * k), 0.0), "all-zero diagonal"});
  cases.push_back({good, "negative diagonal"});
  cases.back().h[2 * k + 2] = -1.0;
  // Indefinite beyond any damping tried: a huge off-diagonal pair.
  cases.push_back({std::vector<double>(static_cast<size_t>(k * k), 0.0), "not positive definite with damping up to 10"});
  for (int64_t i = 0; i < k; ++i) cases.back().h[static_cast<size_t>(i * k + i)] = 1.0;
  cases.back().h[1] = cases.back().h[static_cast<size_t>(k)] = 100.0;
  for (const Case& c : cases) {
    const GptqRun cpu = run_cpu(w, c.h, {}), g = run_gpu(gpu, w, c.h, {});
    EXPECT_FALSE(g.factor.usable) << c.why;
    EXPECT_NE(g.factor.why.find(c.why), std::string::npos) << g.factor.why;
    expect_same_decisions(cpu, g, c.why);
    EXPECT_TRUE(g.packed == w.packed) << c.why;
    EXPECT_TRUE(g.packed == cpu.packed) << c.why;
  }
}

TEST(CudaGptq, RowsHoldingNanOrInfGetThePlainRounding) {
  FP4KIT_REQUIRE_GPU();
  GptqGpu gpu;
  std::mt19937 rng(6);
  const int64_t n = 35, k = 272;
  std::vector<float> v = test_values(rng, n, k);
  v[static_cast<size_t>(5 * k + 200)] = kNaN;
  v[static_cast<size_t>(17 * k + 1)] = kInf;
  v[static_cast<size_t>(33 * k + 271)] = -kInf;
  const Weight w = make_weight(v, n, k, DType::F32, Nvfp4ScaleMethod::Max, Nvfp4Numerics::ModelOpt);
  const std::vector<double> h = xtx_of(correlated_rows(rng, 600, k), 600, k);
  for (bool act_order : {false, true}) {
    const GptqOptions o{0.01, 32, act_order};
    const GptqRun c = run_cpu(w, h, o), g = run_gpu(gpu, w, h, o);
    expect_same_decisions(c, g, "rows holding NaN/Inf");
    EXPECT_EQ(g.stats.skipped_rows, 3u);
    EXPECT_EQ(g.stats.rows, 32u);
    const size_t row_bytes = static_cast<size_t>(k / 2);
    for (size_t row : {5u, 17u, 33u}) {
      const auto at = [&](const std::vector<uint8_t>& p) { return p.begin() + static_cast<std::ptrdiff_t>(row * row_bytes); };
      EXPECT_TRUE(std::equal(at(g.packed), at(g.packed) + static_cast<std::ptrdiff_t>(row_bytes), at(w.packed))) << row;
      EXPECT_TRUE(std::equal(at(g.packed), at(g.packed) + static_cast<std::ptrdiff_t>(row_bytes), at(c.packed))) << row;
    }
    EXPECT_TRUE(finite_at_most(code_difference(c.packed, g.packed), kMaxCodeDifference));
  }
}

// More rows than the device takes in one pass (2^26 values): the passes join up.
TEST(CudaGptq, RowsBeyondOnePassOfTheDevice) {
  FP4KIT_REQUIRE_GPU();
  GptqGpu gpu;
  std::mt19937 rng(7);
  const int64_t k = 32, n = (int64_t{1} << 21) + 21;
  std::normal_distribution<float> d(0.0f, 0.05f);
  std::vector<float> v(static_cast<size_t>(n * k));
  for (float& x : v) x = d(rng);
  const Weight w = make_weight(std::move(v), n, k, DType::BF16, Nvfp4ScaleMethod::Max, Nvfp4Numerics::ModelOpt);
  const std::vector<double> h = xtx_of(correlated_rows(rng, 256, k), 256, k);
  const GptqOptions o{0.01, 16, false};
  const GptqRun c = run_cpu(w, h, o), g = run_gpu(gpu, w, h, o);
  expect_same_decisions(c, g, "2^21 + 21 rows");
  EXPECT_TRUE(finite_at_most(code_difference(c.packed, g.packed), kMaxCodeDifference));
  // Each pass's rows are compensated: the last rows differ from plain rounding as the first do.
  const auto tail = [&](const std::vector<uint8_t>& p) {
    return std::vector<uint8_t>(p.end() - static_cast<std::ptrdiff_t>(21 * k / 2), p.end());
  };
  EXPECT_FALSE(tail(g.packed) == tail(w.packed));
  EXPECT_TRUE(finite_at_most(code_difference(tail(g.packed), tail(c.packed)), kMaxCodeDifference));
}

// `convert --gptq --device cuda` on the tiny checkpoint against the CPU run: the same counts, codes
// within the bound, the layer-output error of the attention linears on held-back rows within the
// tolerance of the CPU's, an output that verifies, the device in the report and the plan file (a
// --resume on the CPU is refused).
TEST(CudaGptq, ConvertOnTheGpuStaysCloseToTheCpuRun) {
  FP4KIT_REQUIRE_GPU();
  const std::string dir = testing::fresh_temp_dir("cuda-gptq-convert");
  // Calibration: 16 sequences of 96 random ids (more rows than any tiny linear's input channels).
  std::mt19937 rng(1717);
  std::uniform_int_distribution<int> id(2, 1023);
  {
    std::ofstream ids(dir + "/calib.ids");
    for (int r = 0; r < 16; ++r) {
      ids << 0;
      for (int t = 1; t < 96; ++t) ids << ' ' << id(rng);
      ids << '\n';
    }
  }
  const auto cal = testing::run_fp4kit("calibrate " + testing::test_data("dsv4-tiny") + " --data " + dir +
                                       "/calib.ids --quiet --out " + dir + "/amax.safetensors --hessian " + dir +
                                       "/xtx --hessian-mode full");
  ASSERT_EQ(cal.exit_code, 0) << cal.output;
  const std::string gptq = " --gptq --hessian " + dir + "/xtx --gptq-missing rtn";
  const auto c =
      testing::run_fp4kit(testing::tiny_all_linear_args(dir + "/cpu", "mse") + gptq + " --json " + dir + "/cpu.json");
  ASSERT_EQ(c.exit_code, 0) << c.output;
  const auto g = testing::run_fp4kit(testing::tiny_all_linear_args(dir + "/gpu", "mse") + gptq + " --device cuda --json " +
                                     dir + "/gpu.json");
  ASSERT_EQ(g.exit_code, 0) << g.output;
  const nlohmann::json cj = testing::load_json(dir + "/cpu.json"), gj = testing::load_json(dir + "/gpu.json");
  EXPECT_EQ(cj.at("gptq").at("device"), "cpu");
  EXPECT_EQ(gj.at("gptq").at("device"), "cuda");
  for (const char* key : {"tensors", "matrices", "rtn_matrices", "damped_more", "rows", "skipped_rows"})
    EXPECT_EQ(gj.at("gptq").at(key), cj.at("gptq").at(key)) << key;
  std::printf("gptq seconds: cpu %.3f, gpu %.3f\n", cj.at("gptq").at("seconds").get<double>(),
              gj.at("gptq").at("seconds").get<double>());

  // Codes of the compensated weights.
  const auto cc = io::Checkpoint::open(dir + "/cpu"), gc = io::Checkpoint::open(dir + "/gpu");
  size_t codes = 0, differ = 0;
  for (const std::string& shard : cc.shard_files())
    for (const io::TensorInfo& t : cc.shard(shard).tensors()) {
      if (!t.name.ends_with(".weight") || t.dtype != DType::U8 || t.name.find(".ffn.experts.") != std::string::npos ||
          t.name.starts_with("mtp."))
        continue;
      const io::TensorInfo* other = gc.shard(shard).find(t.name);
      ASSERT_NE(other, nullptr) << t.name;
      const std::vector<std::byte> a = cc.shard(shard).read_all(t), b = gc.shard(shard).read_all(*other);
      ASSERT_EQ(a.size(), b.size()) << t.name;
      for (size_t i = 0; i < a.size(); ++i) {
        const unsigned x = static_cast<unsigned>(a[i] ^ b[i]);
        differ += (x & 0x0F ? 1 : 0) + (x & 0xF0 ? 1 : 0);
      }
      codes += 2 * a.size();
    }
  ASSERT_GT(codes, 0u);
  const double share = static_cast<double>(differ) / static_cast<double>(codes);
  std::printf("convert: %zu of %zu GPTQ codes differ (%.4f%%)\n", differ, codes, 100.0 * share);
  EXPECT_TRUE(finite_at_most(share, kMaxCodeDifference));

  // The layer-output error on the oracle's four sequences, which calibration did not see.
  const CalibrationBatch held = testing::load_calibration_ids(testing::test_data("calib/oracle/calib_ids.safetensors"));
  testing::AttentionInputRecorder rec;
  engine::EngineOptions eo;
  eo.observer = &rec;
  engine::Engine(testing::test_data("dsv4-tiny"), eo).forward(held.ids, held.batch);
  const auto src_ckpt = io::Checkpoint::open(testing::test_data("dsv4-tiny"));
  const StoredWeights src(src_ckpt);
  const double ec = testing::relative(testing::stored_output_error(rec, src, dir + "/cpu"));
  const double eg = testing::relative(testing::stored_output_error(rec, src, dir + "/gpu"));
  std::printf("attention linears, held-back rows: cpu %.5f gpu %.5f\n", ec, eg);
  EXPECT_TRUE(finite_at_most(eg, ec * (1 + kErrorTolerance)));

  EXPECT_EQ(testing::run_fp4kit("verify " + dir + "/gpu --source " + testing::test_data("dsv4-tiny")).exit_code, 0);
  // The plan file records the device: resuming the GPU run on the CPU is refused.
  const auto resume = testing::run_fp4kit(testing::tiny_all_linear_args(dir + "/gpu", "mse") + gptq + " --resume");
  EXPECT_EQ(resume.exit_code, 2) << resume.output;
  EXPECT_NE(resume.output.find("device"), std::string::npos) << resume.output;
}

}  // namespace
}  // namespace fp4kit
