// NVFP4 activation quantization on the GPU against the CPU reference (formats/nvfp4_activation.h):
// byte for byte in Exact mode (linear and swizzled scales, ragged M, random and adversarial rows),
// the decode and the fused quantize-decode bit for bit, the Fast (vLLM rcp.approx) mode counted
// against Exact, and the W4A4 emulation against a CPU fake-quant + f32 matmul.
//
// Every output buffer is filled with 0xFF and then 0x00 before two runs that must both match, so
// a byte the kernel leaves unwritten cannot pass.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"
#include "cuda/activation_quantize.h"
#include "cuda/runtime.h"
#include "cuda/w4a4_emulation.h"
#include "cuda/weight_gemm.h"
#include "engine/matmul.h"
#include "formats/bf16.h"
#include "formats/e2m1.h"
#include "formats/e4m3.h"
#include "formats/nvfp4_activation.h"
#include "gpu_test.h"

namespace fp4kit::cuda {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

uint16_t bf16(float f) { return BF16::from_float(f).bits; }

// Rows of different kinds, chosen by (row + seed) % 9, each block of 16 drawn on its own:
//  0 normal values, 1 normal values with a per-block magnitude 2^[-12, 12] (saturating scales),
//  2 zeros (some -0.0), 3 small values with one huge spike per row, 4 NaNs (some blocks all NaN,
//  some NaN among zeros), 5 +-Inf in some blocks, 6 tiny values 2^[-24, -10] (E4M3 subnormal or
//  zero scales), 7 values on the E2M1 rounding ties once scaled by a power-of-two global scale,
//  8 random bit patterns (every BF16 class: subnormals, Inf, NaN payloads).
std::vector<uint16_t> activations(int64_t m, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 15), coin(0, 2), bits(0, 0xFFFF);
  const float ties[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  std::vector<uint16_t> x(static_cast<size_t>(m * k));
  for (int64_t r = 0; r < m; ++r) {
    const int kind = static_cast<int>((r + seed) % 9);
    uint16_t* row = x.data() + r * k;
    for (int64_t b = 0; b < k / 16; ++b) {
      uint16_t* blk = row + b * 16;
      const int octave_wide = std::uniform_int_distribution<int>(-12, 12)(rng);
      const int octave_tiny = std::uniform_int_distribution<int>(-24, -10)(rng);
      const int octave_tie = std::uniform_int_distribution<int>(-8, 0)(rng);
      for (int i = 0; i < 16; ++i) {
        float v = 0.0f;
        switch (kind) {
          case 0: v = normal(rng); break;
          case 1: v = std::ldexp(normal(rng), octave_wide); break;
          case 2: v = coin(rng) == 0 ? -0.0f : 0.0f; break;
          case 3: v = 0.01f * normal(rng); break;
          case 4: v = normal(rng); break;
          case 5: v = normal(rng); break;
          case 6: v = std::ldexp(normal(rng), octave_tiny); break;
          case 7: v = (coin(rng) == 0 ? -1.0f : 1.0f) * std::ldexp(ties[pick(rng) % 14], octave_tie); break;
          default: blk[i] = static_cast<uint16_t>(bits(rng)); continue;
        }
        blk[i] = bf16(v);
      }
      if (kind == 4) {
        if (b % 5 == 0) std::fill(blk, blk + 16, bf16(kNaN));
        if (b % 5 == 1) {
          blk[pick(rng)] = bf16(kNaN);
          blk[pick(rng)] = 0xFFC1;  // a negative NaN with a payload
        }
        if (b % 5 == 2) {
          std::fill(blk, blk + 16, bf16(0.0f));
          blk[pick(rng)] = bf16(kNaN);
        }
      }
      if (kind == 5 && b % 3 == 0) blk[pick(rng)] = bf16(coin(rng) == 0 ? -kInf : kInf);
      if (kind == 7) blk[pick(rng)] = bf16(std::ldexp(6.0f, octave_tie));  // amax 6 * 2^e: SF 2^(e+8) at gs 256
    }
    if (kind == 3) row[std::uniform_int_distribution<int64_t>(0, k - 1)(rng)] = bf16(coin(rng) == 0 ? 3e38f : 1e4f);
  }
  return x;
}

std::string hex(uint32_t v, int digits) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%0*X", digits, v);
  return buf;
}

std::string block_text(const std::vector<uint16_t>& x, int64_t k, int64_t row, int64_t col) {
  std::string s;
  for (int i = 0; i < 16; ++i) {
    const uint16_t b = x[row * k + col * 16 + i];
    char buf[48];
    std::snprintf(buf, sizeof buf, "%s%g(%04X)", i ? " " : "", BF16{b}.to_float(), b);
    s += buf;
  }
  return s;
}

struct Config {
  int64_t m, k;
  float gs;
  Nvfp4ScaleLayout layout;
};

std::string text(const Config& c) {
  return "M=" + std::to_string(c.m) + " K=" + std::to_string(c.k) + " gs=" + std::to_string(c.gs) +
         (c.layout == Nvfp4ScaleLayout::Linear ? " linear" : " swizzled");
}

struct Quantized {
  std::vector<uint8_t> packed, scales;
};

Quantized cpu_quantize(const std::vector<uint16_t>& x, const Config& c) {
  Quantized q{std::vector<uint8_t>(static_cast<size_t>(c.m * c.k / 2)),
              std::vector<uint8_t>(static_cast<size_t>(nvfp4_scale_bytes(c.m, c.k / 16, c.layout)))};
  quantize_activation_ref(x.data(), c.m, c.k, c.gs, c.layout, q.packed.data(), q.scales.data());
  return q;
}

// One GPU run on outputs pre-filled with `poison`.
Quantized gpu_quantize(const DeviceBuffer& dx, const Config& c, ActivationQuantMath math, uint8_t poison, Stream& s) {
  Quantized q{std::vector<uint8_t>(static_cast<size_t>(c.m * c.k / 2)),
              std::vector<uint8_t>(static_cast<size_t>(nvfp4_scale_bytes(c.m, c.k / 16, c.layout)))};
  DeviceBuffer dp(q.packed.size() + 8, "packed"), ds(q.scales.size() + 8, "scales");
  fill_bytes(dp.data(), poison, dp.bytes(), s);
  fill_bytes(ds.data(), poison, ds.bytes(), s);
  quantize_activation(dx.data<uint16_t>(), c.m, c.k, c.gs, c.layout, dp.data<uint8_t>(), ds.data<uint8_t>(), s.get(),
                      math);
  copy_to_host(q.packed.data(), dp.data(), q.packed.size(), s);
  copy_to_host(q.scales.data(), ds.data(), q.scales.size(), s);
  // The 8 bytes past each output must stay untouched.
  uint8_t tail[16];
  copy_to_host(tail, dp.data<uint8_t>() + q.packed.size(), 8, s);
  copy_to_host(tail + 8, ds.data<uint8_t>() + q.scales.size(), 8, s);
  s.synchronize();
  for (int i = 0; i < 16; ++i) EXPECT_EQ(tail[i], poison) << text(c) << ": wrote past the end of the " << (i < 8 ? "packed" : "scale") << " output";
  return q;
}

// Byte-for-byte comparison; the first mismatches are printed with the block's inputs.
bool same_bytes(const Quantized& want, const Quantized& got, const std::vector<uint16_t>& x, const Config& c,
                const char* run) {
  const int64_t cols = c.k / 16;
  int printed = 0;
  int64_t bad_packed = 0, bad_scales = 0;
  for (int64_t r = 0; r < c.m; ++r)
    for (int64_t b = 0; b < cols; ++b) {
      const int64_t so = nvfp4_scale_offset(r, b, cols, c.layout);
      const bool scale_ok = want.scales[so] == got.scales[so];
      bool packed_ok = true;
      for (int j = 0; j < 8; ++j) packed_ok &= want.packed[r * c.k / 2 + b * 8 + j] == got.packed[r * c.k / 2 + b * 8 + j];
      bad_scales += !scale_ok;
      bad_packed += !packed_ok;
      if ((!scale_ok || !packed_ok) && printed++ < 5) {
        std::string w, g;
        for (int j = 0; j < 8; ++j) {
          w += hex(want.packed[r * c.k / 2 + b * 8 + j], 2);
          g += hex(got.packed[r * c.k / 2 + b * 8 + j], 2);
        }
        ADD_FAILURE() << text(c) << " (" << run << "): row " << r << " block " << b << " scale byte offset " << so
                      << ": scale want " << hex(want.scales[so], 2) << " got " << hex(got.scales[so], 2)
                      << ", packed want " << w << " got " << g << "\n  inputs: " << block_text(x, c.k, r, b);
      }
    }
  // Padding of the swizzled layout: zero bytes.
  int64_t bad_padding = 0;
  if (c.layout == Nvfp4ScaleLayout::Swizzled128x4) {
    const int64_t rows = nvfp4_swizzled_scale_rows(c.m), pcols = nvfp4_swizzled_scale_cols(cols);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t b = 0; b < pcols; ++b) {
        if (r < c.m && b < cols) continue;
        const int64_t so = nvfp4_swizzled_scale_offset(r, b, cols);
        if (got.scales[so] != 0 && bad_padding++ < 5)
          ADD_FAILURE() << text(c) << " (" << run << "): padding scale (" << r << ", " << b << ") at " << so << " is "
                        << hex(got.scales[so], 2) << ", want 00";
      }
  }
  if (bad_packed || bad_scales || bad_padding)
    ADD_FAILURE() << text(c) << " (" << run << "): " << bad_scales << " scale bytes, " << bad_packed
                  << " packed blocks, " << bad_padding << " padding bytes differ";
  return bad_packed == 0 && bad_scales == 0 && bad_padding == 0;
}

DeviceBuffer upload(const std::vector<uint16_t>& x, Stream& s) {
  DeviceBuffer d(x.size() * 2 + 32, "activations");
  copy_to_device(d.data(), x.data(), x.size() * 2, s);
  return d;
}

TEST(CudaActivationQuantize, ExactMatchesTheCpuReferenceByteForByte) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  const int64_t ms[] = {1, 3, 127, 129, 4096};
  const int64_t ks[] = {16, 48, 7168};
  uint32_t seed = 1;
  for (const int64_t m : ms)
    for (const int64_t k : ks) {
      const std::vector<uint16_t> x = activations(m, k, seed++);
      const DeviceBuffer dx = upload(x, s);
      // A ModelOpt-like scale (input_scale = 10/2688) everywhere; on the smaller shapes also a power
      // of two (exact ties), one that underflows every scale and one that saturates them.
      std::vector<float> scales = {1.0f / (10.0f / 2688.0f)};
      if (m * k <= 129 * 7168) scales.insert(scales.end(), {256.0f, 1e-3f, 3e5f});
      for (const float gs : scales)
        for (const Nvfp4ScaleLayout layout : {Nvfp4ScaleLayout::Linear, Nvfp4ScaleLayout::Swizzled128x4}) {
          const Config c{m, k, gs, layout};
          const Quantized want = cpu_quantize(x, c);
          if (!same_bytes(want, gpu_quantize(dx, c, ActivationQuantMath::Exact, 0xFF, s), x, c, "poison FF")) return;
          if (!same_bytes(want, gpu_quantize(dx, c, ActivationQuantMath::Exact, 0x00, s), x, c, "poison 00")) return;
        }
    }
}

// E2M1 magnitude step between two codes of the same sign, or 99 across signs.
int code_distance(uint8_t a, uint8_t b) {
  if ((a & 8) != (b & 8)) return 99;
  return std::abs(int(a & 7) - int(b & 7));
}

TEST(CudaActivationQuantize, FastReciprocalsDifferOnlyOnRoundingBoundaries) {
  // vLLM's rcp.approx.ftz against the exact reciprocals: the counts are printed; asserted is only
  // what the approximation's error (an ulp or two) allows: a scale byte one code away at most, and in
  // blocks with the same scale, codes one step away at most with the same sign.
  FP4KIT_REQUIRE_GPU();
  Stream s;
  const int64_t m = 4096, k = 7168;
  std::vector<uint16_t> x = activations(m, k, 77);
  const DeviceBuffer dx = upload(x, s);
  for (const float gs : {1.0f / (10.0f / 2688.0f), 256.0f, 1.0f / 3e-4f}) {
    const Config c{m, k, gs, Nvfp4ScaleLayout::Linear};
    const Quantized exact = gpu_quantize(dx, c, ActivationQuantMath::Exact, 0xFF, s);
    const Quantized fast = gpu_quantize(dx, c, ActivationQuantMath::Fast, 0xFF, s);
    const Quantized fast0 = gpu_quantize(dx, c, ActivationQuantMath::Fast, 0x00, s);
    ASSERT_EQ(fast.packed, fast0.packed) << text(c) << ": fast mode leaves packed bytes unwritten";
    ASSERT_EQ(fast.scales, fast0.scales) << text(c) << ": fast mode leaves scale bytes unwritten";
    int64_t scale_diff = 0, block_diff = 0, code_diff = 0, far = 0;
    for (int64_t blk = 0; blk < m * k / 16; ++blk) {
      const uint8_t se = exact.scales[blk], sf = fast.scales[blk];
      const bool nan_e = E4M3{se}.is_nan(), nan_f = E4M3{sf}.is_nan();
      if (se != sf) {
        ++scale_diff;
        if (nan_e || nan_f || std::abs(int(se) - int(sf)) > 1) {
          if (far++ < 5)
            ADD_FAILURE() << text(c) << " block " << blk << ": scale exact " << hex(se, 2) << " fast " << hex(sf, 2)
                          << "\n  inputs: " << block_text(x, k, blk / (k / 16), blk % (k / 16));
        }
      }
      bool differs = se != sf;
      for (int i = 0; i < 16; ++i) {
        const uint8_t ce = unpack_e2m1(exact.packed[blk * 8 + i / 2], i).bits;
        const uint8_t cf = unpack_e2m1(fast.packed[blk * 8 + i / 2], i).bits;
        if (ce == cf) continue;
        differs = true;
        ++code_diff;
        if (se == sf && code_distance(ce, cf) > 1 && far++ < 5)
          ADD_FAILURE() << text(c) << " block " << blk << " element " << i << ": code exact " << hex(ce, 1) << " fast "
                        << hex(cf, 1) << " with the same scale " << hex(se, 2)
                        << "\n  inputs: " << block_text(x, k, blk / (k / 16), blk % (k / 16));
      }
      block_diff += differs;
    }
    std::printf("[ fast vs exact ] %s: %lld of %lld blocks differ (%lld scale bytes, %lld codes)\n", text(c).c_str(),
                static_cast<long long>(block_diff), static_cast<long long>(m * k / 16),
                static_cast<long long>(scale_diff), static_cast<long long>(code_diff));
    EXPECT_EQ(far, 0);
  }
  // Throughput, for the record (bytes read + written per second).
  DeviceBuffer dp(m * k / 2, "packed"), ds(nvfp4_scale_bytes(m, k / 16, Nvfp4ScaleLayout::Swizzled128x4), "scales");
  for (const ActivationQuantMath math : {ActivationQuantMath::Exact, ActivationQuantMath::Fast}) {
    constexpr int kRuns = 20;
    Event start, end;
    start.record(s);
    for (int i = 0; i < kRuns; ++i)
      quantize_activation(dx.data<uint16_t>(), m, k, 268.8f, Nvfp4ScaleLayout::Swizzled128x4, dp.data<uint8_t>(),
                          ds.data<uint8_t>(), s.get(), math);
    end.record(s);
    end.synchronize();
    const double us = Event::elapsed_ms(start, end) * 1e3 / kRuns;
    const double bytes = double(m * k) * 2.0 + double(m * k) / 2.0 + double(m * k) / 16.0;
    std::printf("[ quantize ] M=%lld K=%lld swizzled %s: %.1f us, %.0f GB/s\n", static_cast<long long>(m),
                static_cast<long long>(k), math == ActivationQuantMath::Exact ? "exact" : "fast", us, bytes / us * 1e-3);
  }
}

TEST(CudaActivationQuantize, DecodeMatchesTheCpuBitForBit) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> byte(0, 255);
  const std::pair<int64_t, int64_t> shapes[] = {{3, 48}, {129, 7168}, {1, 4096}};
  for (const auto& [m, k] : shapes)
    for (const Nvfp4ScaleLayout layout : {Nvfp4ScaleLayout::Linear, Nvfp4ScaleLayout::Swizzled128x4})
      for (const float mult : {1.0f, 10.0f / 2688.0f}) {
        // Every scale byte (NaN, subnormals, 448) and every code appear.
        std::vector<uint8_t> packed(static_cast<size_t>(m * k / 2)),
            scales(static_cast<size_t>(nvfp4_scale_bytes(m, k / 16, layout)));
        for (auto& b : packed) b = static_cast<uint8_t>(byte(rng));
        for (size_t i = 0; i < scales.size(); ++i) scales[i] = static_cast<uint8_t>(i % 3 ? byte(rng) : i / 3 % 256);
        std::vector<uint16_t> want(static_cast<size_t>(m * k)), got(want.size());
        dequantize_activation_bf16_ref(packed.data(), scales.data(), layout, m, k, mult, want.data());
        DeviceBuffer dp(packed.size(), "packed"), ds(scales.size(), "scales"), dout(want.size() * 2, "decoded");
        copy_to_device(dp.data(), packed.data(), packed.size(), s);
        copy_to_device(ds.data(), scales.data(), scales.size(), s);
        const std::string what = "M=" + std::to_string(m) + " K=" + std::to_string(k) + " multiplier " +
                                 std::to_string(mult) + (layout == Nvfp4ScaleLayout::Linear ? " linear" : " swizzled");
        for (const uint8_t poison : {uint8_t{0xFF}, uint8_t{0x00}}) {
          fill_bytes(dout.data(), poison, dout.bytes(), s);
          dequantize_activation(dp.data<uint8_t>(), ds.data<uint8_t>(), layout, m, k, mult, dout.data<uint16_t>(), s.get());
          copy_to_host(got.data(), dout.data(), dout.bytes(), s);
          s.synchronize();
          int bad = 0;
          for (size_t i = 0; i < want.size(); ++i) {
            if (want[i] == got[i]) continue;
            if (bad++ < 5) {
              const int64_t r = static_cast<int64_t>(i) / k, b = static_cast<int64_t>(i) % k / 16;
              const uint8_t sb = scales[nvfp4_scale_offset(r, b, k / 16, layout)];
              ADD_FAILURE() << what << ": element (" << r << ", " << i % k << ") code "
                            << hex(unpack_e2m1(packed[i / 2], static_cast<unsigned>(i)).bits, 1) << " scale " << hex(sb, 2) << ": want "
                            << hex(want[i], 4) << " got " << hex(got[i], 4);
            }
          }
          ASSERT_EQ(bad, 0) << what << ", poison " << int(poison);
        }
      }
}

TEST(CudaActivationQuantize, FakeQuantizeIsQuantizeThenDecode) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  const std::pair<int64_t, int64_t> shapes[] = {{129, 7168}, {3, 48}};
  for (const auto& [m, k] : shapes) {
    const std::vector<uint16_t> x = activations(m, k, 9);
    const DeviceBuffer dx = upload(x, s);
    DeviceBuffer dout(x.size() * 2, "fake-quantized"), dp(x.size() / 2, "packed"), ds(x.size() / 16, "scales"),
        dq(x.size() * 2, "decoded");
    for (const float gs : {1.0f / (10.0f / 2688.0f), 256.0f})
      for (const float mult : {1.0f, 10.0f / 2688.0f}) {
        // Exact: against the CPU reference.
        const Config c{m, k, gs, Nvfp4ScaleLayout::Linear};
        const Quantized q = cpu_quantize(x, c);
        std::vector<uint16_t> want(x.size()), got(x.size());
        dequantize_activation_bf16_ref(q.packed.data(), q.scales.data(), c.layout, m, k, mult, want.data());
        // Fast: against the GPU's own two-step path in fast mode.
        quantize_activation(dx.data<uint16_t>(), m, k, gs, c.layout, dp.data<uint8_t>(), ds.data<uint8_t>(), s.get(),
                            ActivationQuantMath::Fast);
        dequantize_activation(dp.data<uint8_t>(), ds.data<uint8_t>(), c.layout, m, k, mult, dq.data<uint16_t>(), s.get());
        std::vector<uint16_t> want_fast(x.size());
        copy_to_host(want_fast.data(), dq.data(), dq.bytes(), s);
        for (const ActivationQuantMath math : {ActivationQuantMath::Exact, ActivationQuantMath::Fast})
          for (const uint8_t poison : {uint8_t{0xFF}, uint8_t{0x00}}) {
            fill_bytes(dout.data(), poison, dout.bytes(), s);
            fake_quantize_activation(dx.data<uint16_t>(), m, k, gs, mult, dout.data<uint16_t>(), s.get(), math);
            copy_to_host(got.data(), dout.data(), dout.bytes(), s);
            s.synchronize();
            const std::vector<uint16_t>& expect = math == ActivationQuantMath::Exact ? want : want_fast;
            int bad = 0;
            for (size_t i = 0; i < x.size(); ++i) {
              if (expect[i] == got[i]) continue;
              if (bad++ < 5)
                ADD_FAILURE() << text(c) << (math == ActivationQuantMath::Exact ? " exact" : " fast") << " multiplier "
                              << mult << ": element (" << i / k << ", " << i % k << ") want " << hex(expect[i], 4)
                              << " got " << hex(got[i], 4) << "\n  inputs: " << block_text(x, k, i / k, i % k / 16);
            }
            ASSERT_EQ(bad, 0);
          }
      }
  }
}

TEST(CudaActivationQuantize, LaunchersRejectBadArguments) {
  // Checked before anything reaches the device: runs without a GPU too.
  alignas(16) static uint16_t x[64];
  alignas(16) static uint8_t p[64], sc[1024];
  const auto lin = Nvfp4ScaleLayout::Linear;
  EXPECT_THROW(quantize_activation(x, 1, 24, 1.0f, lin, p, sc, nullptr), InputError);
  EXPECT_THROW(quantize_activation(x, -1, 16, 1.0f, lin, p, sc, nullptr), InputError);
  EXPECT_THROW(quantize_activation(x, 1, 16, 0.0f, lin, p, sc, nullptr), InputError);
  EXPECT_THROW(quantize_activation(x, 1, 16, kNaN, lin, p, sc, nullptr), InputError);
  EXPECT_THROW(quantize_activation(x, 1, 16, kInf, lin, p, sc, nullptr), InputError);
  EXPECT_THROW(quantize_activation(nullptr, 1, 16, 1.0f, lin, p, sc, nullptr), InputError);
  EXPECT_THROW(quantize_activation(x + 1, 1, 16, 1.0f, lin, p, sc, nullptr), InputError);  // misaligned
  EXPECT_THROW(quantize_activation(x, 1, 16, 1.0f, lin, p + 4, sc, nullptr), InputError);
  EXPECT_THROW(quantize_activation(x, 1, 16, 1.0f, lin, p, nullptr, nullptr), InputError);
  EXPECT_THROW(dequantize_activation(p, sc, lin, 1, 40, 1.0f, x, nullptr), InputError);
  EXPECT_THROW(dequantize_activation(p, sc, lin, 1, 16, 1.0f, x + 4, nullptr), InputError);
  EXPECT_THROW(fake_quantize_activation(x, 1, 16, -2.0f, 1.0f, x, nullptr), InputError);
  EXPECT_THROW(fake_quantize_activation(x, 1, 0, 1.0f, 1.0f, x, nullptr), InputError);
  GemmWeight w;
  w.format = WeightFormat::Mxfp4;
  w.n = 16;
  w.k = 32;
  EXPECT_THROW(w4a4_gemm(x, 1, w, 1.0f, sc, GemmOutput::F32, p, 64, nullptr), InputError);
  w.format = WeightFormat::Nvfp4;
  EXPECT_THROW(w4a4_gemm(x, 1, w, 0.0f, sc, GemmOutput::F32, p, 64, nullptr), InputError);
  EXPECT_THROW(w4a4_gemm(x, 1, w, 1.0f, sc, GemmOutput::F32, p, 63, nullptr), InputError);  // workspace too small
  // Nothing to do: no error, no launch.
  quantize_activation(nullptr, 0, 16, 1.0f, lin, nullptr, nullptr, nullptr);
  w4a4_gemm(nullptr, 0, w, 1.0f, nullptr, GemmOutput::F32, nullptr, 0, nullptr);
}

// ---- W4A4 emulation -------------------------------------------------------------------------

// Bound (as the cuBLAS GEMM tests): every product of a fake-quantized activation and a decoded
// weight is exact in F32 on both sides, so only the F32 sums differ: |y - ref| <= K·2^-22·alpha·Σ|xq w|
// covers both orders with room for truncating accumulators, plus 2^-22|ref| for where alpha is
// applied; a BF16 output adds 2^-8|ref|.
TEST(CudaW4A4Emulation, MatchesCpuFakeQuantThenMatmul) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  struct Problem {
    int64_t m, n, k;
    float input_scale_factor;  // input_scale = factor * amax / 2688 (< 1: saturated scales)
    GemmOutput out;
  };
  const Problem problems[] = {{1, 256, 7168, 1.0f, GemmOutput::F32},
                              {5, 384, 2048, 1.0f, GemmOutput::F32},
                              {130, 256, 512, 0.25f, GemmOutput::F32},
                              {37, 128, 4096, 1.0f, GemmOutput::Bf16}};
  std::mt19937 rng(21);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> byte(0, 255), scale_byte(0x20, 0x48);
  for (const Problem& p : problems) {
    const std::string what = "M=" + std::to_string(p.m) + " N=" + std::to_string(p.n) + " K=" + std::to_string(p.k) +
                             (p.out == GemmOutput::F32 ? " F32" : " BF16");
    // Activations with a few outlier channels; the calibrated input_scale from their amax.
    std::vector<uint16_t> x(static_cast<size_t>(p.m * p.k));
    float amax = 0.0f;
    for (int64_t i = 0; i < p.m * p.k; ++i) {
      const float v = normal(rng) * (i % p.k % 97 == 3 ? 20.0f : 1.0f);
      x[i] = bf16(v);
      amax = std::max(amax, std::fabs(BF16{x[i]}.to_float()));
    }
    const float input_scale = p.input_scale_factor * amax / 2688.0f;
    const float weight_scale_2 = 0.0123f;
    std::vector<uint8_t> wq(static_cast<size_t>(p.n * p.k / 2)), ws(static_cast<size_t>(p.n * p.k / 16));
    for (auto& b : wq) b = static_cast<uint8_t>(byte(rng));
    for (auto& b : ws) b = static_cast<uint8_t>(scale_byte(rng));

    // CPU: the reference quantizer, decoded exactly; the weight decoded without its global scale;
    // the f32 matmul; alpha last.
    const float gs = nvfp4_activation_global_scale(input_scale);
    const Config c{p.m, p.k, gs, Nvfp4ScaleLayout::Linear};
    const Quantized q = cpu_quantize(x, c);
    std::vector<float> xq(x.size()), xq_abs(x.size()), wf(static_cast<size_t>(p.n * p.k)), wf_abs(wf.size());
    dequantize_activation_ref(q.packed.data(), q.scales.data(), c.layout, p.m, p.k, 1.0f, xq.data());
    for (int64_t i = 0; i < p.n * p.k; ++i)
      wf[i] = unpack_e2m1(wq[i / 2], static_cast<unsigned>(i)).to_float() * E4M3{ws[i / 16]}.to_float();
    for (size_t i = 0; i < xq.size(); ++i) xq_abs[i] = std::fabs(xq[i]);
    for (size_t i = 0; i < wf.size(); ++i) wf_abs[i] = std::fabs(wf[i]);
    std::vector<float> acc(static_cast<size_t>(p.m * p.n)), mag(acc.size());
    engine::matmul(xq.data(), wf.data(), acc.data(), p.m, p.n, p.k, 2);
    engine::matmul(xq_abs.data(), wf_abs.data(), mag.data(), p.m, p.n, p.k, 2);
    const float alpha = input_scale * weight_scale_2;

    DeviceBuffer dx = upload(x, s), dwq(wq.size(), "weight"), dws(ws.size(), "weight scales");
    copy_to_device(dwq.data(), wq.data(), wq.size(), s);
    copy_to_device(dws.data(), ws.data(), ws.size(), s);
    GemmWeight w;
    w.format = WeightFormat::Nvfp4;
    w.n = p.n;
    w.k = p.k;
    w.data = dwq.data();
    w.scales = dws.data();
    w.global_scale = weight_scale_2;
    const size_t ws_bytes = w4a4_workspace_bytes(p.m, p.k);
    DeviceBuffer work(ws_bytes, "w4a4 workspace"), dy(static_cast<size_t>(p.m * p.n) * 4, "y");
    fill_bytes(dy.data(), 0xFF, dy.bytes(), s);  // NaN in either output type
    w4a4_gemm(dx.data<uint16_t>(), p.m, w, input_scale, dy.data(), p.out, work.data(), ws_bytes, s.get());
    std::vector<float> y(acc.size());
    if (p.out == GemmOutput::F32) {
      copy_to_host(y.data(), dy.data(), y.size() * 4, s);
      s.synchronize();
    } else {
      std::vector<uint16_t> yb(acc.size());
      copy_to_host(yb.data(), dy.data(), yb.size() * 2, s);
      s.synchronize();
      for (size_t i = 0; i < y.size(); ++i) y[i] = BF16{yb[i]}.to_float();
    }
    int bad = 0;
    double worst = 0.0;
    for (int64_t i = 0; i < p.m * p.n; ++i) {
      const double ref = double(alpha) * acc[i];
      const double bound = double(p.k) * 0x1p-22 * alpha * mag[i] + 0x1p-22 * std::fabs(ref) +
                           (p.out == GemmOutput::Bf16 ? 0x1p-8 * std::fabs(ref) : 0.0) + 1e-30;
      const double err = std::fabs(double(y[i]) - ref);
      if (!(err <= bound)) {  // NaN fails too
        if (bad++ < 5)
          ADD_FAILURE() << what << ": y(" << i / p.n << ", " << i % p.n << ") = " << y[i] << ", CPU " << ref
                        << ", |diff| " << err << " > bound " << bound;
      } else {
        worst = std::max(worst, err / bound);
      }
    }
    std::printf("[ w4a4 ] %s: input_scale %g, alpha %g, worst |diff|/bound %.3g\n", what.c_str(), input_scale, alpha,
                worst);
    EXPECT_EQ(bad, 0) << what;
  }
}

}  // namespace
}  // namespace fp4kit::cuda
