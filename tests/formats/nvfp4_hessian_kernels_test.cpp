// Activation-weighted NVFP4 block scales: the fast path of every ISA the CPU runs against the scalar
// reference, byte for byte (scales and packed elements), on random and adversarial weights, random
// and adversarial XᵀX blocks (usable or not), plain and grouped layouts, runs of blocks that start
// inside a tensor, and near-ties that only the reference's order of summation decides.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "convert/nvfp4_quantizer.h"
#include "formats/float_bits.h"
#include "formats/nvfp4_hessian_sweep.h"
#include "formats/nvfp4_mse_sweep.h"
#include "formats/nvfp4_scale_search.h"
#include "formats/scale_search_blocks.h"
#include "isa_cases.h"
#include "oracle_file.h"
#include "source_bytes.h"

namespace fp4kit {
namespace {

using testing::adversarial_block;
using testing::BytesEqual;
using testing::mirrored_block;
using testing::random_gram;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

using Matrix = std::vector<float>;  // a 16×16 block of XᵀX, row-major

Matrix diagonal(const std::vector<float>& d) {
  Matrix h(256, 0.0f);
  for (int i = 0; i < 16; ++i) h[static_cast<size_t>(i * 17)] = d[static_cast<size_t>(i)];
  return h;
}

// XᵀX blocks of every kind the sweep meets, usable and not, each prepared with and without damping,
// then a few weights set directly (usable, yet with entries hessian_block_weight never gives).
std::vector<HessianBlockWeight> adversarial_weights(std::mt19937& rng) {
  std::vector<Matrix> m;
  m.push_back(diagonal(std::vector<float>(16, 1.0f)));  // identity: no off-diagonal term
  m.push_back(diagonal(std::vector<float>(16, 37.25f)));
  {  // diagonal, ratios up to 1e30
    std::vector<float> d(16);
    for (int i = 0; i < 16; ++i) d[static_cast<size_t>(i)] = std::pow(10.0f, static_cast<float>((i * 7) % 31 - 15));
    m.push_back(diagonal(d));
  }
  for (int r = 0; r < 3; ++r) m.push_back(random_gram(rng));
  {  // sparse: most off-diagonal entries zero (both signs), the first and the last pair kept
    Matrix h = random_gram(rng);
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 16; ++j)
        if (i != j && rng() % 4 != 0) h[static_cast<size_t>(i * 16 + j)] = (rng() & 1) ? 0.0f : -0.0f;
    h[1] = h[16] = 0.5f;
    h[14 * 16 + 15] = h[15 * 16 + 14] = -0.25f;
    m.push_back(h);
  }
  {  // one off-diagonal term only
    Matrix h = diagonal(std::vector<float>(16, 2.0f));
    h[3 * 16 + 11] = h[11 * 16 + 3] = 1.5f;
    m.push_back(h);
  }
  {  // negative off-diagonal, not positive semi-definite
    Matrix h(256, -0.9f);
    for (int i = 0; i < 16; ++i) h[static_cast<size_t>(i * 17)] = 1.0f;
    m.push_back(h);
  }
  m.push_back(Matrix(256, 1.0f));  // rank one
  {  // tiny diagonal, huge off-diagonal: h_ij overflows to ±Inf after the normalisation
    Matrix h(256, 1e30f);
    for (int i = 0; i < 16; ++i) h[static_cast<size_t>(i * 17)] = 1e-30f;
    h[5] = h[80] = -1e30f;
    m.push_back(h);
  }
  {  // subnormal off-diagonal entries (after the normalisation too)
    Matrix h = diagonal(std::vector<float>(16, 1.0f));
    for (int i = 0; i < 15; ++i) h[static_cast<size_t>(i * 16 + i + 1)] = h[static_cast<size_t>((i + 1) * 16 + i)] = 1e-40f;
    m.push_back(h);
  }
  // Not usable: NaN, Inf, a negative diagonal value, all zero, a zero diagonal.
  for (int r = 0; r < 2; ++r) {
    Matrix h = random_gram(rng);
    h[static_cast<size_t>(rng() % 256)] = r ? kInf : kNaN;
    m.push_back(h);
  }
  {
    Matrix h = random_gram(rng);
    h[7 * 17] = -1.0f;
    m.push_back(h);
  }
  m.push_back(Matrix(256, 0.0f));
  {
    Matrix h(256, 1.0f);
    for (int i = 0; i < 16; ++i) h[static_cast<size_t>(i * 17)] = 0.0f;
    m.push_back(h);
  }
  std::vector<HessianBlockWeight> w;
  for (const Matrix& h : m)
    for (double damping : {kDefaultHessianDamping, 0.0}) w.push_back(hessian_block_weight(h.data(), damping));
  for (float special : {kNaN, kInf, -1.0f}) {
    HessianBlockWeight raw = hessian_block_weight(random_gram(rng).data(), kDefaultHessianDamping);
    raw.h[static_cast<size_t>(rng() % 256)] = special;
    raw.h[9 * 17] = special;
    w.push_back(raw);
  }
  return w;
}

// Random and adversarial blocks for global amax g: normal and heavy-tailed weights, the shared
// adversarial blocks, zeros, signed zeros, subnormals, NaN, Inf, values at the F32 maximum.
std::vector<float> test_values(std::mt19937& rng, size_t blocks, float g) {
  std::normal_distribution<float> normal;
  std::student_t_distribution<float> heavy(3.0f);
  std::vector<float> v;
  for (size_t b = 0; b < blocks; ++b) {
    std::vector<float> x(16);
    switch (b % 13) {
      case 0: case 4: case 8: for (float& e : x) e = normal(rng) * g * 0.25f; break;
      case 2: case 10: for (float& e : x) e = heavy(rng) * g * 0.05f; break;
      case 3: x[5] = 1e-40f; x[6] = -1e-42f; x[7] = 0x1p-126f; break;
      case 5: x = adversarial_block(rng, g); x[2] = kNaN; break;
      case 7: x = adversarial_block(rng, g); x[9] = (b & 1) ? kInf : -kInf; break;
      case 9: for (float& e : x) e = -0.0f; break;
      case 11: for (size_t i = 0; i < 16; ++i) x[i] = i % 2 ? 3.4e38f : -1.0f; break;
      default: x = adversarial_block(rng, g); break;
    }
    v.insert(v.end(), x.begin(), x.end());
  }
  return v;
}

struct Quantized {
  std::vector<uint8_t> packed, scales;
  Nvfp4HessianStats stats;
};

Quantized run(const Nvfp4HessianKernels& k, FloatSpan src, size_t first_block, const std::vector<HessianBlockWeight>& w,
              const HessianLayout& layout, const Nvfp4SearchScaling& sc) {
  Quantized q{std::vector<uint8_t>(src.size / 2, 0xAA), std::vector<uint8_t>(src.size / 16, 0xAA), {}};
  k.quantize(src, first_block, w, layout, sc, q.packed.data(), q.scales.data(), &q.stats);
  return q;
}

class Nvfp4HessianKernels : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override { FP4KIT_REQUIRE_SIMD(); }

  // Every ISA's kernel and the reference on the [rows, values.size()/rows] tensor `values` (stored
  // `offset` elements into the buffer: unaligned when odd), in both ModelOpt numerics, on the whole
  // tensor and on a run of its blocks that starts inside it: the same scale and packed bytes and
  // the same block counts.
  void expect_same(const std::vector<float>& values, size_t rows, float g, const std::vector<HessianBlockWeight>& w,
                   size_t rows_per_group, const std::string& what, size_t offset = 0) const {
    const DType dtype = GetParam();
    std::vector<float> padded(offset, 0.0f);
    padded.insert(padded.end(), values.begin(), values.end());
    const std::vector<uint8_t> bytes = testing::source_bytes(padded, dtype);
    const FloatSpan src = FloatSpan{bytes.data(), dtype, padded.size()}.subspan(offset, values.size());
    const size_t blocks = src.size / 16;
    const HessianLayout layout{blocks / rows, rows_per_group};
    const size_t first = blocks / 3;
    const FloatSpan run_src = src.subspan(16 * first, 16 * (blocks - first));
    for (Nvfp4Numerics numerics : {Nvfp4Numerics::ModelOptCuda, Nvfp4Numerics::ModelOpt}) {
      const Nvfp4SearchScaling sc = nvfp4_search_scaling(g, Nvfp4ScaleMethod::Hessian, numerics, dtype);
      const Quantized ref = run(nvfp4_hessian_kernels(Isa::Scalar), src, 0, w, layout, sc);
      const Quantized ref_run = run(nvfp4_hessian_kernels(Isa::Scalar), run_src, first, w, layout, sc);
      for (Isa isa : simd_isas()) {
        const std::string where = what + " g " + std::to_string(g) + " " + std::string(numerics_name(numerics)) + " " +
                                  std::string(isa_name(isa));
        const Quantized fast = run(nvfp4_hessian_kernels(isa), src, 0, w, layout, sc);
        EXPECT_TRUE(BytesEqual(fast.scales, ref.scales)) << where << " scales";
        EXPECT_TRUE(BytesEqual(fast.packed, ref.packed)) << where << " packed";
        EXPECT_EQ(fast.stats.blocks, ref.stats.blocks) << where;
        EXPECT_EQ(fast.stats.fallback_blocks, ref.stats.fallback_blocks) << where;
        const Quantized fast_run = run(nvfp4_hessian_kernels(isa), run_src, first, w, layout, sc);
        EXPECT_TRUE(BytesEqual(fast_run.scales, ref_run.scales)) << where << " run scales";
        EXPECT_TRUE(BytesEqual(fast_run.packed, ref_run.packed)) << where << " run packed";
        EXPECT_EQ(fast_run.stats.fallback_blocks, ref_run.stats.fallback_blocks) << where;
      }
    }
  }
};

float amax_of(const std::vector<float>& v) {
  float m = 0.0f;
  for (float e : v) m = std::fmax(m, std::fabs(e));
  return m;
}

TEST_P(Nvfp4HessianKernels, RandomWeightsRandomGrams) {
  std::mt19937 rng(41);
  std::normal_distribution<float> normal;
  for (int trial = 0; trial < 4; ++trial) {
    const size_t cols = 16 * (1 + rng() % 12), rows = 1 + rng() % 20;
    std::vector<HessianBlockWeight> w;
    for (size_t j = 0; j < cols / 16; ++j) w.push_back(hessian_block_weight(random_gram(rng).data(), kDefaultHessianDamping));
    std::vector<float> v(rows * cols);
    const float unit = std::ldexp(1.0f, static_cast<int>(rng() % 40) - 20);
    for (float& e : v) e = normal(rng) * unit;
    const float g = amax_of(v) * (trial % 2 ? 3.0f : 1.0f);  // a fused partner holds the larger amax
    expect_same(v, rows, g, w, rows, "random", trial % 2);
  }
}

TEST_P(Nvfp4HessianKernels, AdversarialGramsAndWeights) {
  std::mt19937 rng(2607);
  const std::vector<HessianBlockWeight> w = adversarial_weights(rng);
  const size_t rows = 7, blocks = rows * w.size();
  for (float g : {1.0f, 448.0f, 3.0e-3f, 1.7e5f}) {
    const std::vector<float> v = test_values(rng, blocks, g);
    expect_same(v, rows, g, w, rows, "adversarial", 1);
  }
}

// Global amaxes no real tensor has (zero, NaN, infinite, tiny, huge), with the tensor's own values.
TEST_P(Nvfp4HessianKernels, ForcedGlobalAmax) {
  std::mt19937 rng(8);
  const std::vector<HessianBlockWeight> w = adversarial_weights(rng);
  const size_t rows = 2;
  const std::vector<float> v = test_values(rng, rows * w.size(), 0.5f);
  for (float g : {0.0f, kNaN, kInf, 1e-40f, 0x1p-101f, 3.0e38f}) expect_same(v, rows, g, w, rows, "forced global");
}

// A grouped layout (rows_per_group < rows): each row group takes its own XᵀX blocks.
TEST_P(Nvfp4HessianKernels, GroupedLayout) {
  std::mt19937 rng(12);
  const size_t groups = 3, rows_per_group = 4, cols = 64, rows = groups * rows_per_group;
  std::vector<HessianBlockWeight> w;
  for (size_t j = 0; j < groups * cols / 16; ++j)
    w.push_back(hessian_block_weight(random_gram(rng).data(), j == 5 ? 0.0 : kDefaultHessianDamping));
  w[7] = hessian_block_weight(Matrix(256, 0.0f).data(), kDefaultHessianDamping);  // one unusable block
  const std::vector<float> v = test_values(rng, rows * cols / 16, 2.0f);
  expect_same(v, rows, 2.0f, w, rows_per_group, "grouped");
}

INSTANTIATE_TEST_SUITE_P(All, Nvfp4HessianKernels, ::testing::Values(DType::BF16, DType::F16, DType::F32),
                         [](const auto& param_info) { return std::string(dtype_name(param_info.param)); });

// The sums every candidate's loss is made of, bit for bit, on every block of finite values with a
// usable weight: the f32 diagonal sum, the F64 off-diagonal sum (whose rounding the f32 loss mostly
// hides) and whether any off-diagonal term was added.
TEST_P(Nvfp4HessianKernels, BlockTermsAreTheReferences) {
  std::mt19937 rng(515);
  std::vector<HessianBlockWeight> w = adversarial_weights(rng);
  for (int r = 0; r < 4; ++r) w.push_back(hessian_block_weight(random_gram(rng).data(), kDefaultHessianDamping));
  const DType dtype = GetParam();
  const int lanes = mse_sweep_lanes(dtype);
  for (float g : {1.0f, 3.0e-3f, 0.0f}) {  // (a global amax of 0 makes every candidate's scale 1)
    const Nvfp4MseCandidates cand(g);
    const std::vector<float> v = testing::round_to(test_values(rng, 20, g > 0.0f ? g : 1.0f), dtype);
    for (size_t b = 0; b < v.size() / 16; ++b) {
      const float* x = v.data() + 16 * b;
      if (!std::all_of(x, x + 16, [](float e) { return std::isfinite(e); })) continue;
      for (const HessianBlockWeight& weight : w) {
        if (!weight.usable) continue;
        HessianLossTerms ref[Nvfp4MseCandidates::kCount], fast[Nvfp4MseCandidates::kCount];
        nvfp4_hessian_kernels(Isa::Scalar).block_terms(x, cand, weight, lanes, ref);
        for (Isa isa : simd_isas()) {
          nvfp4_hessian_kernels(isa).block_terms(x, cand, weight, lanes, fast);
          size_t differ = 0, first = 0;
          for (size_t k = Nvfp4MseCandidates::kCount; k-- > 0;)
            if (f32_bits(fast[k].diagonal) != f32_bits(ref[k].diagonal) || std::bit_cast<uint64_t>(fast[k].cross) != std::bit_cast<uint64_t>(ref[k].cross) ||
                fast[k].any != ref[k].any)
              ++differ, first = k;
          ASSERT_EQ(differ, 0u) << isa_name(isa) << " block " << b << " g " << g << ": candidate " << first << " diagonal "
                                << fast[first].diagonal << " want " << ref[first].diagonal << ", cross " << fast[first].cross
                                << " want " << ref[first].cross;
        }
      }
    }
  }
}

// Mirrored pairs between neighbouring candidates, with a weighting close to the identity that still
// has off-diagonal terms: the sum order of 2 and 4 kernel threads decides the choice on some blocks,
// and every ISA follows the F32 source's order.
TEST(Nvfp4HessianKernelsOrder, NearTiesFollowTheReferencesSumOrder) {
  FP4KIT_REQUIRE_SIMD();
  std::mt19937 rng(79);
  const float g = 1.0f;
  const Nvfp4MseCandidates cand(g);
  Matrix h = diagonal(std::vector<float>(16, 1.0f));
  for (int i = 0; i < 15; ++i) h[static_cast<size_t>(i * 16 + i + 1)] = h[static_cast<size_t>((i + 1) * 16 + i)] = 1e-9f;
  const std::vector<HessianBlockWeight> w = {hessian_block_weight(h.data(), 0.0)};
  ASSERT_TRUE(w[0].usable);
  std::vector<float> v;
  size_t order_decides = 0;
  for (int b = 0; b < 2000; ++b) {
    const int k = 20 + static_cast<int>(rng() % 100);
    const std::vector<float> x = mirrored_block(rng, cand.scale(k), cand.scale(k + 1), {6, 4, 3, 2, 1.5, 1, 0.5}, 0.0f);
    order_decides += hessian_sweep(x.data(), cand, w[0], 2) != hessian_sweep(x.data(), cand, w[0], 4);
    v.insert(v.end(), x.begin(), x.end());
  }
  EXPECT_GT(order_decides, 10u);
  const std::vector<uint8_t> bytes = testing::source_bytes(v, DType::F32);
  const FloatSpan src{bytes.data(), DType::F32, v.size()};
  const HessianLayout layout{1, v.size() / 16};
  const Nvfp4SearchScaling sc = nvfp4_search_scaling(g, Nvfp4ScaleMethod::Hessian, Nvfp4Numerics::ModelOptCuda, DType::F32);
  const Quantized ref = run(nvfp4_hessian_kernels(Isa::Scalar), src, 0, w, layout, sc);
  for (Isa isa : simd_isas()) {
    const Quantized fast = run(nvfp4_hessian_kernels(isa), src, 0, w, layout, sc);
    EXPECT_TRUE(BytesEqual(fast.scales, ref.scales)) << isa_name(isa);
    EXPECT_TRUE(BytesEqual(fast.packed, ref.packed)) << isa_name(isa);
  }
}

// The scalar ISA is the reference itself; every SIMD ISA the CPU runs has its own kernel.
TEST(Nvfp4HessianKernelsChoice, ScalarIsTheReference) {
  EXPECT_EQ(nvfp4_hessian_kernels(Isa::Scalar).quantize, &nvfp4_hessian_quantize_ref);
  for (Isa isa : simd_isas()) EXPECT_NE(nvfp4_hessian_kernels(isa).quantize, &nvfp4_hessian_quantize_ref) << isa_name(isa);
}

// The whole-tensor quantizer gives the reference's bytes on every ISA and any thread count.
TEST(Nvfp4HessianQuantizer, SameBytesOnEveryIsaAndThreadCount) {
  FP4KIT_REQUIRE_SIMD();
  std::mt19937 rng(13);
  std::normal_distribution<float> normal;
  const size_t cols = 96, rows = 150;
  std::vector<float> v(rows * cols);
  for (float& e : v) e = normal(rng) * 0.02f;
  std::vector<HessianBlockWeight> w;
  for (size_t j = 0; j < cols / 16; ++j) w.push_back(hessian_block_weight(random_gram(rng).data(), kDefaultHessianDamping));
  w[2] = hessian_block_weight(Matrix(256, 0.0f).data(), kDefaultHessianDamping);
  const std::vector<uint8_t> bytes = testing::source_bytes(v, DType::BF16);
  const FloatSpan src{bytes.data(), DType::BF16, v.size()};
  const HessianLayout layout{cols / 16, rows};
  const Nvfp4SearchScaling sc =
      nvfp4_search_scaling(amax_of(v), Nvfp4ScaleMethod::Hessian, Nvfp4Numerics::ModelOptCuda, DType::BF16);
  Nvfp4HessianStats ref_stats;
  const Nvfp4Tensor ref = quantize_nvfp4_hessian(src, w, layout, sc, 1, ref_stats, Isa::Scalar);
  for (Isa isa : simd_isas())
    for (unsigned threads : {1u, 3u}) {
      Nvfp4HessianStats stats;
      const Nvfp4Tensor fast = quantize_nvfp4_hessian(src, w, layout, sc, threads, stats, isa);
      EXPECT_TRUE(BytesEqual(fast.packed, ref.packed)) << threads << " " << isa_name(isa);
      EXPECT_TRUE(BytesEqual(fast.scales, ref.scales)) << threads << " " << isa_name(isa);
      EXPECT_EQ(stats.blocks, ref_stats.blocks);
      EXPECT_EQ(stats.fallback_blocks, ref_stats.fallback_blocks);
      EXPECT_EQ(stats.fallback_blocks, rows);
    }
}

}  // namespace
}  // namespace fp4kit
