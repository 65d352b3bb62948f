// The division-free NVFP4 block scale (formats/nvfp4_scale_steps.h) against the reference's
// nvfp4_block_scale: around every step, across the whole finite range on a stride, and at random,
// for tensor scalings of all three numerics and for edge global scales.
#include "formats/nvfp4_scale_steps.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace fp4kit {
namespace {

constexpr uint32_t kMaxFinite = 0x7F7FFFFFu;

// Compares the steps with the reference on the given bits; returns the count of mismatches.
uint64_t mismatches(const Nvfp4Scaling& sc, const Nvfp4ScaleSteps& t, const std::vector<uint32_t>& bits,
                    const std::string& label) {
  uint64_t wrong = 0;
  for (uint32_t u : bits) {
    if (u > kMaxFinite) continue;
    const uint8_t want = nvfp4_block_scale(std::bit_cast<float>(u), sc);
    const uint8_t got = nvfp4_scale_from_steps(t, u);
    if (got != want && wrong++ < 3)
      ADD_FAILURE() << label << ": amax bits 0x" << std::hex << u << " (" << std::bit_cast<float>(u) << "): byte 0x"
                    << int{got} << ", reference 0x" << int{want};
  }
  return wrong;
}

void check_scaling(const Nvfp4Scaling& sc, const std::string& label, bool must_be_usable, int random = 20000,
                   uint32_t stride = 65521) {
  const Nvfp4ScaleSteps t = nvfp4_scale_steps(sc);
  if (must_be_usable) {
    EXPECT_TRUE(t.usable) << label;
  }
  if (!t.usable) return;
  std::vector<uint32_t> bits;
  // Every step and 64 patterns either side (each step is a change of one byte, so a step off by one
  // pattern shows here).
  for (uint32_t s : nvfp4_scale_step_bits(t))
    for (int d = -64; d <= 64; ++d)
      if (static_cast<int64_t>(s) + d >= 0) bits.push_back(static_cast<uint32_t>(static_cast<int64_t>(s) + d));
  // The whole finite range on an odd stride, its ends, and random patterns.
  for (uint64_t u = 0; u <= kMaxFinite; u += stride) bits.push_back(static_cast<uint32_t>(u));
  for (uint32_t u : {0u, 1u, 2u, 0x00800000u, 0x007FFFFFu, kMaxFinite, kMaxFinite - 1})
    bits.push_back(u);
  std::mt19937 rng(static_cast<uint32_t>(std::hash<std::string>{}(label)));
  std::uniform_int_distribution<uint32_t> any(0, kMaxFinite);
  for (int i = 0; i < random; ++i) bits.push_back(any(rng));
  EXPECT_EQ(mismatches(sc, t, bits, label), 0u) << label;
}

const Nvfp4Numerics kNumerics[] = {Nvfp4Numerics::ModelOpt, Nvfp4Numerics::ModelOptCuda,
                                   Nvfp4Numerics::CompressedTensors};

std::string label_of(const Nvfp4Scaling& sc, const std::string& what) {
  return std::string(numerics_name(sc.numerics)) + " " + std::string(dtype_name(sc.source)) + " " + what;
}

TEST(Nvfp4ScaleSteps, MatchTheReferenceForTensorScalings) {
  for (DType source : {DType::BF16, DType::F16, DType::F32})
    for (Nvfp4Numerics numerics : kNumerics)
      for (float amax : {1.0f, 0.0371f, 2688.0f, 11.37f, 1e-3f, 3.1e4f, 0.5f}) {
        const Nvfp4Scaling sc = nvfp4_scaling(amax, numerics, source);
        // Ordinary tensors must take the fast path, or the kernel silently keeps the slow one. But
        // compressed-tensors rounds amax/6 to F16, whose subnormals put dozens of irregular steps
        // below the periodic ones: those tensors keep the reference's arithmetic.
        const bool f16_rounding = source == DType::F16 && numerics == Nvfp4Numerics::CompressedTensors;
        check_scaling(sc, label_of(sc, "tensor amax " + std::to_string(amax)), !f16_rounding);
      }
}

TEST(Nvfp4ScaleSteps, MatchTheReferenceForEdgeGlobalScales) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> exponent(-120.0f, 120.0f);
  std::vector<float> globals = {1.0f,      0.25f,    0.5f,     2.0f,           1.0f / 448.0f, 0x1p-126f,
                                0x1p-149f, 0x1p100f, 0x1p-100f, 0x1.fffffep127f, 1e-30f,        3e30f,
                                5.6e-45f,  448.0f,   1.0f / 6.0f, 1.5f / 2688.0f};
  for (int i = 0; i < 12; ++i) globals.push_back(std::exp2(exponent(rng)));
  for (DType source : {DType::BF16, DType::F16, DType::F32})
    for (Nvfp4Numerics numerics : kNumerics)
      for (float g : globals) {
        const Nvfp4Scaling sc{numerics, g, source};
        check_scaling(sc, label_of(sc, "global " + std::to_string(g)), false);
      }
}

// Global scales on a grid of binades and mantissas: ModelOpt's zero block takes 1.0's byte, which the
// blocks of amax near 6 * global take again, so the zero prefix is found by its own rule, not by the
// byte (a bisection on the byte went wrong at global 0.25).
TEST(Nvfp4ScaleSteps, MatchTheReferenceOverAGridOfGlobalScales) {
  int usable = 0, scalings = 0;
  for (DType source : {DType::BF16, DType::F16, DType::F32})
    for (Nvfp4Numerics numerics : kNumerics)
      for (int e = -40; e <= 40; e += 3)
        for (float m : {1.0f, 1.25f, 1.5f, 1.75f, 1.3f}) {
          const Nvfp4Scaling sc{numerics, std::ldexp(m, e), source};
          check_scaling(sc, label_of(sc, "global " + std::to_string(sc.global)), false, 2000, 1048573);
          usable += nvfp4_scale_steps(sc).usable ? 1 : 0;
          ++scalings;
        }
  // Most of them take the fast path (compressed-tensors over F16 and extreme globals may not).
  EXPECT_GE(usable, scalings * 3 / 4);
}

TEST(Nvfp4ScaleSteps, GlobalScalesThatAreNotFinitePositiveAreNotUsable) {
  for (Nvfp4Numerics numerics : kNumerics)
    for (float g : {0.0f, -1.0f, std::nanf(""), INFINITY, -0.0f})
      EXPECT_FALSE(nvfp4_scale_steps(Nvfp4Scaling{numerics, g, DType::BF16}).usable) << g;
}

}  // namespace
}  // namespace fp4kit
