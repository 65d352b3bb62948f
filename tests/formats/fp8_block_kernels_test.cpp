// The SIMD FP8 block kernels, on every ISA this CPU runs, against the scalar reference, byte for byte.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "formats/bf16.h"
#include "formats/dtype.h"
#include "formats/e4m3.h"
#include "formats/f16.h"
#include "formats/float_bits.h"
#include "formats/float_span.h"
#include "formats/fp8_block.h"
#include "formats/isa.h"
#include "isa_cases.h"

namespace fp4kit {
namespace {

constexpr uint8_t kSentinel = 0xA5;
constexpr size_t kGuard = 64;  // bytes past the end of every output, which must stay untouched

const Fp8BlockKernels& scalar() { return fp8_block_kernels(Isa::Scalar); }

const char* kind_name(Fp8ScaleKind k) { return k == Fp8ScaleKind::E8M0 ? "E8M0" : "F32"; }

size_t scale_bytes(const Fp8BlockShape& shape) {
  return shape.scale_rows() * shape.scale_cols() * (shape.scale_kind == Fp8ScaleKind::E8M0 ? 1 : 4);
}

// Rows [r0, r1) dequantized by the reference and every SIMD ISA into both output types, at two
// output misalignments.
void check_dequant_rows(const std::vector<uint8_t>& weight, const std::vector<uint8_t>& scales,
                        const Fp8BlockShape& shape, size_t r0, size_t r1) {
  const size_t n = (r1 - r0) * shape.cols;
  for (size_t off : {0, 1}) {
    std::vector<float> a(off + n + kGuard / 4);
    std::memset(a.data(), kSentinel, a.size() * 4);
    scalar().dequantize_f32(weight.data(), scales.data(), shape, r0, r1, a.data() + off);
    std::vector<uint16_t> a16(off + n + kGuard / 2);
    std::memset(a16.data(), kSentinel, a16.size() * 2);
    scalar().dequantize_bf16(weight.data(), scales.data(), shape, r0, r1, a16.data() + off);
    for (Isa isa : simd_isas()) {
      SCOPED_TRACE(::testing::Message() << isa_name(isa) << " " << shape.rows << "x" << shape.cols << " "
                                        << kind_name(shape.scale_kind) << " rows [" << r0 << "," << r1 << ") offset "
                                        << off);
      const Fp8BlockKernels& k = fp8_block_kernels(isa);
      std::vector<float> b(a.size());
      std::memset(b.data(), kSentinel, b.size() * 4);
      k.dequantize_f32(weight.data(), scales.data(), shape, r0, r1, b.data() + off);
      if (std::memcmp(a.data(), b.data(), a.size() * 4) != 0) {
        for (size_t i = 0; i < a.size(); ++i)
          if (f32_bits(a[i]) != f32_bits(b[i])) {
            const size_t e = i - off, r = r0 + e / std::max<size_t>(shape.cols, 1), c = e % std::max<size_t>(shape.cols, 1);
            FAIL() << "dequantize_f32 differs at (" << r << "," << c << ") byte 0x" << std::hex
                   << int(weight[r * shape.cols + c]) << ": scalar 0x" << f32_bits(a[i]) << " simd 0x"
                   << f32_bits(b[i]);
          }
      }
      std::vector<uint16_t> b16(a16.size());
      std::memset(b16.data(), kSentinel, b16.size() * 2);
      k.dequantize_bf16(weight.data(), scales.data(), shape, r0, r1, b16.data() + off);
      ASSERT_EQ(0, std::memcmp(a16.data(), b16.data(), a16.size() * 2)) << "dequantize_bf16 differs";
    }
  }
}

// Full range, empty range, and several sub-ranges crossing block-row boundaries.
void check_dequant(const std::vector<uint8_t>& weight, const std::vector<uint8_t>& scales, const Fp8BlockShape& shape) {
  const size_t R = shape.rows;
  std::vector<std::pair<size_t, size_t>> ranges = {{0, R}, {0, 0}, {R, R}, {R - 1, R}, {R / 3, 2 * R / 3}, {1, R}};
  if (R > 128) ranges.push_back({127, 129});
  if (R > 130) ranges.push_back({128, R});
  for (auto [r0, r1] : ranges) {
    if (r0 > r1 || r1 > R) continue;
    check_dequant_rows(weight, scales, shape, r0, r1);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

// Column counts and block widths that leave tails at vectors of 4, 8, 16 and 64 lanes.
const std::pair<size_t, size_t> kShapes[] = {{1, 1},     {1, 7},     {7, 1},     {1, 8},     {1, 31},   {1, 32},
                                              {1, 128},   {1, 129},   {2, 136},   {127, 129}, {129, 127}, {200, 272},
                                              {192, 128}, {128, 256}, {3, 300},   {257, 33},  {130, 520}, {64, 1000},
                                              {5, 7168},  {3, 4},     {2, 12},    {3, 20},    {2, 36},   {3, 60},
                                              {2, 68},    {2, 100},   {131, 124}, {2, 196},   {3, 252},  {2, 390}};

const float kF32ScaleSpecials[] = {std::numeric_limits<float>::quiet_NaN(),
                                   -std::numeric_limits<float>::quiet_NaN(),
                                   f32_from_bits(0x7F800001u),  // signaling NaN
                                   f32_from_bits(0x7FC12345u),
                                   std::numeric_limits<float>::infinity(),
                                   -std::numeric_limits<float>::infinity(),
                                   0.0f,
                                   -0.0f,
                                   std::numeric_limits<float>::denorm_min(),
                                   0x1p-127f,
                                   std::numeric_limits<float>::min(),
                                   std::numeric_limits<float>::max(),
                                   -1.5e-3f,
                                   1e30f,
                                   1.0f};

// Scales: realistic, or with specials mixed in (E8M0: every byte value possible).
std::vector<uint8_t> make_scales(const Fp8BlockShape& shape, bool adversarial, std::mt19937_64& rng) {
  const size_t count = shape.scale_rows() * shape.scale_cols();
  std::vector<uint8_t> out(scale_bytes(shape));
  std::uniform_int_distribution<int> byte(adversarial ? 0 : 110, adversarial ? 255 : 135);
  std::uniform_int_distribution<int> pick(0, sizeof(kF32ScaleSpecials) / 4 - 1), coin(0, 2);
  std::uniform_real_distribution<float> real(1e-4f, 1e-2f);
  std::uniform_int_distribution<uint32_t> bits;
  for (size_t i = 0; i < count; ++i) {
    if (shape.scale_kind == Fp8ScaleKind::E8M0) {
      out[i] = static_cast<uint8_t>(byte(rng));
    } else {
      float s = real(rng);
      if (adversarial) {
        const int c = coin(rng);
        s = c == 0 ? kF32ScaleSpecials[pick(rng)] : c == 1 ? f32_from_bits(bits(rng)) : s;
      }
      std::memcpy(out.data() + 4 * i, &s, 4);
    }
  }
  return out;
}

// Weight bytes: any byte (NaN codes included), or NaN-free (the vector path throughout).
std::vector<uint8_t> make_weight(size_t n, bool with_nan, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<uint8_t> w(n);
  for (auto& b : w) {
    b = static_cast<uint8_t>(byte(rng));
    if (!with_nan && (b & 0x7F) == 0x7F) b = static_cast<uint8_t>(b ^ 1);
  }
  return w;
}

// ---- dequantize -----------------------------------------------------------------------------

TEST(Fp8BlockKernelsTest, DequantRandomShapesAndScales) {
  FP4KIT_REQUIRE_SIMD();
  std::mt19937_64 rng(11);
  for (auto [rows, cols] : kShapes) {
    for (Fp8ScaleKind kind : {Fp8ScaleKind::E8M0, Fp8ScaleKind::F32}) {
      const Fp8BlockShape shape{rows, cols, kind};
      for (int variant = 0; variant < 4; ++variant) {
        const auto weight = make_weight(rows * cols, variant & 1, rng);
        const auto scales = make_scales(shape, variant & 2, rng);
        check_dequant(weight, scales, shape);
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST(Fp8BlockKernelsTest, DequantEveryCodeTimesEveryE8M0Byte) {
  FP4KIT_REQUIRE_SIMD();
  // one row of 512 blocks: blocks 2j and 2j+1 have scale byte j and hold codes 0..127, 128..255
  const Fp8BlockShape shape{1, 128 * 512, Fp8ScaleKind::E8M0};
  std::vector<uint8_t> weight(shape.cols), scales(512);
  for (size_t c = 0; c < weight.size(); ++c) weight[c] = static_cast<uint8_t>(c);
  for (size_t b = 0; b < scales.size(); ++b) scales[b] = static_cast<uint8_t>(b / 2);
  check_dequant_rows(weight, scales, shape, 0, 1);
  // the same with NaN codes removed, so the vector path sees every other code at every scale
  for (auto& w : weight)
    if ((w & 0x7F) == 0x7F) w = 0x00;
  check_dequant_rows(weight, scales, shape, 0, 1);
}

TEST(Fp8BlockKernelsTest, DequantEveryCodeTimesF32Specials) {
  FP4KIT_REQUIRE_SIMD();
  // NaN codes against NaN scales of other payloads and signs: the NaN the product keeps
  const size_t blocks = 2 * (sizeof(kF32ScaleSpecials) / 4);
  const Fp8BlockShape shape{1, 128 * blocks, Fp8ScaleKind::F32};
  std::vector<uint8_t> weight(shape.cols), scales(4 * blocks);
  for (size_t c = 0; c < weight.size(); ++c) weight[c] = static_cast<uint8_t>(c);
  for (size_t b = 0; b < blocks; ++b) std::memcpy(scales.data() + 4 * b, &kF32ScaleSpecials[b / 2], 4);
  check_dequant_rows(weight, scales, shape, 0, 1);
}

TEST(Fp8BlockKernelsTest, DequantRealisticLarge) {
  FP4KIT_REQUIRE_SIMD();
  std::mt19937_64 rng(12);
  for (Fp8ScaleKind kind : {Fp8ScaleKind::E8M0, Fp8ScaleKind::F32}) {
    const Fp8BlockShape shape{384, 1536, kind};
    const auto weight = make_weight(shape.rows * shape.cols, false, rng);
    const auto scales = make_scales(shape, false, rng);
    check_dequant(weight, scales, shape);
  }
}

// ---- quantize -------------------------------------------------------------------------------

// Quantize the elements in `bytes` (stored as `dtype`) with the reference and every SIMD ISA;
// compare all outputs.
void check_quantize_bytes(const std::vector<uint8_t>& bytes, DType dtype, const Fp8BlockShape& shape) {
  const size_t n = shape.rows * shape.cols;
  ASSERT_EQ(bytes.size(), n * dtype_bits(dtype) / 8);
  const FloatSpan src{bytes.data(), dtype, n};
  std::vector<uint8_t> wa(n + kGuard, kSentinel), sa(scale_bytes(shape) + kGuard, kSentinel);
  scalar().quantize(src, shape, wa.data(), sa.data());
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(::testing::Message() << isa_name(isa) << " " << shape.rows << "x" << shape.cols << " "
                                      << kind_name(shape.scale_kind) << " " << dtype_name(dtype));
    std::vector<uint8_t> wb(wa.size(), kSentinel), sb(sa.size(), kSentinel);
    fp8_block_kernels(isa).quantize(src, shape, wb.data(), sb.data());
    ASSERT_EQ(0, std::memcmp(sa.data(), sb.data(), sa.size())) << "scales differ";
    for (size_t i = 0; i < wa.size(); ++i)
      ASSERT_EQ(wa[i], wb[i]) << "weight byte " << i << " differs (element " << (i < n ? src.at(i) : 0.0f) << ")";
  }
}

// f32 values stored as `dtype` (BF16/F16 by their RNE casts), then checked.
void check_quantize(const std::vector<float>& values, DType dtype, const Fp8BlockShape& shape) {
  const size_t n = values.size();
  std::vector<uint8_t> bytes(n * dtype_bits(dtype) / 8);
  for (size_t i = 0; i < n; ++i) {
    if (dtype == DType::F32) {
      std::memcpy(bytes.data() + 4 * i, &values[i], 4);
    } else {
      const uint16_t h = dtype == DType::BF16 ? BF16::from_float(values[i]).bits : F16::from_float(values[i]).bits;
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
  }
  check_quantize_bytes(bytes, dtype, shape);
}

constexpr DType kSourceTypes[] = {DType::F32, DType::BF16, DType::F16};

std::vector<float> realistic(size_t n, std::mt19937_64& rng, float scale) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

TEST(Fp8BlockKernelsTest, QuantizeRandomShapes) {
  FP4KIT_REQUIRE_SIMD();
  std::mt19937_64 rng(13);
  for (auto [rows, cols] : kShapes) {
    for (Fp8ScaleKind kind : {Fp8ScaleKind::E8M0, Fp8ScaleKind::F32}) {
      for (DType dtype : kSourceTypes) {
        for (float scale : {1e-3f, 0.02f, 3.0f}) {
          check_quantize(realistic(rows * cols, rng, scale), dtype, Fp8BlockShape{rows, cols, kind});
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

// Values on and next to E4M3 rounding points of a block whose scale is 2^k (amax = 448*2^k),
// with special values mixed in.
std::vector<float> adversarial(const Fp8BlockShape& shape, std::mt19937_64& rng) {
  std::vector<float> grid;  // every E4M3 magnitude and every midpoint between neighbours
  for (int c = 0; c < 0x7F; ++c) grid.push_back(E4M3{static_cast<uint8_t>(c)}.to_float());
  for (int c = 0; c < 0x7E; ++c) grid.push_back((grid[c] + grid[c + 1]) / 2);
  grid.push_back(464.0f);
  grid.push_back(470.0f);
  const float inf = std::numeric_limits<float>::infinity();
  const float specials[] = {0.0f, -0.0f, std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
                            inf, -inf, std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min(),
                            std::numeric_limits<float>::min(), 1e-4f, 1e-5f};
  std::uniform_int_distribution<size_t> g(0, grid.size() - 1), sp(0, sizeof(specials) / 4 - 1);
  std::uniform_int_distribution<int> exponent(-40, 40), nudge(-1, 1), mode(0, 9), sign(0, 1);
  std::uniform_int_distribution<uint32_t> bits;
  std::vector<float> v(shape.rows * shape.cols);
  for (size_t br = 0; br < shape.scale_rows(); ++br) {
    for (size_t bc = 0; bc < shape.scale_cols(); ++bc) {
      const int k = exponent(rng);
      const int m = mode(rng);
      const size_t r0 = br * 128, r1 = std::min(shape.rows, r0 + 128);
      const size_t c0 = bc * 128, c1 = std::min(shape.cols, c0 + 128);
      for (size_t r = r0; r < r1; ++r) {
        for (size_t c = c0; c < c1; ++c) {
          float y;
          if (m == 0) y = f32_from_bits(bits(rng));
          else if (m == 1) y = specials[sp(rng)];
          else if (m == 2) y = 0.0f;
          else if (m == 3) y = f32_from_bits(bits(rng) & 0x807FFFFFu);
          else {
            y = std::ldexp(grid[g(rng)], k);
            const int d = nudge(rng);
            if (d && y != 0.0f) y = std::nextafter(y, d > 0 ? inf : 0.0f);
            if (m == 9 && (r * 7 + c) % 13 == 0) y = specials[sp(rng)];
          }
          v[r * shape.cols + c] = sign(rng) ? -y : y;
        }
      }
      if (m >= 4) v[r0 * shape.cols + c0] = std::ldexp(448.0f, k);  // s = 2^k exactly
    }
  }
  return v;
}

TEST(Fp8BlockKernelsTest, QuantizeAdversarial) {
  FP4KIT_REQUIRE_SIMD();
  std::mt19937_64 rng(14);
  for (auto [rows, cols] : kShapes) {
    for (Fp8ScaleKind kind : {Fp8ScaleKind::E8M0, Fp8ScaleKind::F32}) {
      const Fp8BlockShape shape{rows, cols, kind};
      for (int round = 0; round < 2; ++round) {
        const auto v = adversarial(shape, rng);
        for (DType dtype : kSourceTypes) {
          check_quantize(v, dtype, shape);
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST(Fp8BlockKernelsTest, QuantizeUniformBlocks) {
  FP4KIT_REQUIRE_SIMD();
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (float x : {0.0f, -0.0f, nan, -nan, inf, -inf, 1.0f, -448.0f, 1e-4f, 0x1p-149f, 3e38f}) {
    for (Fp8ScaleKind kind : {Fp8ScaleKind::E8M0, Fp8ScaleKind::F32}) {
      const Fp8BlockShape shape{130, 140, kind};
      for (DType dtype : kSourceTypes) check_quantize(std::vector<float>(130 * 140, x), dtype, shape);
    }
  }
}

TEST(Fp8BlockKernelsTest, QuantizeEveryBf16AndF16BitPattern) {
  FP4KIT_REQUIRE_SIMD();
  // 65536 values as a 256x256 tensor (four blocks), in order and shuffled
  std::vector<uint16_t> all(65536);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  std::mt19937_64 rng(15);
  for (int shuffled = 0; shuffled < 2; ++shuffled) {
    if (shuffled) std::shuffle(all.begin(), all.end(), rng);
    std::vector<uint8_t> bytes(all.size() * 2);
    std::memcpy(bytes.data(), all.data(), bytes.size());
    for (DType dtype : {DType::BF16, DType::F16}) {
      for (Fp8ScaleKind kind : {Fp8ScaleKind::E8M0, Fp8ScaleKind::F32}) {
        for (auto [rows, cols] : {std::pair<size_t, size_t>{256, 256}, {64, 1024}, {1024, 64}, {65536, 1}})
          check_quantize_bytes(bytes, dtype, Fp8BlockShape{rows, cols, kind});
      }
    }
  }
}

}  // namespace
}  // namespace fp4kit
