// The division-free NVFP4 codes of 16-bit sources (formats/nvfp4_code_thresholds.h) against the
// reference's division: every finite pattern, both signs, under every scale byte the tables cover.
#include "formats/nvfp4_code_thresholds.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "formats/bf16.h"
#include "formats/e2m1.h"
#include "formats/f16.h"

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
  EXPECT_FALSE(nvfp4_code_thresholds(Nvfp4Scaling{}, DType::F32).covers(0x38));
}

}  // namespace
}  // namespace fp4kit
