// The division-free NVFP4 codes (formats/nvfp4_code_thresholds.h) against the reference's division:
// for 16-bit sources every finite pattern, both signs, under every scale byte the tables cover; for
// F32 the patterns around every threshold and random ones.
#include "formats/nvfp4_code_thresholds.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>

#include "formats/bf16.h"
#include "formats/e2m1.h"
#include "formats/f16.h"
#include "formats/float_bits.h"

namespace fp4kit {
namespace {

float source_value(uint16_t bits, DType source) {
  return source == DType::BF16 ? BF16{bits}.to_float() : F16{bits}.to_float();
}

// Checks every finite pattern under every covered byte; returns how many bytes are covered.
int check_every_pattern(const Nvfp4Scaling& sc, DType source, const std::string& label) {
  const Nvfp4CodeThresholds t = nvfp4_code_thresholds(sc, source);
  const uint16_t exp_mask = source == DType::BF16 ? 0x7F80 : 0x7C00;
  int covered = 0;
  for (int b = 0; b < 256; ++b) {
    if (!t.covers(static_cast<uint8_t>(b))) continue;
    ++covered;
    const float divisor = nvfp4_quant_divisor(static_cast<uint8_t>(b), sc);
    uint64_t wrong = 0;
    uint32_t first_wrong = 0;
    for (uint32_t x = 0; x < 0x10000; ++x) {
      if ((x & exp_mask) == exp_mask) continue;  // Inf and NaN: never on this path
      const uint8_t want = E2M1::from_float(source_value(static_cast<uint16_t>(x), source) / divisor).bits;
      if (nvfp4_code_from_thresholds(t, static_cast<uint16_t>(x), static_cast<uint8_t>(b)) != want && wrong++ == 0)
        first_wrong = x;
    }
    EXPECT_EQ(wrong, 0u) << label << ": scale byte " << b << ", first wrong pattern 0x" << std::hex << first_wrong;
  }
  return covered;
}

const Nvfp4Numerics kNumerics[] = {Nvfp4Numerics::ModelOpt, Nvfp4Numerics::ModelOptCuda,
                                   Nvfp4Numerics::CompressedTensors};

TEST(Nvfp4CodeThresholds, EveryPatternUnderEveryCoveredByteOfTensorScalings) {
  for (DType source : {DType::BF16, DType::F16}) {
    for (Nvfp4Numerics numerics : kNumerics) {
      for (float amax : {1.0f, 0.0371f, 2688.0f, 11.37f}) {
        const Nvfp4Scaling sc = nvfp4_scaling(amax, numerics, source);
        const std::string label = std::string(dtype_name(source)) + " " + std::string(numerics_name(numerics)) +
                                  " amax " + std::to_string(amax);
        // Ordinary tensors: BF16 covers every normal scale byte (0x08 … 0x7E); F16's narrow range
        // covers at least the top 38, where a tensor's largest blocks land.
        const int covered = check_every_pattern(sc, source, label);
        EXPECT_GE(covered, source == DType::BF16 ? 0x7E - 0x08 + 1 : 38) << label;
        EXPECT_TRUE(nvfp4_code_thresholds(sc, source).covers(0x7E)) << label;
      }
    }
  }
}

// Global scales at the edges (tiny, huge, a power of two, a full significand): whatever is covered
// is exact, and a scaling whose divisors are not normal covers nothing.
TEST(Nvfp4CodeThresholds, EdgeGlobalScalesAreExactWhereCovered) {
  for (DType source : {DType::BF16, DType::F16}) {
    for (Nvfp4Numerics numerics : kNumerics) {
      for (float global : {0x1p-120f, 0x1p-30f, 1.0f, 0.7853981f, 0x1p20f, 0x1p100f}) {
        const Nvfp4Scaling sc{numerics, global, source};
        check_every_pattern(sc, source, std::string(dtype_name(source)) + " global " + std::to_string(global));
      }
    }
    const Nvfp4Scaling nan{Nvfp4Numerics::ModelOpt, std::nanf(""), source};
    EXPECT_EQ(check_every_pattern(nan, source, "NaN global"), 0);
    const Nvfp4Scaling zero{Nvfp4Numerics::ModelOpt, 0.0f, source};
    EXPECT_EQ(check_every_pattern(zero, source, "zero global"), 0);
  }
}

// F32: under every covered byte, the 7 patterns on either side of every shifted threshold (where the
// code changes) and of the sign's threshold (below it a negative x divides to -0), the least
// subnormals, and 4096 random finite patterns; returns how many bytes are covered.
int check_f32_patterns(const Nvfp4Scaling& sc, const std::string& label) {
  const Nvfp4CodeThresholds t = nvfp4_code_thresholds(sc, DType::F32);
  std::mt19937 rng(7);
  int covered = 0;
  for (int b = 0; b < 256; ++b) {
    if (!t.covers(static_cast<uint8_t>(b))) continue;
    ++covered;
    const float divisor = nvfp4_quant_divisor(static_cast<uint8_t>(b), sc);
    const int64_t n = (b >> 3) - t.base_exponent;
    std::vector<uint32_t> xs;
    for (int k = 0; k < Nvfp4CodeThresholds::kThresholds; ++k)
      for (int64_t d = -7; d <= 7; ++d) xs.push_back(static_cast<uint32_t>(int64_t{t.first[b & 7][k]} + (n << 23) + d));
    for (int64_t d = -7; d <= 7; ++d) xs.push_back(static_cast<uint32_t>(std::max<int64_t>(0, int64_t{t.sign_first[b]} + d)));
    for (uint32_t x = 0; x < 64; ++x) xs.push_back(x);  // subnormals, 0 and -0
    for (int i = 0; i < 4096; ++i) xs.push_back(static_cast<uint32_t>(rng()) % 0x7F800000u);
    uint64_t wrong = 0;
    uint32_t first_wrong = 0;
    for (uint32_t m : xs)
      for (uint32_t x : {m, m | 0x80000000u}) {
        const uint8_t want = E2M1::from_float(f32_from_bits(x) / divisor).bits;
        if (nvfp4_code_from_thresholds(t, x, static_cast<uint8_t>(b)) != want && wrong++ == 0) first_wrong = x;
      }
    EXPECT_EQ(wrong, 0u) << label << ": scale byte " << b << ", first wrong pattern 0x" << std::hex << first_wrong;
  }
  return covered;
}

TEST(Nvfp4CodeThresholds, F32AroundEveryThresholdAndRandom) {
  for (Nvfp4Numerics numerics : kNumerics) {
    for (float amax : {1.0f, 0.0371f, 2688.0f, 11.37f, 1e-30f, 3e37f}) {
      const Nvfp4Scaling sc = nvfp4_scaling(amax, numerics, DType::F32);
      const std::string label = std::string(numerics_name(numerics)) + " amax " + std::to_string(amax);
      EXPECT_EQ(check_f32_patterns(sc, label), 0x7E - 0x08 + 1) << label;  // every normal byte
    }
    for (float global : {0x1p-120f, 0.7853981f, 0x1p100f})
      check_f32_patterns(Nvfp4Scaling{numerics, global, DType::F32}, "global " + std::to_string(global));
  }
}

}  // namespace
}  // namespace fp4kit
