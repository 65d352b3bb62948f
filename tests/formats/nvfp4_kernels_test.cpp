// NVFP4 fast paths against the scalar reference, byte for byte, on random and adversarial data.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "convert/nvfp4_quantizer.h"
#include "formats/bf16.h"
#include "formats/e4m3.h"
#include "formats/f16.h"
#include "formats/nvfp4.h"
#include "formats/nvfp4_scale_search.h"
#include "isa_cases.h"
#include "oracle_file.h"
#include "source_bytes.h"

namespace fp4kit {
namespace {

using testing::as_bytes_vec;
using testing::BytesEqual;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Storage bytes of `values` in `dtype`.
std::vector<uint8_t> encode(const std::vector<float>& values, DType dtype) { return testing::source_bytes(values, dtype); }

// Values that sit on and next to every decision boundary once divided by a power-of-two scale.
std::vector<float> adversarial_values(std::mt19937& rng, size_t n) {
  const float specials[] = {0.0f, -0.0f, kInf, -kInf, 1e-30f, -1e-30f, 1e-45f, 0x1p-126f, 0x1p-133f, 65504.0f,
                            3.0e38f, -3.0e38f, 448.0f, 464.0f, 480.0f, 6.0f, 5.0f, 3.5f, 2.5f, 1.75f, 1.25f, 0.75f, 0.25f};
  const float bounds[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 6.0f};
  std::vector<float> v(n);
  std::uniform_int_distribution<int> pick(0, 9), exp(-20, 20);
  std::normal_distribution<float> normal;
  for (size_t i = 0; i < n; ++i) {
    switch (pick(rng)) {
      case 0: v[i] = specials[rng() % std::size(specials)]; break;
      case 1: case 2: {
        float b = bounds[rng() % std::size(bounds)] * std::ldexp(1.0f, exp(rng) / 4);
        const int nudge = static_cast<int>(rng() % 3) - 1;
        b = std::nextafter(b, nudge > 0 ? kInf : (nudge < 0 ? 0.0f : b));
        v[i] = (rng() & 1) ? -b : b;
        break;
      }
      case 3: v[i] = 0.0f; break;
      default: v[i] = normal(rng) * std::ldexp(1.0f, exp(rng)); break;
    }
  }
  return v;
}

// Every ISA's kernels against the reference's on `values` (stored `offset` elements into a buffer,
// to try unaligned data).
void expect_same_quantize(const std::vector<float>& values, DType dtype, Nvfp4Numerics numerics,
                          const char* what, std::optional<float> global = std::nullopt, size_t offset = 0) {
  std::vector<float> stored(offset, 1.0f);
  stored.insert(stored.end(), values.begin(), values.end());
  const std::vector<uint8_t> bytes = encode(stored, dtype);
  const FloatSpan src = FloatSpan{bytes.data(), dtype, stored.size()}.subspan(offset, values.size());
  const auto& ref = nvfp4_kernels(Isa::Scalar);
  const float amax_ref = ref.amax(src);
  Nvfp4Scaling sc = nvfp4_scaling(amax_ref, numerics, dtype);
  if (global) sc.global = *global;
  const size_t n = values.size() / 16 * 16;
  const FloatSpan body = src.subspan(0, n);
  std::vector<uint8_t> p1(n / 2), s1(n / 16), pw(n / 2);
  std::vector<float> d1(n);
  ref.quantize(body, sc, p1.data(), s1.data());
  ref.dequantize(p1.data(), s1.data(), n, sc, d1.data());
  ref.quantize_with_scales(body, s1.data(), sc, pw.data());
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(::testing::Message() << isa_name(isa) << " n=" << values.size() << " offset=" << offset);
    const auto& fast = nvfp4_kernels(isa);
    EXPECT_EQ(f32_bits(amax_ref), f32_bits(fast.amax(src))) << what;
    std::vector<uint8_t> p2(n / 2, 0xAA), s2(n / 16, 0xAA);
    fast.quantize(body, sc, p2.data(), s2.data());
    EXPECT_TRUE(BytesEqual(s2, s1)) << what << " scales, " << numerics_name(numerics) << " " << dtype_name(dtype);
    EXPECT_TRUE(BytesEqual(p2, p1)) << what << " packed, " << numerics_name(numerics) << " " << dtype_name(dtype);
    std::vector<float> d2(n);
    fast.dequantize(p1.data(), s1.data(), n, sc, d2.data());
    EXPECT_TRUE(BytesEqual(as_bytes_vec(d2), as_bytes_vec(d1))) << what << " dequant";
    std::fill(p2.begin(), p2.end(), 0xAA);
    fast.quantize_with_scales(body, s1.data(), sc, p2.data());
    EXPECT_TRUE(BytesEqual(p2, pw)) << what << " quantize_with_scales";
  }
}

class Nvfp4Kernels : public ::testing::TestWithParam<std::tuple<Nvfp4Numerics, DType>> {
 protected:
  void SetUp() override { FP4KIT_REQUIRE_SIMD(); }
};

TEST_P(Nvfp4Kernels, RandomRealisticWeights) {
  auto [numerics, dtype] = GetParam();
  std::mt19937 rng(1);
  for (int trial = 0; trial < 8; ++trial) {
    std::student_t_distribution<float> t(3.0f);
    const size_t n = 16 * (1 + rng() % 700);  // ragged: not a multiple of the 128-element chunk
    std::vector<float> v(n);
    const float scale = std::ldexp(1.0f, static_cast<int>(rng() % 30) - 20);
    for (auto& x : v) x = t(rng) * scale;
    expect_same_quantize(v, dtype, numerics, "student-t");
  }
}

TEST_P(Nvfp4Kernels, AdversarialValues) {
  auto [numerics, dtype] = GetParam();
  std::mt19937 rng(2);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> v = adversarial_values(rng, 16 * (1 + rng() % 300));
    for (auto& x : v)  // keep F16 inputs finite where the trial wants finite data
      if (dtype == DType::F16 && std::fabs(x) > 65504.0f && trial % 2) x = 0.0f;
    expect_same_quantize(v, dtype, numerics, "adversarial");
  }
}

TEST_P(Nvfp4Kernels, NanZeroAndDegenerateTensors) {
  auto [numerics, dtype] = GetParam();
  std::mt19937 rng(3);
  std::vector<float> v = adversarial_values(rng, 16 * 40);
  v[100] = kNaN;
  v[300] = -kNaN;
  expect_same_quantize(v, dtype, numerics, "with NaN");
  expect_same_quantize(std::vector<float>(16 * 20, 0.0f), dtype, numerics, "all zero");
  expect_same_quantize(std::vector<float>(16 * 20, -0.0f), dtype, numerics, "all -0");
  std::vector<float> single(16 * 17, 0.0f);
  single[16 * 9 + 3] = -1e-3f;
  expect_same_quantize(single, dtype, numerics, "single nonzero");
}

// Every tail a chunk of 4, 8 or 16 blocks (and amax's 8 to 32 elements) can leave, with NaN and
// infinities near the ends, on data that starts off the vector alignment.
TEST_P(Nvfp4Kernels, RaggedSizesAndUnalignedData) {
  auto [numerics, dtype] = GetParam();
  std::mt19937 rng(6);
  for (size_t blocks = 1; blocks <= 40; ++blocks) {
    std::vector<float> v = adversarial_values(rng, 16 * blocks + blocks % 16);  // amax sees a ragged tail
    for (auto& x : v)
      if (dtype == DType::F16 && std::fabs(x) > 65504.0f) x = 0.0f;
    const size_t offset = blocks % 4;
    expect_same_quantize(v, dtype, numerics, "ragged", std::nullopt, offset);
    if (blocks % 5 == 0) v[v.size() - 1 - blocks % 3] = kNaN;  // NaN in the tail or the last block
    if (blocks % 7 == 0) v[16 * (blocks - 1)] = -kInf;
    expect_same_quantize(v, dtype, numerics, "ragged, special values", std::nullopt, offset);
  }
}

TEST_P(Nvfp4Kernels, ForcedGlobalScales) {
  auto [numerics, dtype] = GetParam();
  std::mt19937 rng(4);
  const std::vector<float> v = adversarial_values(rng, 16 * 64);
  for (float g : {0.0f, -1.0f, kNaN, kInf, 1e-40f, 1e-30f, 1e30f, 3.0e38f, 0x1p-8f, 1.0f})
    expect_same_quantize(v, dtype, numerics, "forced global", g);
}

INSTANTIATE_TEST_SUITE_P(
    All, Nvfp4Kernels,
    ::testing::Combine(::testing::Values(Nvfp4Numerics::ModelOpt, Nvfp4Numerics::ModelOptCuda, Nvfp4Numerics::CompressedTensors),
                       ::testing::Values(DType::BF16, DType::F16, DType::F32)),
    [](const auto& param_info) {
      std::string n(numerics_name(std::get<0>(param_info.param)));
      for (auto& c : n)
        if (c == '-') c = '_';
      return n + "_" + std::string(dtype_name(std::get<1>(param_info.param)));
    });

// The vector E4M3 encoder sees every block amax the scale arithmetic can produce: sweep block
// maxima across the whole E4M3 range, one ulp either side of each code's rounding boundaries.
TEST(Nvfp4KernelsScales, EveryE4M3BoundaryThroughTheVectorPath) {
  FP4KIT_REQUIRE_SIMD();
  std::vector<float> block_amax;
  for (int code = 0; code < 0x7F; ++code) {
    const float lo = E4M3{static_cast<uint8_t>(code)}.to_float();
    const float hi = E4M3{static_cast<uint8_t>(code + 1)}.to_float();
    const float mid = code + 1 < 0x7F ? (lo + hi) / 2 : 464.0f;
    for (float m : {lo, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, kInf)}) block_amax.push_back(m);
  }
  // With wsf2 = 1/6 the block scale is amax_b / 1: each value above is tried as a scale.
  std::vector<float> v(block_amax.size() * 16, 0.0f);
  for (size_t b = 0; b < block_amax.size(); ++b) {
    v[b * 16] = block_amax[b];
    v[b * 16 + 5] = -block_amax[b] / 3.0f;
  }
  for (auto numerics : {Nvfp4Numerics::ModelOpt, Nvfp4Numerics::CompressedTensors})
    expect_same_quantize(v, DType::F32, numerics, "e4m3 boundaries", numerics == Nvfp4Numerics::ModelOpt ? 1.0f / 6.0f : 6.0f);
}

// The comparisons above mean something only where an ISA runs code of its own.
TEST(Nvfp4KernelsIsa, EverySimdIsaHasVectorKernels) {
  FP4KIT_REQUIRE_SIMD();
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(isa_name(isa));
    EXPECT_NE(nvfp4_kernels(isa).quantize, nvfp4_kernels(Isa::Scalar).quantize);
    EXPECT_NE(nvfp4_kernels(isa).dequantize, nvfp4_kernels(Isa::Scalar).dequantize);
    EXPECT_NE(nvfp4_search_kernels(isa).block_amax, nvfp4_search_kernels(Isa::Scalar).block_amax);
  }
}

TEST(Nvfp4KernelsDequant, EveryScaleAndCodeByte) {
  FP4KIT_REQUIRE_SIMD();
  for (size_t blocks : {size_t{256 * 2}, size_t{256 * 8}}) {  // (the larger through a table of the scales)
    std::vector<uint8_t> packed(blocks * 8), scales(blocks);
    for (size_t b = 0; b < blocks; ++b) {
      scales[b] = static_cast<uint8_t>(b);
      for (size_t j = 0; j < 8; ++j) packed[b * 8 + j] = static_cast<uint8_t>(b * 8 + j + (b % 512 >= 256 ? 128 : 0));
    }
    for (auto numerics : {Nvfp4Numerics::ModelOpt, Nvfp4Numerics::CompressedTensors}) {
      const Nvfp4Scaling sc{numerics, 0.0123f, DType::BF16};
      std::vector<float> d1(blocks * 16);
      nvfp4_kernels(Isa::Scalar).dequantize(packed.data(), scales.data(), blocks * 16, sc, d1.data());
      for (Isa isa : simd_isas()) {
        std::vector<float> d2(blocks * 16);
        nvfp4_kernels(isa).dequantize(packed.data(), scales.data(), blocks * 16, sc, d2.data());
        EXPECT_TRUE(BytesEqual(as_bytes_vec(d2), as_bytes_vec(d1)))
            << numerics_name(numerics) << " " << isa_name(isa) << " " << blocks << " blocks";
      }
    }
  }
}

TEST(Nvfp4Quantizer, BytesDoNotDependOnThreadCount) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  std::vector<float> v((size_t{1} << 20) + 16 * 37);
  for (auto& x : v) x = normal(rng);
  const auto bytes = encode(v, DType::BF16);
  const FloatSpan src{bytes.data(), DType::BF16, v.size()};
  const float a1 = parallel_amax(src, 1), a7 = parallel_amax(src, 7);
  EXPECT_EQ(f32_bits(a1), f32_bits(a7));
  const Nvfp4Scaling sc = nvfp4_scaling(a1, Nvfp4Numerics::ModelOpt, DType::BF16);
  const Nvfp4Tensor q1 = quantize_nvfp4(src, sc, 1), q7 = quantize_nvfp4(src, sc, 7);
  EXPECT_EQ(q1.packed, q7.packed);
  EXPECT_EQ(q1.scales, q7.scales);
  const Nvfp4Tensor qs = quantize_nvfp4(src, sc, 3, Isa::Scalar);
  EXPECT_EQ(q1.packed, qs.packed);
  EXPECT_EQ(q1.scales, qs.scales);
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(isa_name(isa));
    EXPECT_EQ(f32_bits(parallel_amax(src, 5, isa)), f32_bits(a1));
    const Nvfp4Tensor qi = quantize_nvfp4(src, sc, 5, isa);
    EXPECT_EQ(qi.packed, qs.packed);
    EXPECT_EQ(qi.scales, qs.scales);
  }
}

}  // namespace
}  // namespace fp4kit
