// The element codecs (E2M1, E4M3, E8M0, BF16, F16) against independent expectations: literal
// values, ldexp formulas and nearest-ties-to-even searches over the value grids.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "formats/bf16.h"
#include "formats/e2m1.h"
#include "formats/e4m3.h"
#include "formats/e8m0.h"
#include "formats/f16.h"
#include "formats/float_bits.h"

namespace fp4kit {
namespace {

const float kInf = std::numeric_limits<float>::infinity();
const float kNaN = std::numeric_limits<float>::quiet_NaN();

// Index of the grid value nearest to x (grid ascending, x >= 0), ties to the even index.
size_t nearest_even(const std::vector<double>& grid, double x) {
  size_t best = 0;
  for (size_t i = 1; i < grid.size(); ++i) {
    const double d = std::fabs(grid[i] - x), db = std::fabs(grid[best] - x);
    if (d < db || (d == db && i % 2 == 0)) best = i;
  }
  return best;
}

// ---- E2M1 -----------------------------------------------------------------------------------

TEST(CodecE2M1Test, FromFloatLiterals) {
  const float in[] = {.25f, .75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 5.0001f, 6.0f, 7.0f, -.1f, -0.0f, .2500001f, kNaN};
  const uint8_t want[] = {0, 2, 2, 4, 4, 6, 6, 7, 7, 7, 8, 0, 1, 7};
  for (size_t i = 0; i < std::size(in); ++i) EXPECT_EQ(want[i], E2M1::from_float(in[i]).bits) << "input " << in[i];
  EXPECT_EQ(7, E2M1::from_float(kInf).bits);
  EXPECT_EQ(15, E2M1::from_float(-kInf).bits);
  EXPECT_EQ(7, E2M1::from_float(-kNaN).bits);
  EXPECT_EQ(0, E2M1::from_float(0.0f).bits);
  EXPECT_EQ(15, E2M1::from_float(-6.0f).bits);
  EXPECT_EQ(9, E2M1::from_float(-0.5f).bits);
  EXPECT_EQ(8, E2M1::from_float(-0.25f).bits);  // negative, rounds to zero: sign kept
}

TEST(CodecE2M1Test, FromFloatMatchesNearestEvenSearch) {
  const std::vector<double> grid = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  auto check = [&](float x) {
    const uint8_t want = static_cast<uint8_t>(nearest_even(grid, x));
    ASSERT_EQ(want, E2M1::from_float(x).bits) << "x=" << x;
    ASSERT_EQ(want | 0x8, E2M1::from_float(-x).bits) << "x=-" << x;  // x > 0 here
  };
  for (uint32_t u = f32_bits(0x1p-20f); u <= f32_bits(16.0f); u += 1u << 10) check(f32_from_bits(u));
  for (size_t i = 0; i + 1 < grid.size(); ++i) {
    const float mid = static_cast<float>((grid[i] + grid[i + 1]) / 2);
    check(mid);
    check(std::nextafter(mid, 0.0f));
    check(std::nextafter(mid, kInf));
  }
}

TEST(CodecE2M1Test, ValuesAndPacking) {
  const double want[] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  for (uint8_t c = 0; c < 16; ++c) {
    const double v = (c & 8) ? -want[c & 7] : want[c & 7];
    EXPECT_EQ(v, E2M1{c}.to_float());
    EXPECT_EQ(v, E2M1::kDeepSeekValues[c]);
    EXPECT_EQ(c == 8 ? 0 : c, E2M1::from_float(E2M1{c}.to_float()).bits) << int(c);  // -0.0 -> 0x0
  }
  EXPECT_FALSE(std::signbit(E2M1::kDeepSeekValues[8]));  // DeepSeek's FP4_TABLE: +0.0
  // even index in the low nibble
  EXPECT_EQ(0xA1, pack_e2m1(E2M1{0x1}, E2M1{0xA}));
  EXPECT_EQ(0x0F, pack_e2m1(E2M1{0xF}, E2M1{0x0}));
  EXPECT_EQ(0x1, unpack_e2m1(0xA1, 0).bits);
  EXPECT_EQ(0xA, unpack_e2m1(0xA1, 1).bits);
  EXPECT_EQ(0x1, unpack_e2m1(0xA1, 6).bits);
  EXPECT_EQ(0xA, unpack_e2m1(0xA1, 7).bits);
  for (unsigned b = 0; b < 256; ++b)
    EXPECT_EQ(b, pack_e2m1(unpack_e2m1(static_cast<uint8_t>(b), 0), unpack_e2m1(static_cast<uint8_t>(b), 1)));
}

// ---- E4M3 -----------------------------------------------------------------------------------

// Independent decode: sign, 4-bit exponent (bias 7), 3-bit mantissa; S.1111.111 is NaN.
double e4m3_formula(uint8_t c) {
  const int e = (c >> 3) & 0xF, m = c & 7;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  const double mag = e == 0 ? std::ldexp(m, -9) : std::ldexp(8 + m, e - 10);
  return (c & 0x80) ? -mag : mag;
}

TEST(CodecE4M3Test, FromFloatLiterals) {
  EXPECT_EQ(0x7E, E4M3::from_float(448.0f).bits);
  EXPECT_EQ(0x7E, E4M3::from_float(464.0f).bits);  // tie between 448 and (virtual) 480: even
  EXPECT_EQ(0x7F, E4M3::from_float(465.0f).bits);
  EXPECT_EQ(0x7F, E4M3::from_float(480.0f).bits);
  EXPECT_EQ(0x7F, E4M3::from_float(kInf).bits);
  EXPECT_EQ(0xFF, E4M3::from_float(-kInf).bits);
  EXPECT_EQ(0x7F, E4M3::from_float(kNaN).bits);
  EXPECT_EQ(0xFF, E4M3::from_float(-kNaN).bits);
  EXPECT_EQ(0x00, E4M3::from_float(0x1p-10f).bits);        // tie between 0 and 2^-9: even
  EXPECT_EQ(0x01, E4M3::from_float(1.5f * 0x1p-10f).bits);
  EXPECT_EQ(0x00, E4M3::from_float(0x1p-11f).bits);
  EXPECT_EQ(0x01, E4M3::from_float(0x1p-9f).bits);
  EXPECT_EQ(0x80, E4M3::from_float(-0.0f).bits);
  EXPECT_EQ(0x00, E4M3::from_float(0.0f).bits);
  EXPECT_EQ(0x38, E4M3::from_float(1.0f).bits);
  EXPECT_EQ(0xB8, E4M3::from_float(-1.0f).bits);
  EXPECT_EQ(0x08, E4M3::from_float(0x1p-6f).bits);
  EXPECT_EQ(0x08, E4M3::from_float(7.5f * 0x1p-9f).bits);  // subnormal tie rounding up into normal
  // saturating variant
  EXPECT_EQ(0x7E, E4M3::from_float_saturate(1e9f).bits);
  EXPECT_EQ(0xFE, E4M3::from_float_saturate(-kInf).bits);
  EXPECT_EQ(0x7F, E4M3::from_float_saturate(kNaN).bits);
  EXPECT_EQ(0xFF, E4M3::from_float_saturate(-kNaN).bits);
}

TEST(CodecE4M3Test, ToFloatMatchesFormulaForEveryCode) {
  for (unsigned c = 0; c < 256; ++c) {
    const E4M3 e{static_cast<uint8_t>(c)};
    const double want = e4m3_formula(e.bits);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(e.to_float())) << c;
      EXPECT_TRUE(e.is_nan());
      EXPECT_EQ((c & 0x80) != 0, std::signbit(e.to_float())) << c;
    } else {
      EXPECT_EQ(want, static_cast<double>(e.to_float())) << c;
      EXPECT_EQ(std::signbit(want), std::signbit(e.to_float())) << c;
      EXPECT_FALSE(e.is_nan());
    }
  }
  EXPECT_EQ(448.0f, E4M3{0x7E}.to_float());
  EXPECT_EQ(0x1p-9f, E4M3{0x01}.to_float());
}

TEST(CodecE4M3Test, RoundTripEveryCode) {
  for (unsigned c = 0; c < 256; ++c) {
    const E4M3 e{static_cast<uint8_t>(c)};
    if (e.is_nan()) continue;
    EXPECT_EQ(c, E4M3::from_float(e.to_float()).bits) << c;
    EXPECT_EQ(c, E4M3::from_float_saturate(e.to_float()).bits) << c;
  }
}

TEST(CodecE4M3Test, FromFloatMatchesNearestEvenSearch) {
  // The 127 finite magnitudes, plus 480 standing for code 0x7F: PyTorch rounds as if the format
  // went on, then anything that lands on 0x7F (or is >= 480) is NaN.
  std::vector<double> grid;
  for (int c = 0; c < 0x7F; ++c) grid.push_back(e4m3_formula(static_cast<uint8_t>(c)));
  grid.push_back(480.0);
  auto expected = [&](float x) -> uint8_t {  // x >= 0
    if (x >= 480.0f) return 0x7F;
    return static_cast<uint8_t>(nearest_even(grid, x));
  };
  size_t checked = 0;
  auto check = [&](float x) {
    const uint8_t want = expected(x);
    ASSERT_EQ(want, E4M3::from_float(x).bits) << "x=" << x << " (0x" << std::hex << f32_bits(x) << ")";
    ASSERT_EQ(want | 0x80, E4M3::from_float(-x).bits) << "x=-" << x;
    ++checked;
  };
  for (uint32_t u = f32_bits(0x1p-12f); u <= f32_bits(500.0f); u += 1u << 12) check(f32_from_bits(u));
  for (size_t i = 0; i + 1 < grid.size(); ++i) {
    const float mid = static_cast<float>((grid[i] + grid[i + 1]) / 2);
    ASSERT_EQ(static_cast<double>(mid), (grid[i] + grid[i + 1]) / 2);  // midpoints are exact in f32
    check(mid);
    check(std::nextafter(mid, 0.0f));
    check(std::nextafter(mid, kInf));
  }
  EXPECT_GT(checked, 40000u);
}

// ---- E8M0 -----------------------------------------------------------------------------------

TEST(CodecE8M0Test, Decode) {
  EXPECT_EQ(1.0f, E8M0{127}.to_float());
  EXPECT_EQ(0x1p-127f, E8M0{0}.to_float());
  EXPECT_EQ(0x00400000u, f32_bits(E8M0{0}.to_float()));  // an f32 subnormal
  EXPECT_EQ(0x1p127f, E8M0{254}.to_float());
  EXPECT_TRUE(std::isnan(E8M0{255}.to_float()));
  for (int b = 1; b < 255; ++b) {
    EXPECT_EQ(std::ldexp(1.0f, b - 127), E8M0{static_cast<uint8_t>(b)}.to_float()) << b;
    EXPECT_EQ(b - 127, E8M0{static_cast<uint8_t>(b)}.exponent());
  }
}

TEST(CodecE8M0Test, FromExponentSaturates) {
  EXPECT_EQ(127, E8M0::from_exponent(0).bits);
  EXPECT_EQ(0, E8M0::from_exponent(-127).bits);
  EXPECT_EQ(0, E8M0::from_exponent(-500).bits);
  EXPECT_EQ(254, E8M0::from_exponent(127).bits);
  EXPECT_EQ(254, E8M0::from_exponent(128).bits);
  for (int k = -127; k <= 127; ++k) EXPECT_EQ(k, E8M0::from_exponent(k).exponent());
}

// ---- BF16 -----------------------------------------------------------------------------------

TEST(CodecBf16Test, FromFloatRoundsToNearestEven) {
  EXPECT_EQ(0x3F80, BF16::from_float(f32_from_bits(0x3F808000u)).bits);  // tie, even stays
  EXPECT_EQ(0x3F82, BF16::from_float(f32_from_bits(0x3F818000u)).bits);  // tie, odd rounds up
  EXPECT_EQ(0x3F81, BF16::from_float(f32_from_bits(0x3F808001u)).bits);  // above the tie
  EXPECT_EQ(0x3F81, BF16::from_float(f32_from_bits(0x3F817FFFu)).bits);  // below the tie
  EXPECT_EQ(0xBF82, BF16::from_float(f32_from_bits(0xBF818000u)).bits);
  EXPECT_EQ(0x7FC0, BF16::from_float(kNaN).bits);
  EXPECT_EQ(0x7FC0, BF16::from_float(-kNaN).bits);
  EXPECT_EQ(0x7FC0, BF16::from_float(f32_from_bits(0x7F800001u)).bits);  // sNaN, not Inf
  EXPECT_EQ(0x7FC0, BF16::from_float(f32_from_bits(0xFFFFFFFFu)).bits);
  EXPECT_EQ(0x7F80, BF16::from_float(kInf).bits);
  EXPECT_EQ(0xFF80, BF16::from_float(-kInf).bits);
  EXPECT_EQ(0x7F80, BF16::from_float(f32_from_bits(0x7F7FFFFFu)).bits);  // overflow rounds to Inf
  EXPECT_EQ(0x7F7F, BF16::from_float(f32_from_bits(0x7F7F7FFFu)).bits);
  EXPECT_EQ(0x8000, BF16::from_float(-0.0f).bits);
  EXPECT_EQ(0x0001, BF16::from_float(f32_from_bits(0x00010000u)).bits);  // subnormals too
  EXPECT_EQ(0x0000, BF16::from_float(f32_from_bits(0x00008000u)).bits);
  EXPECT_EQ(0x0002, BF16::from_float(f32_from_bits(0x00018000u)).bits);
}

TEST(CodecBf16Test, RoundTripEveryCode) {
  for (uint32_t c = 0; c < 65536; ++c) {
    const BF16 b{static_cast<uint16_t>(c)};
    EXPECT_EQ(c << 16, f32_bits(b.to_float()));
    if (!std::isnan(b.to_float())) {
      ASSERT_EQ(c, BF16::from_float(b.to_float()).bits) << c;
    }
  }
}

// ---- F16 ------------------------------------------------------------------------------------

double f16_formula(uint16_t c) {
  const int e = (c >> 10) & 0x1F, m = c & 0x3FF;
  double mag;
  if (e == 31) mag = m ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  else if (e == 0) mag = std::ldexp(m, -24);
  else mag = std::ldexp(1024 + m, e - 25);
  return (c & 0x8000) ? -mag : mag;
}

bool f16_is_nan(uint16_t c) { return (c & 0x7C00) == 0x7C00 && (c & 0x3FF) != 0; }

TEST(CodecF16Test, FromFloatLiterals) {
  EXPECT_EQ(0x7BFF, F16::from_float(65504.0f).bits);
  EXPECT_EQ(0x7BFF, F16::from_float(65519.0f).bits);
  EXPECT_EQ(0x7C00, F16::from_float(65520.0f).bits);  // tie with the (virtual) 65536: Inf
  EXPECT_EQ(0x7C00, F16::from_float(kInf).bits);
  EXPECT_EQ(0xFC00, F16::from_float(-kInf).bits);
  EXPECT_EQ(0x0001, F16::from_float(0x1p-24f).bits);
  EXPECT_EQ(0x0000, F16::from_float(0x1p-25f).bits);  // tie: even
  EXPECT_EQ(0x0002, F16::from_float(3 * 0x1p-25f).bits);
  EXPECT_EQ(0x0001, F16::from_float(std::nextafter(0x1p-25f, 1.0f)).bits);
  EXPECT_EQ(0x8000, F16::from_float(-0.0f).bits);
  EXPECT_EQ(0x3C00, F16::from_float(1.0f).bits);
  EXPECT_EQ(0x3C00, F16::from_float(1.0f + 0x1p-11f).bits);      // tie, even stays
  EXPECT_EQ(0x3C02, F16::from_float(1.0f + 3 * 0x1p-11f).bits);  // tie, odd rounds up
  EXPECT_EQ(0x0400, F16::from_float(0x1p-14f).bits);
  EXPECT_EQ(0x0400, F16::from_float(0x1p-14f - 0x1p-25f).bits);  // subnormal tie up into normal
  EXPECT_TRUE(f16_is_nan(F16::from_float(kNaN).bits));
  EXPECT_TRUE(f16_is_nan(F16::from_float(-kNaN).bits));
  EXPECT_TRUE(F16::from_float(-kNaN).bits & 0x8000);
  EXPECT_TRUE(f16_is_nan(F16::from_float(f32_from_bits(0x7F800001u)).bits));  // payload in low bits
}

TEST(CodecF16Test, ToFloatMatchesFormulaAndRoundTripsEveryCode) {
  for (uint32_t c = 0; c < 65536; ++c) {
    const F16 h{static_cast<uint16_t>(c)};
    const double want = f16_formula(h.bits);
    const float got = h.to_float();
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << c;
      ASSERT_TRUE(f16_is_nan(F16::from_float(got).bits)) << c;
      continue;
    }
    ASSERT_EQ(want, static_cast<double>(got)) << c;
    ASSERT_EQ(std::signbit(want), std::signbit(got)) << c;
    ASSERT_EQ(c, F16::from_float(got).bits) << c;
  }
}

TEST(CodecF16Test, FromFloatMatchesNearestEvenSearch) {
  // every positive finite F16 value plus 65536 standing for the step past the largest (-> Inf)
  std::vector<double> grid;
  for (uint32_t c = 0; c < 0x7C00; ++c) grid.push_back(f16_formula(static_cast<uint16_t>(c)));
  grid.push_back(65536.0);
  auto check = [&](float x) {
    // the grid is uniform within a binade: find the neighbours by bisection, ties to even code
    size_t lo = 0, hi = grid.size() - 1;
    while (hi - lo > 1) {
      const size_t mid = (lo + hi) / 2;
      (grid[mid] <= x ? lo : hi) = mid;
    }
    const double dl = x - grid[lo], dh = grid[hi] - x;
    size_t want = dl < dh ? lo : dh < dl ? hi : (lo % 2 == 0 ? lo : hi);
    if (x >= 65536.0f) want = 0x7C00;
    ASSERT_EQ(want, F16::from_float(x).bits) << "x=" << x;
    ASSERT_EQ(want | 0x8000, F16::from_float(-x).bits) << "x=-" << x;
  };
  for (uint32_t u = f32_bits(0x1p-26f); u <= f32_bits(70000.0f); u += 1u << 9) check(f32_from_bits(u));
  for (size_t i = 0; i + 1 < grid.size(); ++i) {
    const float mid = static_cast<float>((grid[i] + grid[i + 1]) / 2);
    check(mid);
    check(std::nextafter(mid, 0.0f));
    check(std::nextafter(mid, kInf));
  }
}

}  // namespace
}  // namespace fp4kit
