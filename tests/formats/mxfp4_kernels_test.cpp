// The SIMD MXFP4 kernels, on every ISA this CPU runs, against the scalar reference, byte for byte.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "formats/bf16.h"
#include "formats/dtype.h"
#include "formats/f16.h"
#include "formats/float_bits.h"
#include "formats/float_span.h"
#include "formats/isa.h"
#include "formats/mxfp4.h"
#include "formats/mxfp4_cast.h"
#include "isa_cases.h"

namespace fp4kit {
namespace {

constexpr uint8_t kSentinel = 0xA5;
constexpr size_t kGuard = 64;  // bytes past the end of every output, which must stay untouched

const Mxfp4Kernels& scalar() { return mxfp4_kernels(Isa::Scalar); }

// Both dequant kernels of the reference and of every SIMD ISA on the same input, at several
// output/input misalignments.
void check_dequant(const std::vector<uint8_t>& packed, const std::vector<uint8_t>& scales, size_t n) {
  ASSERT_GE(packed.size(), (n + 1) / 2);
  ASSERT_GE(scales.size(), (n + kMxfp4BlockSize - 1) / kMxfp4BlockSize);
  for (size_t off : {0, 1, 3}) {
    std::vector<uint8_t> in_packed(off + packed.size()), in_scales(off + scales.size());
    std::copy(packed.begin(), packed.end(), in_packed.begin() + off);
    std::copy(scales.begin(), scales.end(), in_scales.begin() + off);
    std::vector<float> a(n + off + kGuard / 4);
    std::memset(a.data(), kSentinel, a.size() * 4);
    scalar().dequantize_f32(in_packed.data() + off, in_scales.data() + off, n, a.data() + off);
    std::vector<uint16_t> a16(n + off + kGuard / 2);
    std::memset(a16.data(), kSentinel, a16.size() * 2);
    scalar().dequantize_bf16(in_packed.data() + off, in_scales.data() + off, n, a16.data() + off);
    for (Isa isa : simd_isas()) {
      SCOPED_TRACE(::testing::Message() << isa_name(isa) << " n=" << n << " offset=" << off);
      const Mxfp4Kernels& k = mxfp4_kernels(isa);
      std::vector<float> b(a.size());
      std::memset(b.data(), kSentinel, b.size() * 4);
      k.dequantize_f32(in_packed.data() + off, in_scales.data() + off, n, b.data() + off);
      ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << "dequantize_f32 differs";
      std::vector<uint16_t> b16(a16.size());
      std::memset(b16.data(), kSentinel, b16.size() * 2);
      k.dequantize_bf16(in_packed.data() + off, in_scales.data() + off, n, b16.data() + off);
      ASSERT_EQ(0, std::memcmp(a16.data(), b16.data(), a16.size() * 2)) << "dequantize_bf16 differs";
    }
  }
}

// Quantize `n` elements stored in `bytes` as `dtype` with the reference and every SIMD ISA; compare
// all outputs.
void check_quantize(const std::vector<uint8_t>& bytes, DType dtype, size_t n) {
  const size_t width = dtype_bits(dtype) / 8;
  ASSERT_GE(bytes.size(), n * width);
  const size_t groups = n / kMxfp4BlockSize;
  for (size_t off : {0, 1}) {
    std::vector<uint8_t> in(off * width + n * width);
    if (n) std::memcpy(in.data() + off * width, bytes.data(), n * width);
    const FloatSpan src{in.data() + off * width, dtype, n};
    std::vector<uint8_t> pa(off + groups * 16 + kGuard, kSentinel), sa(off + groups + kGuard, kSentinel);
    scalar().quantize(src, pa.data() + off, sa.data() + off);
    for (Isa isa : simd_isas()) {
      SCOPED_TRACE(::testing::Message() << isa_name(isa) << " n=" << n << " dtype=" << dtype_name(dtype)
                                        << " offset=" << off);
      std::vector<uint8_t> pb(pa.size(), kSentinel), sb(sa.size(), kSentinel);
      mxfp4_kernels(isa).quantize(src, pb.data() + off, sb.data() + off);
      ASSERT_EQ(0, std::memcmp(sa.data(), sb.data(), sa.size())) << "scales differ";
      if (std::memcmp(pa.data(), pb.data(), pa.size()) != 0) {
        for (size_t i = 0; i < pa.size(); ++i) {
          if (pa[i] != pb[i]) {
            const size_t e = 2 * (i - off);
            FAIL() << "packed byte " << i - off << " differs: scalar 0x" << std::hex << int(pa[i]) << " simd 0x"
                   << int(pb[i]) << std::dec << " (elements " << e << "," << e + 1 << " = " << src.at(e) << ", "
                   << src.at(e + 1) << ")";
          }
        }
      }
    }
  }
}

std::vector<uint8_t> as_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> out(v.size() * 4);
  if (!v.empty()) std::memcpy(out.data(), v.data(), out.size());
  return out;
}
std::vector<uint8_t> as_bytes(const std::vector<uint16_t>& v) {
  std::vector<uint8_t> out(v.size() * 2);
  if (!v.empty()) std::memcpy(out.data(), v.data(), out.size());
  return out;
}

// f32 values -> the bytes of `dtype` (BF16/F16 by their RNE casts).
std::vector<uint8_t> encode(const std::vector<float>& v, DType dtype) {
  if (dtype == DType::F32) return as_bytes(v);
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    h[i] = dtype == DType::BF16 ? BF16::from_float(v[i]).bits : F16::from_float(v[i]).bits;
  return as_bytes(h);
}

constexpr DType kSourceTypes[] = {DType::F32, DType::BF16, DType::F16};

// ---- dequantize -----------------------------------------------------------------------------

TEST(Mxfp4KernelsTest, DequantRandomRealisticScales) {
  FP4KIT_REQUIRE_SIMD();
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<int> byte(0, 255), scale(110, 135);
  for (size_t n : {size_t{0}, size_t{1}, size_t{2}, size_t{7}, size_t{31}, size_t{32}, size_t{33}, size_t{63},
                   size_t{64}, size_t{65}, size_t{96}, size_t{127}, size_t{129}, size_t{200}, size_t{255},
                   size_t{256}, size_t{257}, size_t{288}, size_t{480}, size_t{512}, size_t{544}, size_t{1000},
                   size_t{7168}, size_t{7168 * 3 + 32}, size_t{2048 * 40 + 17},
                   // tails of 4, 8, 16 and 64 elements after whole groups
                   size_t{4}, size_t{8}, size_t{16}, size_t{64 * 32 + 4}, size_t{64 * 32 + 8}, size_t{64 * 32 + 16},
                   size_t{64 * 32 + 64}, size_t{63 * 32 + 48}}) {
    std::vector<uint8_t> packed((n + 1) / 2), scales((n + 31) / 32);
    for (auto& p : packed) p = static_cast<uint8_t>(byte(rng));
    for (auto& s : scales) s = static_cast<uint8_t>(scale(rng));
    check_dequant(packed, scales, n);
  }
}

TEST(Mxfp4KernelsTest, DequantAllScaleBytesAllPackedBytes) {
  FP4KIT_REQUIRE_SIMD();
  // Scale byte s for 16 consecutive groups whose packed bytes run through 0..255: every code
  // pair at every scale, including 0 (2^-127, an f32 subnormal) and 0xFF (NaN).
  const size_t per_scale = 512;  // elements: 256 packed bytes
  const size_t n = 256 * per_scale;
  std::vector<uint8_t> packed(n / 2), scales(n / 32);
  for (size_t i = 0; i < packed.size(); ++i) packed[i] = static_cast<uint8_t>(i);
  for (size_t g = 0; g < scales.size(); ++g) scales[g] = static_cast<uint8_t>(g / (per_scale / 32));
  check_dequant(packed, scales, n);
  // and shuffled scales, so neighbouring groups (one vector pair) have unrelated scales
  std::mt19937_64 rng(2);
  std::shuffle(scales.begin(), scales.end(), rng);
  check_dequant(packed, scales, n);
  check_dequant(packed, scales, n - 32 - 5);
}

TEST(Mxfp4KernelsTest, DequantEdgeScales) {
  FP4KIT_REQUIRE_SIMD();
  std::mt19937_64 rng(3);
  const uint8_t edge[] = {0, 1, 2, 126, 127, 128, 252, 253, 254, 255};
  std::uniform_int_distribution<int> byte(0, 255), pick(0, sizeof(edge) - 1);
  for (size_t n : {size_t{32}, size_t{64}, size_t{256}, size_t{320}, size_t{4096}, size_t{4096 + 48}}) {
    std::vector<uint8_t> packed(n / 2 + 1), scales(n / 32 + 1);
    for (auto& p : packed) p = static_cast<uint8_t>(byte(rng));
    for (auto& s : scales) s = edge[pick(rng)];
    check_dequant(packed, scales, n);
    // all-zero codes (0x0 and 0x8: +0.0 in DeepSeek's table)
    for (auto& p : packed) p = static_cast<uint8_t>((byte(rng) & 1 ? 0x08 : 0x00) | (byte(rng) & 1 ? 0x80 : 0x00));
    check_dequant(packed, scales, n);
  }
}

// ---- quantize -------------------------------------------------------------------------------

// Groups of realistic weights: N(0,1) times a per-group power of two.
std::vector<float> realistic(size_t n, std::mt19937_64& rng, int emin, int emax) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(emin, emax);
  std::vector<float> v(n);
  for (size_t g = 0; g < n; g += 32) {
    const float m = std::ldexp(1.0f, exponent(rng));
    for (size_t j = g; j < std::min(n, g + 32); ++j) v[j] = normal(rng) * m;
  }
  return v;
}

TEST(Mxfp4KernelsTest, QuantizeRandomRealistic) {
  FP4KIT_REQUIRE_SIMD();
  std::mt19937_64 rng(4);
  for (DType dtype : kSourceTypes) {
    for (size_t groups : {size_t{0}, size_t{1}, size_t{2}, size_t{7}, size_t{8}, size_t{9}, size_t{15},
                          size_t{16}, size_t{17}, size_t{64}, size_t{224}, size_t{1000}, size_t{3}, size_t{4},
                          size_t{5}, size_t{31}, size_t{33}, size_t{63}, size_t{65}}) {
      const size_t n = groups * 32;
      const int emin = dtype == DType::F16 ? -12 : -40, emax = dtype == DType::F16 ? 10 : 30;
      check_quantize(encode(realistic(n, rng, emin, emax), dtype), dtype, n);
    }
  }
}

TEST(Mxfp4KernelsTest, QuantizeIgnoresTrailingPartialGroup) {
  FP4KIT_REQUIRE_SIMD();
  std::mt19937_64 rng(5);
  const auto v = realistic(8 * 32 + 40, rng, -5, 5);
  for (size_t n : {size_t{8 * 32 + 1}, size_t{8 * 32 + 31}, size_t{31}, size_t{8 * 32 + 40}}) check_quantize(encode(v, DType::F32), DType::F32, n);
}

// Special f32 values mixed into groups with a chosen scale exponent.
std::vector<float> adversarial(size_t groups, std::mt19937_64& rng) {
  const float inf = std::numeric_limits<float>::infinity();
  const float specials[] = {0.0f, -0.0f, std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
                            f32_from_bits(0x7F800001u), f32_from_bits(0xFFC12345u), inf, -inf,
                            std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                            std::numeric_limits<float>::min(), -std::numeric_limits<float>::min(),
                            std::numeric_limits<float>::denorm_min(), f32_from_bits(0x007FFFFFu), f32_from_bits(0x80000003u),
                            6.0f * 0x1p-126f, std::nextafter(6.0f * 0x1p-126f, 0.0f), std::nextafter(6.0f * 0x1p-126f, 1.0f)};
  // E2M1 decision points and grid values (multiplied by the group scale below)
  const float ties[] = {0.0f, 0.25f, 0.5f, 0.75f, 1.0f, 1.25f, 1.5f, 1.75f, 2.0f, 2.5f, 3.0f, 3.5f, 4.0f, 5.0f, 6.0f};
  std::uniform_int_distribution<int> kind(0, 9), special(0, sizeof(specials) / 4 - 1), tie(0, sizeof(ties) / 4 - 1);
  std::uniform_int_distribution<int> exponent(-135, 130), sign(0, 1), nudge(-1, 1);
  std::uniform_int_distribution<uint32_t> bits;
  std::vector<float> v(groups * 32);
  for (size_t g = 0; g < groups; ++g) {
    float* x = v.data() + g * 32;
    const int k = exponent(rng);
    const int mode = kind(rng);
    for (size_t j = 0; j < 32; ++j) {
      float y;
      switch (mode) {
        case 0: y = f32_from_bits(bits(rng)); break;                 // any bit pattern
        case 1: y = specials[special(rng)]; break;                    // specials only
        case 2: y = 0.0f; break;                                      // all zero
        case 3: y = -0.0f; break;                                     // all -0
        case 4: y = f32_from_bits(bits(rng) & 0x807FFFFFu); break;    // subnormals
        default: {                                                     // ties at scale 2^k, +-1 ulp
          y = std::ldexp(ties[tie(rng)], k);
          const int d = nudge(rng);
          if (d && y != 0.0f) y = std::nextafter(y, d > 0 ? inf : 0.0f);
          if (j % 11 == 3 && mode == 9) y = specials[special(rng)];
          break;
        }
      }
      x[j] = sign(rng) ? -y : y;
    }
    if (mode >= 5 && mode <= 7) x[g % 32] = std::ldexp(6.0f, k);  // amax = 6*2^k exactly (s = 2^k)
  }
  return v;
}

TEST(Mxfp4KernelsTest, QuantizeAdversarial) {
  FP4KIT_REQUIRE_SIMD();
  std::mt19937_64 rng(6);
  for (int round = 0; round < 20; ++round) {
    const size_t groups = 8 * static_cast<size_t>(round) + static_cast<size_t>(round % 5);
    const auto v = adversarial(groups, rng);
    for (DType dtype : kSourceTypes) check_quantize(encode(v, dtype), dtype, groups * 32);
  }
}

TEST(Mxfp4KernelsTest, QuantizeSpecialGroups) {
  FP4KIT_REQUIRE_SIMD();
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // 8-group chunks where one group holds Inf or NaN and the others are ordinary
  std::mt19937_64 rng(7);
  for (float special : {inf, -inf, nan, -nan, std::numeric_limits<float>::max()}) {
    for (size_t where : {size_t{0}, size_t{5 * 32 + 7}, size_t{8 * 32 - 1}, size_t{9 * 32 + 31}}) {
      auto v = realistic(16 * 32 + 64, rng, -3, 3);
      v[where] = special;
      for (DType dtype : kSourceTypes) check_quantize(encode(v, dtype), dtype, v.size());
    }
  }
  // whole groups of one value
  for (float x : {0.0f, -0.0f, nan, -nan, inf, -inf, 1.0f, -6.0f, 0x1p-149f, 0x1p-127f, 6.0f * 0x1p-126f, 1e38f}) {
    std::vector<float> v(24 * 32, x);
    for (DType dtype : kSourceTypes) check_quantize(encode(v, dtype), dtype, v.size());
  }
}

TEST(Mxfp4KernelsTest, QuantizeEveryBf16AndF16BitPattern) {
  FP4KIT_REQUIRE_SIMD();
  std::vector<uint16_t> all(65536);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  std::mt19937_64 rng(8);
  for (int shuffled = 0; shuffled < 3; ++shuffled) {
    if (shuffled) std::shuffle(all.begin(), all.end(), rng);
    check_quantize(as_bytes(all), DType::BF16, all.size());
    check_quantize(as_bytes(all), DType::F16, all.size());
  }
}

TEST(Mxfp4KernelsTest, QuantizeRandomF32BitPatterns) {
  FP4KIT_REQUIRE_SIMD();
  std::mt19937_64 rng(9);
  std::uniform_int_distribution<uint32_t> bits;
  std::uniform_int_distribution<int> exponent(0, 255);
  std::vector<float> v(4096 * 32);
  // random exponents (uniform bit patterns are mostly huge or tiny), random mantissas and signs
  for (auto& x : v) x = f32_from_bits((bits(rng) & 0x807FFFFFu) | (static_cast<uint32_t>(exponent(rng)) << 23));
  check_quantize(encode(v, DType::F32), DType::F32, v.size());
  for (auto& x : v) x = f32_from_bits(bits(rng));
  check_quantize(encode(v, DType::F32), DType::F32, v.size());
}

// ---- lossless cast to NVFP4 -----------------------------------------------------------------

// Casts `n` elements with every ISA under the same constants; outputs and counts must agree with the
// reference's.
void check_cast(const std::vector<uint8_t>& packed, const std::vector<uint8_t>& scales, size_t n, int k_max_shared) {
  const size_t groups = n / kMxfp4BlockSize;
  const Mxfp4CastParams params = mxfp4_cast_params(scales.data(), groups, k_max_shared);
  const Mxfp4CastTable table(scales.data(), groups, params);
  std::vector<uint8_t> pa(n / 2 + kGuard, kSentinel), sa(n / 16 + kGuard, kSentinel);
  const Mxfp4CastStats a = mxfp4_cast_kernel(Isa::Scalar)(packed.data(), scales.data(), n, table, pa.data(), sa.data());
  for (Isa isa : simd_isas()) {
    std::vector<uint8_t> pb(n / 2 + kGuard, kSentinel), sb(n / 16 + kGuard, kSentinel);
    const Mxfp4CastStats b = mxfp4_cast_kernel(isa)(packed.data(), scales.data(), n, table, pb.data(), sb.data());
    SCOPED_TRACE(::testing::Message() << isa_name(isa) << " n=" << n << " k_own=" << params.k_own
                                      << " k_max_shared=" << k_max_shared);
    ASSERT_EQ(0, std::memcmp(sa.data(), sb.data(), sa.size())) << "block scales differ";
    for (size_t i = 0; i < pa.size(); ++i)
      ASSERT_EQ(pa[i], pb[i]) << "packed byte " << i << " (group " << i / 16 << ", scale byte "
                              << (i / 16 < groups ? int(scales[i / 16]) : -1) << ", source 0x" << std::hex
                              << (i < n / 2 ? int(packed[i]) : -1) << ")";
    EXPECT_EQ(a.groups, b.groups);
    EXPECT_EQ(a.zero_scale_groups, b.zero_scale_groups);
    EXPECT_EQ(a.reported_lossless, b.reported_lossless);
    EXPECT_EQ(a.exact_groups, b.exact_groups);
  }
}

TEST(Mxfp4CastKernels, EveryScaleByteEveryPackedByte) {
  FP4KIT_REQUIRE_SIMD();
  // 16 groups per scale byte whose packed bytes run through 0..255: every nibble pair at every E8M0
  // byte 0..255 (0 and 0xFF included), under several k_max: most bytes then lie outside the
  // E4M3 window, where the block amax depends on the group's largest code.
  const size_t per_scale = 512, n = 256 * per_scale;
  std::vector<uint8_t> packed(n / 2), scales(n / 32);
  for (size_t i = 0; i < packed.size(); ++i) packed[i] = static_cast<uint8_t>(i);
  for (size_t g = 0; g < scales.size(); ++g) scales[g] = static_cast<uint8_t>(g / (per_scale / 32));
  for (int k_max : {-127, -40, 0, 3, 60, 128}) check_cast(packed, scales, n, k_max);
  std::mt19937_64 rng(21);
  std::shuffle(scales.begin(), scales.end(), rng);
  check_cast(packed, scales, n, 0);
  check_cast(packed, scales, n - 32, 5);  // an odd number of groups: the single-group tail
}

TEST(Mxfp4CastKernels, RealisticAdversarialAndZeroGroups) {
  FP4KIT_REQUIRE_SIMD();
  std::mt19937_64 rng(22);
  std::uniform_int_distribution<int> byte(0, 255), realistic_scale(116, 124), far(0, 254);
  for (size_t groups : {size_t{1}, size_t{2}, size_t{3}, size_t{64}, size_t{1001}}) {
    const size_t n = groups * 32;
    std::vector<uint8_t> packed(n / 2), scales(groups);
    for (auto& p : packed) p = static_cast<uint8_t>(byte(rng));
    for (auto& s : scales) s = static_cast<uint8_t>(realistic_scale(rng));
    check_cast(packed, scales, n, 124 - 127);
    // groups far below the window, zero scale bytes, and groups of zero codes (0x0 / 0x8 only)
    for (size_t g = 0; g < groups; g += 3) scales[g] = static_cast<uint8_t>(far(rng));
    for (size_t g = 1; g < groups; g += 5) scales[g] = 0;
    for (size_t g = 2; g < groups; g += 4)
      for (size_t j = 0; j < 16; ++j) packed[g * 16 + j] = static_cast<uint8_t>((byte(rng) & 0x88));
    const int k_own = mxfp4_max_exponent(scales.data(), groups, -127);
    check_cast(packed, scales, n, k_own);
    check_cast(packed, scales, n, k_own + 4);  // the partner's k_max is larger
  }
}

TEST(Mxfp4CastKernels, RowPiecesGiveTheWholeTensorsBytes) {
  // What convert does on many threads: the same table, the tensor cut at arbitrary row bounds.
  std::mt19937_64 rng(23);
  std::uniform_int_distribution<int> byte(0, 255), scale(100, 130);
  const size_t rows = 37, cols = 256, n = rows * cols;
  std::vector<uint8_t> packed(n / 2), scales(n / 32);
  for (auto& p : packed) p = static_cast<uint8_t>(byte(rng));
  for (auto& s : scales) s = static_cast<uint8_t>(scale(rng));
  const Mxfp4CastParams params = mxfp4_cast_params(scales.data(), scales.size(), 3);
  const Mxfp4CastTable table(scales.data(), scales.size(), params);
  for (Isa isa : all_isas()) {
    SCOPED_TRACE(isa_name(isa));
    std::vector<uint8_t> whole_p(n / 2), whole_s(n / 16), piece_p(n / 2), piece_s(n / 16);
    const Mxfp4CastStats whole =
        mxfp4_cast_kernel(isa)(packed.data(), scales.data(), n, table, whole_p.data(), whole_s.data());
    Mxfp4CastStats sum;
    for (size_t a = 0; a < rows;) {
      const size_t b = std::min(rows, a + 1 + static_cast<size_t>(byte(rng) % 7));
      sum += mxfp4_cast_kernel(isa)(packed.data() + a * cols / 2, scales.data() + a * cols / 32, (b - a) * cols, table,
                                    piece_p.data() + a * cols / 2, piece_s.data() + a * cols / 16);
      a = b;
    }
    EXPECT_EQ(whole_p, piece_p);
    EXPECT_EQ(whole_s, piece_s);
    EXPECT_EQ(whole.exact_groups, sum.exact_groups);
    EXPECT_EQ(whole.reported_lossless, sum.reported_lossless);
  }
}

}  // namespace
}  // namespace fp4kit
