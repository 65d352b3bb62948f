// The quantize kernel's branch-free E2M1 code (cuda/exact/e2m1_off_midpoints.h) against E2M1's own
// rounding, on the CPU: wherever the kernel takes it, it must give E2M1::magnitude_code.
#include "cuda/exact/e2m1_off_midpoints.h"

#include <gtest/gtest.h>

#include <bit>
#include <cstdint>

#include "formats/e2m1.h"

namespace fp4kit::cuda {
namespace {

// The code for bits u, checked where the product decides it; counts the checked and the refused.
struct Checker {
  uint64_t checked = 0, refused = 0, wrong = 0;
  uint32_t first_wrong = 0;
  void operator()(uint32_t u) {
    if (!e2m1_product_decides(u)) {
      ++refused;
      return;
    }
    ++checked;
    const uint32_t want = E2M1::magnitude_code(std::bit_cast<float>(u));
    if (e2m1_code_off_midpoints(u) != want && wrong++ == 0) first_wrong = u;
  }
};

TEST(E2m1OffMidpoints, EqualsE2m1RoundingNextToEveryMidpointAndBinadeEdge) {
  Checker c;
  // Every float whose low 21 bits are zero (the midpoints among them) and 300 bit-steps either side.
  for (uint32_t top = 0; top < (0x7F800000u >> 21); ++top)
    for (int d = -300; d <= 300; ++d) c(static_cast<uint32_t>(static_cast<int64_t>(top << 21) + d) & 0x7FFFFFFFu);
  EXPECT_EQ(c.wrong, 0u) << "first at bits 0x" << std::hex << c.first_wrong;
  EXPECT_GT(c.checked, 500000u);
  // Exactly 11 of each 2^21 steps are refused inside the range, one ±5 window per such float.
  EXPECT_GT(c.refused, 11u * (0x71800000u >> 21));
}

TEST(E2m1OffMidpoints, EqualsE2m1RoundingOnAStrideOfAllFloats) {
  Checker c;
  for (uint64_t u = 0; u < 0x80000000u; u += 61) c(static_cast<uint32_t>(u));
  EXPECT_EQ(c.wrong, 0u) << "first at bits 0x" << std::hex << c.first_wrong;
  EXPECT_GT(c.checked, 30000000u);
}

TEST(E2m1OffMidpoints, RefusesWhatItCannotDecide) {
  // Zero, subnormals, tiny normals, the top binade, Inf and NaN take the division.
  for (uint32_t u : {0u, 1u, 0x007FFFFFu, 0x00800000u, 0x0D7FFFFFu, 0x7F000000u, 0x7F7FFFFFu, 0x7F800000u, 0x7FC00000u})
    EXPECT_FALSE(e2m1_product_decides(u)) << std::hex << u;
  // Every midpoint and its ±5 neighbours; 6 steps away the product decides: midpoint i (in
  // increasing order) has code i just below it and i + 1 just above.
  const float midpoints[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
  for (uint32_t i = 0; i < 7; ++i) {
    const uint32_t b = std::bit_cast<uint32_t>(midpoints[i]);
    for (uint32_t d = 0; d <= 5; ++d) {
      EXPECT_FALSE(e2m1_product_decides(b + d)) << midpoints[i] << " +" << d;
      EXPECT_FALSE(e2m1_product_decides(b - d)) << midpoints[i] << " -" << d;
    }
    EXPECT_TRUE(e2m1_product_decides(b - 6) && e2m1_product_decides(b + 6)) << midpoints[i];
    EXPECT_EQ(e2m1_code_off_midpoints(b - 6), i) << midpoints[i];
    EXPECT_EQ(e2m1_code_off_midpoints(b + 6), i + 1) << midpoints[i];
  }
}

}  // namespace
}  // namespace fp4kit::cuda
