// NVFP4 activation quantization (the W4A4 engines' recipe with exact reciprocals): hand-computed
// blocks, the special inputs, the element cast, the 128x4 scale swizzle against a generic
// reshape/permute, and the decode.
#include "formats/nvfp4_activation.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <initializer_list>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "base/error.h"
#include "formats/bf16.h"
#include "formats/e2m1.h"
#include "formats/e4m3.h"
#include "formats/float_bits.h"

namespace fp4kit {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

using Block = std::array<float, 16>;
using Packed = std::array<uint8_t, 8>;

struct BlockResult {
  uint8_t scale;
  Packed packed;
};

// A block starting with `head`, zeros after.
Block leading(std::initializer_list<float> head) {
  Block b{};
  std::copy(head.begin(), head.end(), b.begin());
  return b;
}

BlockResult quantize(const Block& x, float gs) {
  BlockResult r{};
  r.scale = quantize_activation_block(x.data(), gs, r.packed.data());
  return r;
}

void expect_block(const Block& x, float gs, uint8_t scale, const Packed& packed) {
  const BlockResult r = quantize(x, gs);
  EXPECT_EQ(int(r.scale), int(scale)) << "gs " << gs;
  for (size_t j = 0; j < 8; ++j)
    EXPECT_EQ(int(r.packed[j]), int(packed[j])) << "byte " << j << " (elements " << 2 * j << ", " << 2 * j + 1
                                                << ": " << x[2 * j] << ", " << x[2 * j + 1] << "), gs " << gs;
}

TEST(Nvfp4Activation, ElementCastIsRoundHalfEvenSaturatingWithTheSignBit) {
  struct Case {
    float y;
    uint8_t code;
  };
  const Case cases[] = {
      {0.0f, 0x0},   {-0.0f, 0x8},  {0.25f, 0x0},  {0.2500001f, 0x1}, {-0.25f, 0x8}, {-1e-30f, 0x8},
      {0.5f, 0x1},   {0.75f, 0x2},  {1.25f, 0x2},  {1.2500001f, 0x3}, {1.75f, 0x4},  {2.5f, 0x4},
      {2.5000002f, 0x5}, {3.5f, 0x6}, {5.0f, 0x6}, {5.0000005f, 0x7}, {6.0f, 0x7}, {7.0f, 0x7},
      {1e30f, 0x7},  {kInf, 0x7},   {-kInf, 0xF},  {-3.4f, 0xD},     {-6.5f, 0xF},  {kNaN, 0x7},
      {-kNaN, 0x7},  {0x1p-149f, 0x0}, {-0x1p-149f, 0x8},
  };
  for (const Case& c : cases) EXPECT_EQ(int(e2m1_from_float_satfinite(c.y)), int(c.code)) << c.y;
  // Where ModelOpt's cast (E2M1::from_float) and the hardware cast agree: everything but -0.0.
  for (const Case& c : cases) {
    if (std::isnan(c.y) || f32_bits(c.y) == 0x80000000u) continue;
    EXPECT_EQ(int(e2m1_from_float_satfinite(c.y)), int(E2M1::from_float(c.y).bits)) << c.y;
  }
}

TEST(Nvfp4Activation, UnitScaleBlockRoundsTiesToEven) {
  // amax 6, gs 1: SFValue = 6 * fl(1/6) = 1.0000000298 -> 1.0 in F32 -> E4M3 0x38; outScale 1.
  const Block x = {6.0f, 0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f,
                   5.5f, -0.25f, -0.0f, 0.0f, -6.0f, 0.5f, 3.0f, -1.5f};
  expect_block(x, 1.0f, 0x38, {0x07, 0x22, 0x44, 0x66, 0x87, 0x08, 0x1F, 0xB5});
}

TEST(Nvfp4Activation, ScaleTiesRoundToEvenInE4M3) {
  // 6.375/6 = 1.0625 exactly in F32: halfway between 1.0 (0x38) and 1.125 -> 1.0; outScale 1.
  expect_block(leading({6.375f, 1.0f}), 1.0f, 0x38, {0x27, 0, 0, 0, 0, 0, 0, 0});
  // 7.125/6 = 1.1875: halfway between 1.125 and 1.25 (0x3A) -> 1.25; outScale 0.8: 7.125 -> 5.7
  // -> 6 (0x7), 1.0 -> 0.8 -> 1.0 (0x2).
  expect_block(leading({7.125f, 1.0f}), 1.0f, 0x3A, {0x27, 0, 0, 0, 0, 0, 0, 0});
}

TEST(Nvfp4Activation, ScaleSaturatesAt448) {
  // gs 1000, amax 6: SFValue 1000 -> 448 (0x7E); outScale fl(1/fl(448 * fl(1/1000))) = 2.2321427:
  // 6 -> 13.4 -> 6 (0x7); 1 -> 2.23 -> 2 (0x4); 2 -> 4.46 -> 4 (0x6); 0.2 -> 0.446 -> 0.5 (0x1);
  // -1 -> -2.23 -> -2 (0xC).
  const Block x = leading({6.0f, 1.0f, 2.0f, 0.2f, -1.0f});
  expect_block(x, 1000.0f, 0x7E, {0x47, 0x16, 0x0C, 0, 0, 0, 0, 0});
  // 464 (a tie between 448 and the NaN code) and anything above stay 448.
  const Block y = leading({6.0f});
  EXPECT_EQ(int(quantize(y, 464.0f).scale), 0x7E);
  EXPECT_EQ(int(quantize(y, 465.0f).scale), 0x7E);
  EXPECT_EQ(int(quantize(y, 3e38f).scale), 0x7E);
}

TEST(Nvfp4Activation, SubnormalAndUnderflowingScales) {
  // amax 2^-5: SFValue 2^-5/6 = 0.0052 -> 2.67 * 2^-9 -> 3 * 2^-9 (0x03); outScale 170.67:
  // 2^-5 -> 5.33 -> 6 (0x7); 2^-6 -> 2.67 -> 3 (0x5); -2^-8 -> -0.667 -> -0.5 (0x9).
  const Block x = leading({0x1p-5f, 0x1p-6f, -0x1p-8f});
  expect_block(x, 1.0f, 0x03, {0x57, 0x09, 0, 0, 0, 0, 0, 0});
  // amax 6 * 2^-10: SFValue exactly 2^-10, the tie between 0 and the smallest subnormal -> 0x00; with
  // SF 0 every element becomes a signed zero.
  const Block u = leading({6.0f * 0x1p-10f, -6.0f * 0x1p-10f, -0x1p-12f});
  expect_block(u, 1.0f, 0x00, {0x80, 0x08, 0, 0, 0, 0, 0, 0});
  // amax 12 * 2^-10: SFValue 2^-9 -> 0x01, outScale 512 -> 6.
  Block s{};
  s[15] = 12.0f * 0x1p-10f;  // the last, odd element: high nibble of the last byte
  expect_block(s, 1.0f, 0x01, {0, 0, 0, 0, 0, 0, 0, 0x70});
}

TEST(Nvfp4Activation, ZeroBlock) {
  Block z{};
  z[3] = -0.0f;
  expect_block(z, 1.0f, 0x00, {0x00, 0x80, 0, 0, 0, 0, 0, 0});
  expect_block(z, 3e38f, 0x00, {0x00, 0x80, 0, 0, 0, 0, 0, 0});
}

TEST(Nvfp4Activation, NaNElementsAreIgnoredByAmaxAndEncodeAsSix) {
  // amax 3 (the NaNs lose the max) -> SF 0.5 (0x30), outScale 2: NaN -> 0x7, 3 -> 6 (0x7), 1 -> 2 (0x4).
  const Block x = leading({kNaN, 3.0f, -kNaN, 1.0f});
  expect_block(x, 1.0f, 0x30, {0x77, 0x47, 0, 0, 0, 0, 0, 0});
  // NaN among zeros: amax 0, SF 0, outScale 0, NaN * 0 = NaN -> 0x7.
  const Block z = leading({kNaN});
  expect_block(z, 1.0f, 0x00, {0x07, 0, 0, 0, 0, 0, 0, 0});
  // All NaN: SF NaN (0x7F), every code 0x7.
  Block n;
  n.fill(kNaN);
  expect_block(n, 1.0f, 0x7F, {0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77});
}

TEST(Nvfp4Activation, InfinitiesSaturateTheScaleAndTheirElements) {
  // amax Inf -> SF 448 (0x7E), outScale 1/448: Inf -> 0x7, -Inf -> 0xF, 1 -> 0.0022 -> 0x0, 448 -> 1 (0x2).
  const Block x = leading({kInf, 1.0f, -kInf, 448.0f});
  expect_block(x, 1.0f, 0x7E, {0x07, 0x2F, 0, 0, 0, 0, 0, 0});
}

TEST(Nvfp4Activation, GlobalScaleFromInputScale) {
  EXPECT_EQ(nvfp4_activation_global_scale(10.0f / 2688.0f), 1.0f / (10.0f / 2688.0f));
  EXPECT_EQ(nvfp4_activation_global_scale(0.25f), 4.0f);
}

// ---- the 128x4 swizzle --------------------------------------------------------------------

// For each position of the swizzled buffer, the linear index (row * C + col) of the padded [R, C]
// scale matrix it holds: the source's reshape to (1, R/128, 4, 32, C/4, 4), permuted by
// (0, 1, 4, 3, 2, 5) and made contiguous, computed with generic strided-tensor arithmetic.
std::vector<int64_t> permuted_linear_indices(int64_t rows, int64_t cols) {
  const int64_t R = (rows + 127) / 128 * 128, C = (cols + 3) / 4 * 4;
  const std::array<int64_t, 6> shape = {1, R / 128, 4, 32, C / 4, 4};
  const std::array<int, 6> perm = {0, 1, 4, 3, 2, 5};
  std::array<int64_t, 6> stride{};
  stride[5] = 1;
  for (int d = 4; d >= 0; --d) stride[d] = stride[d + 1] * shape[d + 1];
  std::array<int64_t, 6> out_shape{};
  for (int d = 0; d < 6; ++d) out_shape[d] = shape[perm[d]];
  std::vector<int64_t> result(static_cast<size_t>(R * C));
  std::array<int64_t, 6> idx{};
  for (size_t pos = 0; pos < result.size(); ++pos) {
    int64_t src = 0;
    for (int d = 0; d < 6; ++d) src += idx[d] * stride[perm[d]];
    result[pos] = src;
    for (int d = 5; d >= 0; --d) {  // row-major increment of the output index
      if (++idx[d] < out_shape[d]) break;
      idx[d] = 0;
    }
  }
  return result;
}

TEST(Nvfp4Activation, SwizzledOffsetsMatchTheReshapePermute) {
  const std::pair<int64_t, int64_t> shapes[] = {{1, 1}, {3, 3}, {128, 4}, {129, 5}, {127, 448}, {300, 9}, {512, 12}};
  for (const auto& [rows, cols] : shapes) {
    const int64_t C = nvfp4_swizzled_scale_cols(cols);
    ASSERT_EQ(nvfp4_scale_bytes(rows, cols, Nvfp4ScaleLayout::Swizzled128x4),
              nvfp4_swizzled_scale_rows(rows) * C);
    const std::vector<int64_t> held = permuted_linear_indices(rows, cols);
    ASSERT_EQ(int64_t(held.size()), nvfp4_scale_bytes(rows, cols, Nvfp4ScaleLayout::Swizzled128x4));
    int failures = 0;
    for (size_t pos = 0; pos < held.size() && failures < 5; ++pos) {
      const int64_t r = held[pos] / C, c = held[pos] % C;
      const int64_t got = nvfp4_swizzled_scale_offset(r, c, cols);
      if (got != int64_t(pos)) {
        ++failures;
        ADD_FAILURE() << "scales [" << rows << ", " << cols << "]: (" << r << ", " << c << ") is at " << pos
                      << " after the permute, offset function says " << got;
      }
    }
  }
  // Spot values: the first tile's row 32 is the second 4-byte group; column 4 starts tile 1.
  EXPECT_EQ(nvfp4_swizzled_scale_offset(32, 0, 8), 4);
  EXPECT_EQ(nvfp4_swizzled_scale_offset(1, 0, 8), 16);
  EXPECT_EQ(nvfp4_swizzled_scale_offset(0, 4, 8), 512);
  EXPECT_EQ(nvfp4_swizzled_scale_offset(128, 0, 8), 1024);
  EXPECT_EQ(nvfp4_swizzled_scale_offset(128, 0, 5), 1024);  // 5 columns pad to 8: two tiles per row block
}

// ---- whole tensors --------------------------------------------------------------------------

// Normal values with a per-block magnitude 2^[lo, hi].
std::vector<uint16_t> random_activations(int64_t m, int64_t k, uint32_t seed, int lo = -6, int hi = 6) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> octave(lo, hi);
  std::vector<uint16_t> x(static_cast<size_t>(m * k));
  for (int64_t b = 0; b < m * k / 16; ++b) {
    const float scale = std::ldexp(1.0f, octave(rng));
    for (int i = 0; i < 16; ++i) x[static_cast<size_t>(b * 16 + i)] = BF16::from_float(normal(rng) * scale).bits;
  }
  return x;
}

TEST(Nvfp4Activation, SwizzledAndLinearLayoutsHoldTheSameScalesAndZeroPadding) {
  const int64_t m = 131, k = 80;  // 5 scale columns: padded to 256 x 8
  const std::vector<uint16_t> x = random_activations(m, k, 7);
  const int64_t cols = k / 16;
  std::vector<uint8_t> packed_lin(m * k / 2), packed_swz(m * k / 2, 0xEE);
  std::vector<uint8_t> lin(nvfp4_scale_bytes(m, cols, Nvfp4ScaleLayout::Linear));
  std::vector<uint8_t> swz(nvfp4_scale_bytes(m, cols, Nvfp4ScaleLayout::Swizzled128x4), 0xEE);
  ASSERT_EQ(swz.size(), 256u * 8u);
  const float gs = nvfp4_activation_global_scale(8.0f / 2688.0f);
  quantize_activation_ref(x.data(), m, k, gs, Nvfp4ScaleLayout::Linear, packed_lin.data(), lin.data());
  quantize_activation_ref(x.data(), m, k, gs, Nvfp4ScaleLayout::Swizzled128x4, packed_swz.data(), swz.data());
  EXPECT_EQ(packed_lin, packed_swz);
  std::vector<bool> seen(swz.size(), false);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t off = nvfp4_swizzled_scale_offset(r, c, cols);
      ASSERT_EQ(swz[off], lin[r * cols + c]) << r << ", " << c;
      seen[off] = true;
    }
  for (size_t i = 0; i < swz.size(); ++i) {
    if (!seen[i]) {
      ASSERT_EQ(int(swz[i]), 0) << "padding byte " << i;
    }
  }
  // Every block went through the block function.
  for (int64_t r = 0; r < m; r += 17)
    for (int64_t c = 0; c < cols; ++c) {
      Block b;
      for (int i = 0; i < 16; ++i) b[i] = BF16{x[r * k + c * 16 + i]}.to_float();
      const BlockResult want = quantize(b, gs);
      EXPECT_EQ(want.scale, lin[r * cols + c]);
      EXPECT_EQ(0, std::memcmp(want.packed.data(), packed_lin.data() + r * k / 2 + c * 8, 8));
    }
}

TEST(Nvfp4Activation, RejectsBadShapesAndScales) {
  uint16_t x[32] = {};
  uint8_t p[16], s[512];
  EXPECT_THROW(quantize_activation_ref(x, 1, 24, 1.0f, Nvfp4ScaleLayout::Linear, p, s), InputError);
  EXPECT_THROW(quantize_activation_ref(x, 1, 16, 0.0f, Nvfp4ScaleLayout::Linear, p, s), InputError);
  EXPECT_THROW(quantize_activation_ref(x, 1, 16, -1.0f, Nvfp4ScaleLayout::Linear, p, s), InputError);
  EXPECT_THROW(quantize_activation_ref(x, 1, 16, kNaN, Nvfp4ScaleLayout::Linear, p, s), InputError);
  EXPECT_THROW(quantize_activation_ref(x, 1, 16, kInf, Nvfp4ScaleLayout::Linear, p, s), InputError);
  quantize_activation_ref(x, 0, 16, 1.0f, Nvfp4ScaleLayout::Linear, p, s);  // empty is fine
}

// ---- decode ---------------------------------------------------------------------------------

TEST(Nvfp4Activation, DecodeIsE2M1TimesScaleAndExactInBf16) {
  // Every scale byte with every code: one row of 256 blocks.
  const int64_t k = 256 * 16;
  std::vector<uint8_t> scales(256), packed(k / 2);
  for (int s = 0; s < 256; ++s) {
    scales[s] = static_cast<uint8_t>(s);
    for (int j = 0; j < 8; ++j) packed[s * 8 + j] = static_cast<uint8_t>((2 * j) | ((2 * j + 1) << 4));
  }
  std::vector<float> f(k);
  std::vector<uint16_t> b(k);
  dequantize_activation_ref(packed.data(), scales.data(), Nvfp4ScaleLayout::Linear, 1, k, 1.0f, f.data());
  dequantize_activation_bf16_ref(packed.data(), scales.data(), Nvfp4ScaleLayout::Linear, 1, k, 1.0f, b.data());
  for (int s = 0; s < 256; ++s)
    for (int i = 0; i < 16; ++i) {
      const size_t at = static_cast<size_t>(s * 16 + i);
      const float want = E2M1{static_cast<uint8_t>(i)}.to_float() * E4M3{static_cast<uint8_t>(s)}.to_float();
      if (E4M3{static_cast<uint8_t>(s)}.is_nan()) {
        EXPECT_TRUE(std::isnan(f[at])) << s << " " << i;
        EXPECT_EQ(b[at], 0x7FC0) << s << " " << i;
        continue;
      }
      EXPECT_EQ(f32_bits(f[at]), f32_bits(want)) << "scale " << s << " code " << i;
      EXPECT_EQ(BF16{b[at]}.to_float(), want) << "not exact in BF16: scale " << s << " code " << i;
    }
  // A multiplier is applied after the exact product, with one F32 rounding.
  const float mult = 10.0f / 2688.0f;
  dequantize_activation_ref(packed.data(), scales.data(), Nvfp4ScaleLayout::Linear, 1, k, mult, f.data());
  EXPECT_EQ(f32_bits(f[0x38 * 16 + 7]), f32_bits(6.0f * mult));
  EXPECT_EQ(f32_bits(f[0x7E * 16 + 13]), f32_bits((-3.0f * 448.0f) * mult));
}

TEST(Nvfp4Activation, RoundTripIsWithinHalfAStepOfTheScaledGrid) {
  // Decoded values are within half an E2M1 step (times the scale) of the inputs, the magnitudes
  // chosen so that no block scale saturates or goes subnormal.
  const int64_t m = 8, k = 256;
  const std::vector<uint16_t> x = random_activations(m, k, 11, -4, 2);
  const float gs = 2688.0f / 40.0f;
  std::vector<uint8_t> packed(m * k / 2), scales(m * k / 16);
  std::vector<float> back(m * k);
  quantize_activation_ref(x.data(), m, k, gs, Nvfp4ScaleLayout::Linear, packed.data(), scales.data());
  dequantize_activation_ref(packed.data(), scales.data(), Nvfp4ScaleLayout::Linear, m, k, 1.0f, back.data());
  for (int64_t i = 0; i < m * k; ++i) {
    const float xi = BF16{x[i]}.to_float() * gs;  // the decode is in the quantizer's scaled units
    const float sf = E4M3{scales[i / 16]}.to_float();
    const float step = std::fabs(back[i]) >= 4.0f * sf ? 2.0f * sf : std::fabs(back[i]) >= 2.0f * sf ? sf : 0.5f * sf;
    // The block max lands on 6*SF only up to the E4M3 rounding of SF (<= 1/16 relative).
    EXPECT_LE(std::fabs(back[i] - xi), 0.5f * step + std::fabs(xi) * 0.07f) << i;
  }
}

}  // namespace
}  // namespace fp4kit
