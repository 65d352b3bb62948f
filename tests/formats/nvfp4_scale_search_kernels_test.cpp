// Searched NVFP4 scales (mse, four-over-six): the fast path of every ISA the CPU runs against the
// scalar reference, byte for byte, on random weights and on adversarial, degenerate and non-finite
// blocks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "convert/nvfp4_quantizer.h"
#include "formats/float_bits.h"
#include "formats/nvfp4_four_over_six.h"
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
using testing::e4m3_value;
using testing::mirrored_block;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

float amax_of(const std::vector<float>& v) {
  float m = 0.0f;
  for (float e : v) m = std::fmax(m, std::fabs(e));
  return m;
}

class Nvfp4SearchKernels : public ::testing::TestWithParam<std::tuple<Nvfp4ScaleMethod, DType>> {
 protected:
  void SetUp() override { FP4KIT_REQUIRE_SIMD(); }

  // Every ISA's kernels and the reference's on `values` stored `offset` elements into the buffer (unaligned when odd), with
  // global amax g: the same block amax bits, and in both ModelOpt numerics the same scale and
  // packed bytes.
  void expect_same(const std::vector<float>& values, float g, const std::string& what, size_t offset = 0) const {
    const auto [method, dtype] = GetParam();
    std::vector<float> padded(offset, 0.0f);
    padded.insert(padded.end(), values.begin(), values.end());
    const std::vector<uint8_t> bytes = testing::source_bytes(padded, dtype);
    const FloatSpan src = FloatSpan{bytes.data(), dtype, padded.size()}.subspan(offset, values.size() / 16 * 16);
    const auto& ref = nvfp4_search_kernels(Isa::Scalar);
    const size_t blocks = src.size / 16;
    for (Isa isa : simd_isas())
    for (Nvfp4Numerics numerics : {Nvfp4Numerics::ModelOptCuda, Nvfp4Numerics::ModelOpt}) {
      const auto& fast = nvfp4_search_kernels(isa);
      const Nvfp4SearchScaling sc = nvfp4_search_scaling(g, method, numerics, dtype);
      const std::string where = what + " g " + std::to_string(g) + " " + std::string(numerics_name(numerics)) + " " +
                                std::string(isa_name(isa));
      if (numerics == Nvfp4Numerics::ModelOptCuda) {  // (the search does not depend on the numerics)
        std::vector<float> a1(blocks), a2(blocks, -1.0f);
        ref.block_amax(src, sc, a1.data());
        fast.block_amax(src, sc, a2.data());
        size_t differing = 0, first = 0;
        for (size_t b = blocks; b-- > 0;)
          if (f32_bits(a1[b]) != f32_bits(a2[b])) ++differing, first = b;
        EXPECT_EQ(differing, 0u) << where << ": block amax of " << differing << " of " << blocks << " blocks, first "
                                 << first << " (" << a2[first] << " want " << a1[first] << ")";
      }
      std::vector<uint8_t> p1(src.size / 2), s1(blocks), p2(src.size / 2, 0xAA), s2(blocks, 0xAA);
      ref.quantize(src, sc, p1.data(), s1.data());
      fast.quantize(src, sc, p2.data(), s2.data());
      EXPECT_TRUE(BytesEqual(s2, s1)) << where << " scales";
      EXPECT_TRUE(BytesEqual(p2, p1)) << where << " packed";
    }
  }
};

TEST_P(Nvfp4SearchKernels, RandomWeights) {
  std::mt19937 rng(31);
  for (int trial = 0; trial < 6; ++trial) {
    std::normal_distribution<float> normal;
    std::student_t_distribution<float> heavy(3.0f);
    std::vector<float> v(16 * (1 + rng() % 400));  // ragged: not a multiple of any chunk
    const float unit = std::ldexp(1.0f, static_cast<int>(rng() % 40) - 20);
    for (float& e : v) e = (trial % 2 ? heavy(rng) : normal(rng)) * unit;
    const float g = amax_of(v) * (trial % 3 == 2 ? 5.0f : 1.0f);  // a fused partner holds the larger amax
    expect_same(v, g, "random", trial % 2);
  }
}

TEST_P(Nvfp4SearchKernels, AdversarialBlocks) {
  std::mt19937 rng(2606);
  for (float g : {1.0f, 0.0234375f, 3.0e-3f, 448.0f, 1.7e5f, 0x1p-90f}) {
    std::vector<float> v;
    for (int b = 0; b < 300; ++b) {
      const std::vector<float> x = adversarial_block(rng, g);
      v.insert(v.end(), x.begin(), x.end());
    }
    expect_same(v, g, "adversarial", 1);
  }
}

// Every block amax from the bottom of the E4M3 grid to the top, one ulp either side of each code's
// rounding boundaries, with the other elements on E2M1 decision points of that amax's scale.
TEST_P(Nvfp4SearchKernels, E4M3AndE2M1Boundaries) {
  const float g = 1.0f, unit = g / 448.0f;
  const float bounds[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 6.0f};
  std::vector<float> v;
  for (int code = 1; code < 0x7E; ++code) {
    const float lo = e4m3_value(code) * unit, hi = e4m3_value(code + 1) * unit;
    const float mid = (lo + hi) / 2;
    for (float m : {lo, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, kInf)}) {
      std::vector<float> x(16);
      for (int i = 0; i < 16; ++i) {
        float e = bounds[i % 8] * m / 6.0f;
        if (i >= 8) e = std::nextafter(e, i % 2 ? kInf : 0.0f);
        x[i] = i % 3 ? e : -e;
      }
      x[5] = m;
      v.insert(v.end(), x.begin(), x.end());
    }
  }
  expect_same(v, g, "boundaries");
}

TEST_P(Nvfp4SearchKernels, DegenerateAndNonFiniteBlocks) {
  std::vector<float> v(16 * 12, 0.0f);                                           // block 0: all zero
  for (int i = 16; i < 32; ++i) v[i] = -0.0f;                                    // block 1: all -0
  v[32 + 7] = -1e-3f;                                                            // block 2: one element
  v[48] = kNaN;                                                                  // block 3: NaN
  v[64 + 3] = kInf;                                                              // block 4: +Inf
  v[80] = -kInf;                                                                 // block 5: -Inf
  v[81] = 0.5f;
  for (int i = 96; i < 112; ++i) v[i] = 1e-45f * static_cast<float>(i % 5);      // block 6: subnormals
  for (int i = 112; i < 128; ++i) v[i] = 0x1p-130f * static_cast<float>(i % 7);  // block 7: subnormals
  for (int i = 128; i < 144; ++i) v[i] = i % 2 ? 3.0e38f : -1.0f;                // block 8: near FLT_MAX
  for (int i = 144; i < 160; ++i) v[i] = 0.75f;                                  // block 9: constant
  v[160 + 15] = -kNaN;                                                           // block 10: -NaN last
  v[176] = kNaN;                                                                 // block 11: NaN and Inf
  v[177] = kInf;
  // (F16 and BF16 turn some of these into Inf or 0: other degenerate blocks.)
  for (float g : {1.0f, 3.0e38f, 1e-3f}) expect_same(v, g, "degenerate");
}

// Global amaxes no real tensor has (zero, NaN, infinite, negative, tiny, around the window's own
// limit of 2^-100, huge): the reference's fallbacks and its float specials must be followed too.
TEST_P(Nvfp4SearchKernels, ForcedGlobalAmax) {
  std::mt19937 rng(4);
  std::vector<float> v;
  for (int b = 0; b < 40; ++b) {
    const std::vector<float> x = adversarial_block(rng, 0.5f);
    v.insert(v.end(), x.begin(), x.end());
  }
  v[16 * 3 + 2] = 1e-42f;
  for (float g : {0.0f, kNaN, -kNaN, kInf, -1.0f, 1e-40f, 0x1p-100f, 0x1p-101f, 1e-30f, 3.0e38f, 0.25f})
    expect_same(v, g, "forced global");
}

// Blocks far below the global amax: q0 subnormal or near it, the squared errors underflowing.
TEST_P(Nvfp4SearchKernels, SubnormalRangeBlocks) {
  std::mt19937 rng(9);
  std::normal_distribution<float> normal;
  std::vector<float> v(16 * 200);
  for (size_t b = 0; b < v.size() / 16; ++b) {
    const float unit = std::ldexp(1.0f, -static_cast<int>(b % 60) - 2);
    for (size_t i = 0; i < 16; ++i) v[16 * b + i] = normal(rng) * unit;
  }
  expect_same(v, 1.0f, "far below g", 3);
  expect_same(v, 0x1p-60f, "near g");
}

INSTANTIATE_TEST_SUITE_P(
    All, Nvfp4SearchKernels,
    ::testing::Combine(::testing::Values(Nvfp4ScaleMethod::Mse, Nvfp4ScaleMethod::FourOverSix),
                       ::testing::Values(DType::BF16, DType::F16, DType::F32)),
    [](const auto& param_info) {
      std::string name = std::string(scale_method_name(std::get<0>(param_info.param))) + "_" +
                         std::string(dtype_name(std::get<1>(param_info.param)));
      for (char& c : name)
        if (c == '-') c = '_';
      return name;
    });

// Every ISA's kernels on F32 blocks with global amax g: the reference's block amax bits, scale and
// packed bytes.
void expect_same_f32(const std::vector<float>& v, float g, Nvfp4ScaleMethod method) {
  const std::vector<uint8_t> bytes = testing::source_bytes(v, DType::F32);
  const FloatSpan src{bytes.data(), DType::F32, v.size()};
  const Nvfp4SearchScaling sc = nvfp4_search_scaling(g, method, Nvfp4Numerics::ModelOptCuda, DType::F32);
  std::vector<float> a1(v.size() / 16);
  std::vector<uint8_t> p1(v.size() / 2), s1(v.size() / 16);
  nvfp4_search_kernels(Isa::Scalar).block_amax(src, sc, a1.data());
  nvfp4_search_kernels(Isa::Scalar).quantize(src, sc, p1.data(), s1.data());
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(isa_name(isa));
    std::vector<float> a2(v.size() / 16);
    std::vector<uint8_t> p2(v.size() / 2), s2(v.size() / 16);
    nvfp4_search_kernels(isa).block_amax(src, sc, a2.data());
    EXPECT_TRUE(BytesEqual(testing::as_bytes_vec(a2), testing::as_bytes_vec(a1))) << scale_method_name(method);
    nvfp4_search_kernels(isa).quantize(src, sc, p2.data(), s2.data());
    EXPECT_TRUE(BytesEqual(s2, s1)) << scale_method_name(method);
    EXPECT_TRUE(BytesEqual(p2, p1)) << scale_method_name(method);
  }
}

// mse: mirrored pairs between neighbouring candidates; 2 and 4 kernel threads (BF16 and F32
// sources) sum them in other orders and choose differently on some blocks.
TEST(Nvfp4SearchKernelsOrder, MseNearTiesFollowTheKernelsSumOrder) {
  FP4KIT_REQUIRE_SIMD();
  std::mt19937 rng(77);
  const float g = 1.0f;
  const Nvfp4MseCandidates cand(g);
  std::vector<float> v;
  size_t order_decides = 0;
  for (int b = 0; b < 3000; ++b) {
    const int k = 20 + static_cast<int>(rng() % 100);
    const std::vector<float> x = mirrored_block(rng, cand.scale(k), cand.scale(k + 1), {6, 4, 3, 2, 1.5, 1, 0.5}, 0.0f);
    order_decides += mse_sweep(x.data(), cand, 2) != mse_sweep(x.data(), cand, 4);
    v.insert(v.end(), x.begin(), x.end());
  }
  EXPECT_GT(order_decides, 10u);
  expect_same_f32(v, g, Nvfp4ScaleMethod::Mse);
}

// four-over-six: the block amax at 6 and at 4 of two fake-quant scales 1.5 apart (E4M3 values
// whose 1.5 times is one too), mirrored pairs between their grids; a sequential sum instead of
// torch's pairwise one chooses differently on some blocks.
TEST(Nvfp4SearchKernelsOrder, FourOverSixNearTiesFollowTorchsSumOrder) {
  FP4KIT_REQUIRE_SIMD();
  std::mt19937 rng(78);
  const float g = 1.0f;  // the fake quant's factor is 1536: an amax v/256 gives the E4M3 value v
  const FourOverSixFakeScale fake_scale(g);
  std::vector<float> v;
  size_t order_decides = 0;
  for (int b = 0; b < 3000; ++b) {
    const float mantissa[] = {1.0f, 1.25f, 1.5f};
    const float amax = std::ldexp(mantissa[rng() % 3], static_cast<int>(rng() % 12) - 14);
    const float s6 = fake_scale(amax), s4 = fake_scale(amax * 1.5f);
    // E2M1 0.5 at s4 lies between 0.5 and 1 at s6: pairs between 0.5*s6 and 0.5*s4.
    const std::vector<float> x = mirrored_block(rng, s6, s4, {0.5f}, amax);
    float seq6 = 0.0f, seq4 = 0.0f;
    for (int i = 0; i < 16; ++i) {  // each element's squared error alone, summed in order
      float one[16] = {};
      one[i] = x[i];
      seq6 += four_over_six_block_loss(one, s6);
      seq4 += four_over_six_block_loss(one, s4);
    }
    const bool pairwise = four_over_six_prefers_four(four_over_six_block_loss(x.data(), s6),
                                                     four_over_six_block_loss(x.data(), s4));
    order_decides += pairwise != four_over_six_prefers_four(seq6, seq4);
    v.insert(v.end(), x.begin(), x.end());
  }
  EXPECT_GT(order_decides, 10u);
  expect_same_f32(v, g, Nvfp4ScaleMethod::FourOverSix);
}

// The whole-tensor quantizer gives the same bytes on every ISA and any thread count.
TEST(Nvfp4SearchQuantizer, SameBytesOnEveryIsaAndThreadCount) {
  FP4KIT_REQUIRE_SIMD();
  std::mt19937 rng(12);
  std::normal_distribution<float> normal;
  std::vector<float> v(16 * 5000 + 16 * 37);
  for (float& e : v) e = normal(rng) * 0.02f;
  const std::vector<uint8_t> bytes = testing::source_bytes(v, DType::BF16);
  const FloatSpan src{bytes.data(), DType::BF16, v.size()};
  for (Nvfp4ScaleMethod m : {Nvfp4ScaleMethod::Mse, Nvfp4ScaleMethod::FourOverSix}) {
    const Nvfp4SearchScaling sc = nvfp4_search_scaling(amax_of(v), m, Nvfp4Numerics::ModelOptCuda, DType::BF16);
    const Nvfp4Tensor ref = quantize_nvfp4_searched(src, sc, 1, Isa::Scalar);
    for (Isa isa : simd_isas())
      for (unsigned threads : {1u, 3u}) {
        const Nvfp4Tensor fast = quantize_nvfp4_searched(src, sc, threads, isa);
        EXPECT_TRUE(BytesEqual(fast.packed, ref.packed)) << scale_method_name(m) << " " << threads << " " << isa_name(isa);
        EXPECT_TRUE(BytesEqual(fast.scales, ref.scales)) << scale_method_name(m) << " " << threads << " " << isa_name(isa);
      }
  }
}

}  // namespace
}  // namespace fp4kit
