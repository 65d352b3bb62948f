// The weight-decoding GEMMs against the CPU: the weight dequantized by the format references
// (nvfp4_ref, mxfp4_ref, fp8_block_ref), x widened from BF16, and the engine's f32 matmul.
//
// Error bound, per output element. Every product x_k * w_k is exact in F32 on the GPU (BF16 x a
// BF16-exact decoded weight); only the F32 sums round: at most K additions of relative error
// 2^-23 each (allowing truncating tensor-core adds), i.e. K * 2^-23 * S with S = sum_k |x_k w_k|.
// The reference adds its own (K/8 + 3) * 2^-24 * S, and for NVFP4 it rounds each weight once
// (f32(scale) * global, 2^-24 * S) while the GPU applies the global scale once to the sum
// (2^-23 * |y|). Hence tol = (3K + 64) * 2^-24 * S + 2^-22 * |ref|, plus K * 2^-126 in case the
// tensor cores flush subnormal products, plus half a BF16 ulp (2^-8 relative) for BF16 outputs.
// NaN must stay NaN, +-inf must match exactly, and nothing else may be NaN (outputs are poisoned
// with NaN before each launch, so an unwritten element fails).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "base/error.h"
#include "cuda/runtime.h"
#include "cuda/weight_gemm.h"
#include "engine/matmul.h"
#include "formats/bf16.h"
#include "formats/e4m3.h"
#include "formats/fp8_block.h"
#include "formats/mxfp4.h"
#include "formats/nvfp4.h"
#include "gpu_test.h"

namespace fp4kit::cuda {
namespace {

const char* name_of(WeightFormat f) {
  switch (f) {
    case WeightFormat::Nvfp4: return "nvfp4";
    case WeightFormat::Mxfp4: return "mxfp4";
    case WeightFormat::Fp8Block: return "fp8";
    case WeightFormat::Bf16: return "bf16";
  }
  return "?";
}

// A weight on the host in its stored form, and its f32 dequantization by the CPU reference.
struct HostWeight {
  WeightFormat format = WeightFormat::Bf16;
  int64_t n = 0, k = 0;
  std::vector<uint8_t> data, scales;
  bool scales_f32 = false;
  float global = 1.0f;
  std::vector<float> dequantized;  // [n, k]

  void dequantize() {
    dequantized.assign(static_cast<size_t>(n * k), 0.0f);
    const size_t count = static_cast<size_t>(n * k);
    switch (format) {
      case WeightFormat::Nvfp4:
        nvfp4_ref::dequantize(data.data(), scales.data(), count, Nvfp4Scaling{Nvfp4Numerics::ModelOpt, global, DType::BF16},
                              dequantized.data());
        break;
      case WeightFormat::Mxfp4: mxfp4_ref::dequantize_f32(data.data(), scales.data(), count, dequantized.data()); break;
      case WeightFormat::Fp8Block: {
        const Fp8BlockShape shape{static_cast<size_t>(n), static_cast<size_t>(k),
                                  scales_f32 ? Fp8ScaleKind::F32 : Fp8ScaleKind::E8M0};
        fp8_block_ref::dequantize_f32(data.data(), scales.data(), shape, 0, static_cast<size_t>(n), dequantized.data());
        break;
      }
      case WeightFormat::Bf16:
        for (size_t i = 0; i < count; ++i) {
          uint16_t b;
          std::memcpy(&b, data.data() + 2 * i, 2);
          dequantized[i] = BF16{b}.to_float();
        }
        break;
    }
  }
};

size_t scale_count(WeightFormat f, int64_t n, int64_t k) {
  switch (f) {
    case WeightFormat::Nvfp4: return static_cast<size_t>(n * (k / 16));
    case WeightFormat::Mxfp4: return static_cast<size_t>(n * (k / 32));
    case WeightFormat::Fp8Block: return static_cast<size_t>(((n + 127) / 128) * ((k + 127) / 128));
    case WeightFormat::Bf16: return 0;
  }
  return 0;
}
size_t data_bytes(WeightFormat f, int64_t n, int64_t k) {
  const size_t e = static_cast<size_t>(n * k);
  return f == WeightFormat::Bf16 ? 2 * e : (f == WeightFormat::Fp8Block ? e : e / 2);
}

// Realistic random weights: every FP4 code; NVFP4 scales over the E4M3 range the quantizer
// produces (subnormals included), MXFP4 exponents around 2^0, FP8 any non-NaN code.
HostWeight random_weight(WeightFormat f, int64_t n, int64_t k, std::mt19937& rng, bool fp8_f32 = false) {
  HostWeight w;
  w.format = f;
  w.n = n;
  w.k = k;
  w.data.resize(data_bytes(f, n, k));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : w.data) b = static_cast<uint8_t>(byte(rng));
  if (f == WeightFormat::Fp8Block)
    for (auto& b : w.data)
      if ((b & 0x7F) == 0x7F) b ^= 0x01;  // no NaN codes
  if (f == WeightFormat::Bf16) {
    std::normal_distribution<float> normal(0.0f, 0.05f);
    for (size_t i = 0; i < w.data.size() / 2; ++i) {
      const uint16_t b = BF16::from_float(normal(rng)).bits;
      std::memcpy(w.data.data() + 2 * i, &b, 2);
    }
  }
  const size_t sc = scale_count(f, n, k);
  if (f == WeightFormat::Nvfp4) {
    w.scales.resize(sc);
    std::uniform_int_distribution<int> s(0x01, 0x7E);
    for (auto& b : w.scales) b = static_cast<uint8_t>(s(rng));
    w.global = 0.000731f;
  } else if (f == WeightFormat::Mxfp4) {
    w.scales.resize(sc);
    std::uniform_int_distribution<int> s(118, 132);
    for (auto& b : w.scales) b = static_cast<uint8_t>(s(rng));
  } else if (f == WeightFormat::Fp8Block) {
    w.scales_f32 = fp8_f32;
    if (fp8_f32) {
      std::uniform_real_distribution<float> s(1e-4f, 3e-2f);
      std::vector<float> v(sc);
      for (auto& x : v) x = s(rng);
      w.scales.resize(sc * 4);
      std::memcpy(w.scales.data(), v.data(), sc * 4);
    } else {
      w.scales.resize(sc);
      std::uniform_int_distribution<int> s(110, 126);
      for (auto& b : w.scales) b = static_cast<uint8_t>(s(rng));
    }
  }
  return w;
}

std::vector<uint16_t> random_x(int64_t m, int64_t k, std::mt19937& rng, float sigma = 1.0f) {
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<uint16_t> x(static_cast<size_t>(m * k));
  for (auto& v : x) v = BF16::from_float(normal(rng)).bits;
  return x;
}

// The weight on the device; `view` points into it.
struct DeviceWeight {
  DeviceBuffer data, scales;
  GemmWeight view;
  DeviceWeight(const HostWeight& h, const Stream& s)
      : data(h.data.size(), "test weight"), scales(std::max<size_t>(h.scales.size(), 1), "test scales") {
    copy_to_device(data.data(), h.data.data(), h.data.size(), s);
    if (!h.scales.empty()) copy_to_device(scales.data(), h.scales.data(), h.scales.size(), s);
    view.format = h.format;
    view.n = h.n;
    view.k = h.k;
    view.data = data.data();
    view.scales = h.scales.empty() ? nullptr : scales.data();
    view.fp8_scales_f32 = h.scales_f32;
    view.global_scale = h.global;
  }
};

std::vector<float> widen(const std::vector<uint16_t>& x) {
  std::vector<float> f(x.size());
  for (size_t i = 0; i < x.size(); ++i) f[i] = BF16{x[i]}.to_float();
  return f;
}

unsigned cpu_threads() { return std::max(1u, std::thread::hardware_concurrency()); }

// ref = x·Wᵀ by the engine's matmul, and S = |x|·|W|ᵀ for the bound.
void reference(const std::vector<float>& x, const HostWeight& w, int64_t m, std::vector<float>& ref,
               std::vector<float>& abs_sum) {
  ref.assign(static_cast<size_t>(m * w.n), 0.0f);
  abs_sum.assign(ref.size(), 0.0f);
  engine::matmul(x.data(), w.dequantized.data(), ref.data(), m, w.n, w.k, cpu_threads());
  std::vector<float> ax(x.size()), aw(w.dequantized.size());
  for (size_t i = 0; i < x.size(); ++i) ax[i] = std::fabs(x[i]);
  for (size_t i = 0; i < aw.size(); ++i) aw[i] = std::fabs(w.dequantized[i]);
  engine::matmul(ax.data(), aw.data(), abs_sum.data(), m, w.n, w.k, cpu_threads());
}

double tolerance(double ref, double abs_sum, int64_t k, bool bf16_out) {
  double tol = (3.0 * static_cast<double>(k) + 64.0) * std::ldexp(1.0, -24) * abs_sum + std::ldexp(std::fabs(ref), -22) +
               static_cast<double>(k) * std::ldexp(1.0, -126);
  if (bf16_out) tol += (std::fabs(ref) + tol) * std::ldexp(1.0, -8);
  return tol;
}

// Whether `actual` is `expected` within `tol`: NaN only for NaN, equal infinities, finite otherwise.
bool close(double expected, double actual, double tol) {
  if (std::isnan(expected)) return std::isnan(actual);
  if (std::isinf(expected)) return actual == expected;
  return std::isfinite(actual) && std::fabs(actual - expected) <= tol;
}

std::vector<float> read_output(const DeviceBuffer& y, size_t count, bool bf16, const Stream& s) {
  std::vector<float> out(count);
  if (bf16) {
    std::vector<uint16_t> b(count);
    copy_to_host(b.data(), y.data(), count * 2, s);
    s.synchronize();
    for (size_t i = 0; i < count; ++i) out[i] = BF16{b[i]}.to_float();
  } else {
    copy_to_host(out.data(), y.data(), count * 4, s);
    s.synchronize();
  }
  return out;
}

// Runs weight_gemm and compares every element; prints the first failures with their inputs.
void check_gemm(const std::vector<uint16_t>& x16, int64_t m, const HostWeight& w, GemmOutput out,
                const std::string& what) {
  Stream s;
  DeviceWeight dw(w, s);
  DeviceBuffer x(std::max<size_t>(x16.size() * 2, 16), "test x");
  copy_to_device(x.data(), x16.data(), x16.size() * 2, s);
  const bool bf16 = out == GemmOutput::Bf16;
  const size_t count = static_cast<size_t>(m * w.n);
  DeviceBuffer y(std::max<size_t>(count * (bf16 ? 2 : 4), 16), "test y");
  fill_bytes(y.data(), 0xFF, y.bytes(), s);  // NaN in both output types
  weight_gemm(x.data<uint16_t>(), m, dw.view, y.data(), out, s.get());
  const std::vector<float> got = read_output(y, count, bf16, s);

  const std::vector<float> xf = widen(x16);
  std::vector<float> ref, abs_sum;
  reference(xf, w, m, ref, abs_sum);
  size_t failures = 0;
  for (size_t i = 0; i < count; ++i) {
    const double tol = tolerance(ref[i], abs_sum[i], w.k, bf16);
    if (close(ref[i], got[i], tol)) continue;
    if (++failures <= 5) {
      const int64_t row = static_cast<int64_t>(i) / w.n, col = static_cast<int64_t>(i) % w.n;
      ADD_FAILURE() << what << " " << name_of(w.format) << " M=" << m << " N=" << w.n << " K=" << w.k
                    << (bf16 ? " bf16" : " f32") << " out: y[" << row << ", " << col << "] = " << got[i]
                    << ", expected " << ref[i] << " (tol " << tol << ", sum|xw| " << abs_sum[i]
                    << ", x[row, 0] " << xf[static_cast<size_t>(row * w.k)] << ", w[col, 0] "
                    << w.dequantized[static_cast<size_t>(col * w.k)] << ")";
    }
  }
  EXPECT_EQ(failures, 0u) << what << " " << name_of(w.format) << " M=" << m << " N=" << w.n << " K=" << w.k;
}

constexpr WeightFormat kFormats[] = {WeightFormat::Nvfp4, WeightFormat::Mxfp4, WeightFormat::Fp8Block,
                                     WeightFormat::Bf16};

TEST(CudaWeightGemm, SmallRaggedShapesEveryFormatBothOutputs) {
  FP4KIT_REQUIRE_GPU();
  std::mt19937 rng(1);
  for (WeightFormat f : kFormats) {
    const std::vector<int64_t> ks = f == WeightFormat::Mxfp4 ? std::vector<int64_t>{32, 96, 288}
                                                             : std::vector<int64_t>{16, 48, 272};
    for (int64_t k : ks)
      for (int64_t n : {1, 13, 130})
        for (int64_t m : {1, 2, 7, 16, 17, 64, 129})
          for (GemmOutput out : {GemmOutput::F32, GemmOutput::Bf16}) {
            const HostWeight w = [&] {
              HostWeight h = random_weight(f, n, k, rng, m % 2 == 1);
              h.dequantize();
              return h;
            }();
            check_gemm(random_x(m, k, rng), m, w, out, "small");
          }
  }
}

TEST(CudaWeightGemm, DeepSeekShapesEveryFormat) {
  FP4KIT_REQUIRE_GPU();
  std::mt19937 rng(2);
  const int64_t shapes[][2] = {{3072, 7168}, {7168, 3072}, {2048, 4096}};
  for (WeightFormat f : kFormats)
    for (const auto& nk : shapes) {
      HostWeight w = random_weight(f, nk[0], nk[1], rng, nk[0] == 7168);
      w.dequantize();
      for (int64_t m : {1, 8, 16, 64, 512})
        check_gemm(random_x(m, nk[1], rng), m, w, m % 16 == 0 ? GemmOutput::Bf16 : GemmOutput::F32, "real");
    }
}

TEST(CudaWeightGemm, LargePrefillNvfp4) {
  FP4KIT_REQUIRE_GPU();
  std::mt19937 rng(3);
  HostWeight w = random_weight(WeightFormat::Nvfp4, 3072, 7168, rng);
  w.dequantize();
  check_gemm(random_x(4096, 7168, rng), 4096, w, GemmOutput::Bf16, "M=4096");
}

// NVFP4 [40, k]: zero scales, zero codes, and the largest code with the largest scale (6 * 448).
HostWeight nvfp4_zero_and_max_weight(int64_t k, std::mt19937& rng) {
  HostWeight w = random_weight(WeightFormat::Nvfp4, 40, k, rng);
  for (size_t i = 0; i < w.scales.size(); i += 3) w.scales[i] = 0;
  for (size_t i = 0; i < w.data.size(); i += 5) w.data[i] = 0;
  for (size_t i = 1; i < w.scales.size(); i += 3) {
    w.scales[i] = 0x7E;  // 448
    for (size_t b = 0; b < 8; ++b) w.data[i * 8 + b] = 0xF7;  // -6, +6
  }
  w.global = 1.0f;
  w.dequantize();
  return w;
}

// NVFP4 [24, k] with subnormal E4M3 scales (2^-9 .. 7 * 2^-9).
HostWeight nvfp4_subnormal_scale_weight(int64_t k, std::mt19937& rng) {
  HostWeight w = random_weight(WeightFormat::Nvfp4, 24, k, rng);
  for (size_t i = 0; i < w.scales.size(); ++i) w.scales[i] = static_cast<uint8_t>(1 + i % 7);
  w.dequantize();
  return w;
}

TEST(CudaWeightGemm, ZeroBlocksAndMaximalCodes) {
  FP4KIT_REQUIRE_GPU();
  std::mt19937 rng(4);
  for (int64_t m : {1, 33}) {
    check_gemm(random_x(m, 272, rng, 1e20f), m, nvfp4_zero_and_max_weight(272, rng), GemmOutput::F32, "nvfp4 zero/max");
    check_gemm(random_x(m, 64, rng), m, nvfp4_subnormal_scale_weight(64, rng), GemmOutput::F32, "nvfp4 subnormal scales");
    // MXFP4 with the largest finite scale 2^127: codes up to 1.5 stay finite; tiny x keeps y finite.
    HostWeight big = random_weight(WeightFormat::Mxfp4, 24, 96, rng);
    for (auto& s : big.scales) s = 254;
    for (auto& b : big.data) b &= 0xBB;  // magnitudes 0, .5, 1, 1.5
    big.dequantize();
    check_gemm(random_x(m, 96, rng, 0x1p-110f), m, big, GemmOutput::F32, "mxfp4 2^127");
    // MXFP4 6 * 2^127 overflows to inf in the reference dequantization: y is +-inf or NaN alike.
    HostWeight inf = random_weight(WeightFormat::Mxfp4, 8, 64, rng);
    for (auto& s : inf.scales) s = 254;
    inf.dequantize();
    check_gemm(random_x(m, 64, rng), m, inf, GemmOutput::F32, "mxfp4 overflow");
    // FP8: every code including subnormals, ragged 128-blocks, both scale kinds, zero blocks.
    for (bool f32 : {false, true}) {
      HostWeight f8 = random_weight(WeightFormat::Fp8Block, 200, 400, rng, f32);
      for (size_t i = 0; i < 200 * 400; i += 7) f8.data[i] = static_cast<uint8_t>(i % 8);  // subnormals, 0
      for (size_t r = 0; r < 128; ++r)
        for (size_t c = 256; c < 384; ++c) f8.data[r * 400 + c] = 0;  // one zero block
      f8.dequantize();
      check_gemm(random_x(m, 400, rng), m, f8, GemmOutput::Bf16, f32 ? "fp8 f32 scales" : "fp8 e8m0 scales");
    }
  }
}

// E8M0 byte 0 is 2^-127 and byte 1 2^-126: the decoded weights are BF16 subnormals. With x large
// the products are ordinary F32 numbers, so this fails if the BF16 multiply or the tensor cores
// flush subnormal operands to zero.
TEST(CudaWeightGemm, Mxfp4SubnormalScalesKeepTheirValue) {
  FP4KIT_REQUIRE_GPU();
  std::mt19937 rng(5);
  for (int64_t m : {1, 40}) {
    HostWeight w = random_weight(WeightFormat::Mxfp4, 16, 128, rng);
    for (size_t i = 0; i < w.scales.size(); ++i) w.scales[i] = static_cast<uint8_t>(i % 2);
    w.dequantize();
    check_gemm(random_x(m, 128, rng, 0x1p100f), m, w, GemmOutput::F32, "mxfp4 subnormal");
  }
}

TEST(CudaWeightGemm, NanPropagates) {
  FP4KIT_REQUIRE_GPU();
  std::mt19937 rng(6);
  for (WeightFormat f : kFormats)
    for (int64_t m : {3, 40}) {
      const int64_t k = 96;
      HostWeight w = random_weight(f, 20, k, rng);
      if (f == WeightFormat::Nvfp4) w.scales[5] = 0x7F;  // a NaN block scale: row 0 is NaN everywhere
      w.dequantize();
      std::vector<uint16_t> x = random_x(m, k, rng);
      x[static_cast<size_t>(1 * k + 17)] = 0x7FC0;  // NaN in row 1
      check_gemm(x, m, w, GemmOutput::F32, "nan");
    }
}

// FP4 and FP8-block weights with K a multiple of 128 and M <= 16 take the register-streaming decode
// kernel (cuda/weight_gemm_fp4_decode.cu): ragged N (rows past N read the last row; FP8 row blocks
// of 128 cut inside a block of warps), one or two n-tiles of x rows, K from one step to the V4 shapes
// (K split over clusters of up to 8 blocks), both outputs, FP8 scales as E8M0 bytes and as F32.
TEST(CudaWeightGemm, Fp4StreamingDecodeShapes) {
  FP4KIT_REQUIRE_GPU();
  std::mt19937 rng(11);
  for (WeightFormat f : {WeightFormat::Nvfp4, WeightFormat::Mxfp4, WeightFormat::Fp8Block})
    for (int64_t k : {128, 384, 2176, 7168})
      for (int64_t n : {1, 13, 64, 130, 200})
        for (int64_t m : {1, 2, 7, 8, 9, 16}) {
          HostWeight w = random_weight(f, n, k, rng, (n + m) % 2 == 1);
          w.dequantize();
          check_gemm(random_x(m, k, rng), m, w, (m + n) % 2 ? GemmOutput::F32 : GemmOutput::Bf16, "fp4 streaming");
        }
}

// The same kernel on the adversarial values: zero scales and codes, the largest code with the
// largest scale, E4M3 subnormal scales, E8M0 subnormal scales, NaN scales and NaN in x.
TEST(CudaWeightGemm, Fp4StreamingDecodeAdversarialValues) {
  FP4KIT_REQUIRE_GPU();
  std::mt19937 rng(12);
  for (int64_t m : {1, 9, 16}) {
    check_gemm(random_x(m, 256, rng, 1e20f), m, nvfp4_zero_and_max_weight(256, rng), GemmOutput::F32,
               "fp4 streaming nvfp4 zero/max");
    check_gemm(random_x(m, 128, rng), m, nvfp4_subnormal_scale_weight(128, rng), GemmOutput::F32,
               "fp4 streaming nvfp4 subnormal scales");
    HostWeight msub = random_weight(WeightFormat::Mxfp4, 16, 256, rng);
    for (size_t i = 0; i < msub.scales.size(); ++i) msub.scales[i] = static_cast<uint8_t>(i % 2);
    msub.dequantize();
    check_gemm(random_x(m, 256, rng, 0x1p100f), m, msub, GemmOutput::F32, "fp4 streaming mxfp4 subnormal");
    HostWeight fsub = random_weight(WeightFormat::Fp8Block, 16, 256, rng);  // E8M0 scales 2^-127 and 2^-126
    for (size_t i = 0; i < fsub.scales.size(); ++i) fsub.scales[i] = static_cast<uint8_t>(i % 2);
    fsub.dequantize();
    check_gemm(random_x(m, 256, rng, 0x1p100f), m, fsub, GemmOutput::F32, "fp8 streaming subnormal scales");
    for (WeightFormat f : {WeightFormat::Nvfp4, WeightFormat::Mxfp4, WeightFormat::Fp8Block}) {
      HostWeight nan = random_weight(f, 20, 384, rng);
      if (f == WeightFormat::Nvfp4) nan.scales[5] = 0x7F;  // row 0
      else if (f == WeightFormat::Mxfp4) nan.scales[13] = 0xFF;  // row 1
      else nan.data[static_cast<size_t>(3 * 384 + 200)] = 0x7F;  // a NaN code in row 3
      nan.dequantize();
      std::vector<uint16_t> x = random_x(m, 384, rng);
      if (m > 1) x[static_cast<size_t>(1 * 384 + 300)] = 0x7FC0;  // NaN in x row 1
      check_gemm(x, m, nan, GemmOutput::F32, "fp4 streaming nan");
    }
  }
}

// Strided batches (V4's grouped wo_a): product b of rows [b·n, (b+1)·n) of one weight against its
// slice of x, rows and products at padded strides; each against the CPU reference of its own
// slice, and every element of y outside the products left as it was (no stray writes).
void check_batched(WeightFormat f, int64_t batch, int64_t n, int64_t k, int64_t m, bool fp8_f32, GemmOutput out,
                   std::mt19937& rng) {
  const std::string what = std::string("batched ") + name_of(f) + (fp8_f32 ? " f32 scales" : "") +
                           " batch=" + std::to_string(batch) + " M=" + std::to_string(m) + " N=" + std::to_string(n) +
                           " K=" + std::to_string(k);
  HostWeight w = random_weight(f, batch * n, k, rng, fp8_f32);
  w.dequantize();
  // x [m][batch][k] with 8 elements of padding per row: product b's rows at b·k, ldx apart.
  const int64_t ldx = batch * k + 8, ldy = batch * n + 3;
  const std::vector<uint16_t> x16 = random_x(m, ldx, rng);
  const bool bf16 = out == GemmOutput::Bf16;
  const size_t y_count = static_cast<size_t>(m * ldy), y_bytes = y_count * (bf16 ? 2 : 4);
  Stream s;
  DeviceWeight dw(w, s);
  DeviceBuffer x(x16.size() * 2, "test x"), y(y_bytes, "test y");
  copy_to_device(x.data(), x16.data(), x16.size() * 2, s);
  fill_bytes(y.data(), 0xFF, y.bytes(), s);  // NaN in both output types
  BatchedGemm b;
  b.x = x.data<uint16_t>(), b.m = m, b.ldx = ldx, b.x_batch_stride = k;
  b.w = dw.view, b.batch = batch, b.n = n;
  b.y = y.data(), b.ldy = ldy, b.y_batch_stride = n;
  b.out = out;
  ASSERT_TRUE(batched_weight_gemm_takes(f, m, n, k)) << what;
  batched_weight_gemm(b, s.get());
  std::vector<uint8_t> raw(y_bytes);
  copy_to_host(raw.data(), y.data(), y_bytes, s);
  s.synchronize();
  const std::vector<float> got = read_output(y, y_count, bf16, s);

  size_t failures = 0, stray = 0;
  const size_t width = bf16 ? 2 : 4;
  for (size_t i = 0; i < y_count; ++i) {  // the padding columns: still all ones
    if (static_cast<int64_t>(i) % ldy < batch * n) continue;
    for (size_t j = 0; j < width; ++j) stray += raw[i * width + j] != 0xFF;
  }
  for (int64_t p = 0; p < batch; ++p) {
    HostWeight slice;
    slice.n = n, slice.k = k;
    slice.dequantized.assign(w.dequantized.begin() + p * n * k, w.dequantized.begin() + (p + 1) * n * k);
    std::vector<float> xf(static_cast<size_t>(m * k));
    for (int64_t r = 0; r < m; ++r)
      for (int64_t j = 0; j < k; ++j) xf[static_cast<size_t>(r * k + j)] = BF16{x16[static_cast<size_t>(r * ldx + p * k + j)]}.to_float();
    std::vector<float> ref, abs_sum;
    reference(xf, slice, m, ref, abs_sum);
    for (int64_t r = 0; r < m; ++r)
      for (int64_t c = 0; c < n; ++c) {
        const size_t i = static_cast<size_t>(r * n + c);
        const double g = got[static_cast<size_t>(r * ldy + p * n + c)];
        const double tol = tolerance(ref[i], abs_sum[i], k, bf16);
        if (close(ref[i], g, tol)) continue;
        if (++failures <= 5)
          ADD_FAILURE() << what << ": product " << p << " y[" << r << ", " << c << "] = " << g << ", expected " << ref[i]
                        << " (tol " << tol << ")";
      }
  }
  EXPECT_EQ(failures, 0u) << what;
  EXPECT_EQ(stray, 0u) << what << ": bytes written outside the products";
}

TEST(CudaWeightGemm, BatchedDecodeProductsOfOneWeightsRowBlocks) {
  FP4KIT_REQUIRE_GPU();
  std::mt19937 rng(15);
  for (WeightFormat f : {WeightFormat::Nvfp4, WeightFormat::Mxfp4, WeightFormat::Fp8Block})
    for (int64_t batch : {1, 3, 8})
      for (int64_t n : {128, 256})
        for (int64_t k : {128, 640})
          for (int64_t m : {1, 9, 16})
            check_batched(f, batch, n, k, m, f == WeightFormat::Fp8Block && m == 9, m == 16 ? GemmOutput::Bf16 : GemmOutput::F32,
                          rng);
  // FP4 rows per product that are not a multiple of 16 (a warp's rows straddle two products' rows
  // in the weight), and V4-Flash's wo_a at one row.
  check_batched(WeightFormat::Nvfp4, 5, 13, 256, 2, false, GemmOutput::F32, rng);
  check_batched(WeightFormat::Mxfp4, 4, 200, 384, 1, false, GemmOutput::F32, rng);
  check_batched(WeightFormat::Fp8Block, 8, 1024, 4096, 1, false, GemmOutput::F32, rng);
  // ... and written as BF16 at one row (the engine's wo_a at decode, read by wo_b as BF16).
  check_batched(WeightFormat::Fp8Block, 8, 1024, 4096, 1, false, GemmOutput::Bf16, rng);
  check_batched(WeightFormat::Fp8Block, 8, 1024, 4096, 1, true, GemmOutput::Bf16, rng);
  check_batched(WeightFormat::Nvfp4, 3, 256, 640, 1, false, GemmOutput::Bf16, rng);
  check_batched(WeightFormat::Nvfp4, 8, 1024, 4096, 1, false, GemmOutput::F32, rng);
}

// A weight set: the products of one x with weights of their own N (V4's CSA projections of the
// sublayer input at one token: wq_a 1024, wkv 512, the compressor's 1024 and 1024, the indexer's 64,
// 256 and 256; and odd N), each against the CPU reference of its own weight, and nothing written
// past each product's output.
void check_set(WeightFormat f, const std::vector<int64_t>& ns, int64_t k, int64_t m, bool fp8_f32, GemmOutput out,
               std::mt19937& rng) {
  std::string what = std::string("weight set ") + name_of(f) + (fp8_f32 ? " f32 scales" : "") + " M=" +
                     std::to_string(m) + " K=" + std::to_string(k) + " N=";
  for (int64_t n : ns) what += std::to_string(n) + ",";
  const bool bf16 = out == GemmOutput::Bf16;
  const size_t width = bf16 ? 2 : 4;
  Stream s;
  std::vector<HostWeight> host;
  std::vector<std::unique_ptr<DeviceWeight>> dev;
  std::vector<GemmWeight> views;
  std::vector<DeviceBuffer> ys;
  std::vector<void*> y_ptrs;
  for (int64_t n : ns) {
    host.push_back(random_weight(f, n, k, rng, fp8_f32));
    host.back().dequantize();
    dev.push_back(std::make_unique<DeviceWeight>(host.back(), s));
    views.push_back(dev.back()->view);
    ys.emplace_back(static_cast<size_t>(m * n + 16) * width, "test y");  // 16 guard elements
    fill_bytes(ys.back().data(), 0xFF, ys.back().bytes(), s);
    y_ptrs.push_back(ys.back().data());
  }
  const std::vector<uint16_t> x16 = random_x(m, k, rng);
  DeviceBuffer x(x16.size() * 2, "test x");
  copy_to_device(x.data(), x16.data(), x16.size() * 2, s);
  ASSERT_TRUE(weight_set_gemm_takes(views, m)) << what;
  const WeightSet set(views);
  weight_set_gemm(x.data<uint16_t>(), m, set, y_ptrs.data(), out, s.get());
  std::vector<float> xf(x16.size());
  for (size_t i = 0; i < xf.size(); ++i) xf[i] = BF16{x16[i]}.to_float();
  size_t failures = 0, stray = 0;
  for (size_t p = 0; p < ns.size(); ++p) {
    const int64_t n = ns[p];
    const size_t count = static_cast<size_t>(m * n);
    std::vector<uint8_t> raw((count + 16) * width);
    copy_to_host(raw.data(), ys[p].data(), raw.size(), s);
    s.synchronize();
    for (size_t i = count * width; i < raw.size(); ++i) stray += raw[i] != 0xFF;
    const std::vector<float> got = read_output(ys[p], count, bf16, s);
    std::vector<float> ref, abs_sum;
    reference(xf, host[p], m, ref, abs_sum);
    for (size_t i = 0; i < count; ++i) {
      const double tol = tolerance(ref[i], abs_sum[i], k, bf16);
      if (close(ref[i], got[i], tol)) continue;
      if (++failures <= 5)
        ADD_FAILURE() << what << ": product " << p << " y[" << i / n << ", " << i % n << "] = " << got[i] << ", expected "
                      << ref[i] << " (tol " << tol << ")";
    }
  }
  EXPECT_EQ(failures, 0u) << what;
  EXPECT_EQ(stray, 0u) << what << ": bytes written past a product's output";
}

TEST(CudaWeightGemm, WeightSetProductsOfOneInput) {
  FP4KIT_REQUIRE_GPU();
  std::mt19937 rng(23);
  const std::vector<int64_t> csa = {1024, 512, 1024, 1024, 64, 256, 256};
  check_set(WeightFormat::Fp8Block, csa, 4096, 1, false, GemmOutput::F32, rng);
  check_set(WeightFormat::Fp8Block, csa, 4096, 1, true, GemmOutput::F32, rng);
  check_set(WeightFormat::Fp8Block, {1024, 512}, 4096, 8, false, GemmOutput::Bf16, rng);
  for (WeightFormat f : {WeightFormat::Nvfp4, WeightFormat::Mxfp4}) {
    check_set(f, {13, 200, 128, 40, 7, 256, 1000, 33}, 640, 3, false, GemmOutput::F32, rng);
    check_set(f, {256, 128}, 128, 1, false, GemmOutput::Bf16, rng);
  }
  check_set(WeightFormat::Fp8Block, {200, 72, 1000}, 384, 5, false, GemmOutput::F32, rng);
}

TEST(WeightGemmArguments, WeightSetRefusesWhatItCannotTake) {
  auto view = [](WeightFormat f, int64_t n, int64_t k) {
    GemmWeight w;
    w.format = f, w.n = n, w.k = k;
    w.data = reinterpret_cast<const void*>(256), w.scales = reinterpret_cast<const void*>(256);
    return w;
  };
  const GemmWeight a = view(WeightFormat::Fp8Block, 1024, 4096), b = view(WeightFormat::Fp8Block, 512, 4096);
  EXPECT_TRUE(weight_set_gemm_takes({a, b}, 1));
  EXPECT_FALSE(weight_set_gemm_takes({a}, 1)) << "one weight";
  EXPECT_FALSE(weight_set_gemm_takes({a, b}, 0)) << "no rows";
  EXPECT_FALSE(weight_set_gemm_takes({a, b}, kMaxWeightSetRows + 1)) << "too many rows";
  EXPECT_FALSE(weight_set_gemm_takes({a, view(WeightFormat::Nvfp4, 512, 4096)}, 1)) << "two formats";
  EXPECT_FALSE(weight_set_gemm_takes({a, view(WeightFormat::Fp8Block, 512, 2048)}, 1)) << "two K";
  EXPECT_FALSE(weight_set_gemm_takes({view(WeightFormat::Bf16, 64, 4096), view(WeightFormat::Bf16, 64, 4096)}, 1)) << "BF16";
  EXPECT_FALSE(weight_set_gemm_takes({view(WeightFormat::Fp8Block, 64, 4000), view(WeightFormat::Fp8Block, 64, 4000)}, 1))
      << "K not a multiple of 128";
  GemmWeight misaligned = b;
  misaligned.data = reinterpret_cast<const void*>(264);
  EXPECT_FALSE(weight_set_gemm_takes({a, misaligned}, 1)) << "codes not 16-byte aligned";
  GemmWeight f32_scales = b;
  f32_scales.fp8_scales_f32 = true, f32_scales.scales = reinterpret_cast<const void*>(258);
  EXPECT_FALSE(weight_set_gemm_takes({a, f32_scales}, 1)) << "F32 scales not 4-byte aligned";
  std::vector<GemmWeight> many(kMaxWeightSet + 1, a);
  EXPECT_FALSE(weight_set_gemm_takes(many, 1)) << "too many weights";
  EXPECT_THROW(WeightSet({a}), InputError);
}

// A weight marked read_early is read before the previous kernel ends; x must not be. Chain two
// products on one stream, the second reading the first's output (poisoned with NaN before each
// run), many times: a second product that read x early would see NaN or stale rows.
TEST(CudaWeightGemm, EarlyWeightReadsStillWaitForTheKernelThatWritesX) {
  FP4KIT_REQUIRE_GPU();
  std::mt19937 rng(14);
  Stream s;
  const int64_t m = 8, k1 = 7168, n1 = 4096, n2 = 1024;
  HostWeight w1 = random_weight(WeightFormat::Nvfp4, n1, k1, rng);
  HostWeight w2 = random_weight(WeightFormat::Nvfp4, n2, n1, rng);
  w1.global = 0.01f;
  w2.dequantize();
  DeviceWeight d1(w1, s), d2(w2, s);
  GemmWeight early = d2.view;
  early.read_early = true;
  const std::vector<uint16_t> x16 = random_x(m, k1, rng);
  DeviceBuffer x(x16.size() * 2, "x"), mid(static_cast<size_t>(m * n1) * 2, "mid"), y(static_cast<size_t>(m * n2) * 4, "y");
  copy_to_device(x.data(), x16.data(), x16.size() * 2, s);
  for (int run = 0; run < 20; ++run) {
    fill_bytes(mid.data(), 0xFF, mid.bytes(), s);
    fill_bytes(y.data(), 0xFF, y.bytes(), s);
    weight_gemm(x.data<uint16_t>(), m, d1.view, mid.data(), GemmOutput::Bf16, s.get());
    weight_gemm(mid.data<uint16_t>(), m, early, y.data(), GemmOutput::F32, s.get());
    std::vector<uint16_t> mid16(static_cast<size_t>(m * n1));
    copy_to_host(mid16.data(), mid.data(), mid16.size() * 2, s);
    const std::vector<float> got = read_output(y, static_cast<size_t>(m * n2), false, s);
    std::vector<float> ref, abs_sum;
    reference(widen(mid16), w2, m, ref, abs_sum);
    size_t failures = 0;
    for (size_t i = 0; i < got.size(); ++i)
      if (!close(ref[i], got[i], tolerance(ref[i], abs_sum[i], n1, false)) && ++failures <= 3)
        ADD_FAILURE() << "run " << run << " y[" << i / n2 << ", " << i % n2 << "] = " << got[i] << ", expected " << ref[i];
    ASSERT_EQ(failures, 0u) << "run " << run;
  }
}

// The clamped SwiGLU of reference gate and up sums (with their |x|·|W| sums), and its bound.
std::pair<double, double> swiglu_expectation(double gate, double gate_abs, double up, double up_abs, int64_t k,
                                             float limit, bool bf16_out) {
  const double tg = tolerance(gate, gate_abs, k, false), tu = tolerance(up, up_abs, k, false);
  double gv = gate, uv = up;
  if (limit > 0) {
    gv = std::min(gv, static_cast<double>(limit));
    uv = std::clamp(uv, -static_cast<double>(limit), static_cast<double>(limit));
  }
  const double silu = gv / (1.0 + std::exp(-gv));
  const double expected = silu * uv;
  // silu' lies in [-0.1, 1.1]; min and clamp are 1-Lipschitz; expf and the division round.
  double tol = 1.1 * tg * (std::fabs(uv) + tu) + std::fabs(silu) * tu + 1e-6 * std::fabs(expected) + 1e-30;
  if (bf16_out) tol += (std::fabs(expected) + tol) * std::ldexp(1.0, -8);
  return {expected, tol};
}

// ---- dense SwiGLU (gate and up in one launch) ---------------------------------------------------

void check_swiglu(WeightFormat f, int64_t m, int64_t n, int64_t k, float limit, GemmOutput out, bool fp8_f32,
                  std::mt19937& rng) {
  Stream s;
  HostWeight gate = random_weight(f, n, k, rng, fp8_f32), up = random_weight(f, n, k, rng, fp8_f32);
  gate.dequantize();
  up.dequantize();
  const DeviceWeight dg(gate, s), du(up, s);
  const std::vector<uint16_t> x16 = random_x(m, k, rng);
  const bool bf16 = out == GemmOutput::Bf16;
  const size_t count = static_cast<size_t>(m * n);
  DeviceBuffer x(x16.size() * 2, "swiglu x"), y(count * (bf16 ? 2 : 4), "swiglu y");
  copy_to_device(x.data(), x16.data(), x16.size() * 2, s);
  fill_bytes(y.data(), 0xFF, y.bytes(), s);
  ASSERT_TRUE(weight_gemm_swiglu_takes(dg.view, du.view, m)) << name_of(f) << " M=" << m;
  weight_gemm_swiglu(x.data<uint16_t>(), m, dg.view, du.view, limit, y.data(), out, s.get());
  const std::vector<float> got = read_output(y, count, bf16, s);
  const std::vector<float> xf = widen(x16);
  std::vector<float> rg, sg, ru, su;
  reference(xf, gate, m, rg, sg);
  reference(xf, up, m, ru, su);
  size_t failures = 0;
  for (size_t i = 0; i < count; ++i) {
    const auto [expected, tol] = swiglu_expectation(rg[i], sg[i], ru[i], su[i], k, limit, bf16);
    if (close(expected, got[i], tol)) continue;
    if (++failures <= 5)
      ADD_FAILURE() << "swiglu " << name_of(f) << " M=" << m << " N=" << n << " K=" << k << " limit " << limit << " y["
                    << i / n << ", " << i % n << "] = " << got[i] << ", expected " << expected << " (tol " << tol << ")";
  }
  EXPECT_EQ(failures, 0u) << "swiglu " << name_of(f) << " M=" << m << " N=" << n << " K=" << k;
}

// Every format, 1 to 8 rows, column counts that leave a block's last warps partly or wholly past N, K
// split over a cluster or not, the clamp on and off, both outputs, FP8 with E8M0 and F32 scales.
TEST(CudaWeightGemm, SwigluDecodeMatchesTheReference) {
  FP4KIT_REQUIRE_GPU();
  std::mt19937 rng(17);
  for (WeightFormat f : {WeightFormat::Nvfp4, WeightFormat::Mxfp4, WeightFormat::Fp8Block})
    for (int64_t m : {1, 3, 8}) {
      check_swiglu(f, m, 136, 256, 7.0f, GemmOutput::Bf16, m == 3, rng);
      check_swiglu(f, m, 2048, 4096, m == 8 ? 0.0f : 10.0f, m == 1 ? GemmOutput::Bf16 : GemmOutput::F32, m == 1, rng);
    }
}

TEST(WeightGemmArguments, SwigluRefusesWhatTheFusedPathCannotTake) {
  alignas(16) static uint8_t data[4096], scales[512];
  GemmWeight g;
  g.format = WeightFormat::Nvfp4;
  g.n = 16, g.k = 128, g.data = data, g.scales = scales;
  EXPECT_TRUE(weight_gemm_swiglu_takes(g, g, 1));
  EXPECT_FALSE(weight_gemm_swiglu_takes(g, g, 0));
  EXPECT_FALSE(weight_gemm_swiglu_takes(g, g, 9));
  GemmWeight other = g;
  other.format = WeightFormat::Mxfp4;
  EXPECT_FALSE(weight_gemm_swiglu_takes(g, other, 1));
  other = g, other.k = 256;
  EXPECT_FALSE(weight_gemm_swiglu_takes(g, other, 1));
  other = g, other.data = data + 8;
  EXPECT_FALSE(weight_gemm_swiglu_takes(g, other, 1));
  GemmWeight k16 = g;
  k16.k = 144;
  EXPECT_FALSE(weight_gemm_swiglu_takes(k16, k16, 1));
  GemmWeight bf16 = g;
  bf16.format = WeightFormat::Bf16, bf16.scales = nullptr;
  EXPECT_FALSE(weight_gemm_swiglu_takes(bf16, bf16, 1));
  alignas(16) static uint16_t x[256];
  float y[16];
  try {
    weight_gemm_swiglu(x, 9, g, g, 7.0f, y, GemmOutput::F32, nullptr);
    ADD_FAILURE() << "no error for M=9";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("weight_gemm_swiglu"), std::string::npos) << e.what();
  }
}

// ---- grouped ----------------------------------------------------------------------------------

struct GroupedCase {
  std::vector<int32_t> sizes;
  int64_t n = 0, k = 0;
};

void check_grouped(WeightFormat f, const GroupedCase& c, bool swiglu, float limit, GemmOutput out, std::mt19937& rng) {
  Stream s;
  const int32_t groups = static_cast<int32_t>(c.sizes.size());
  std::vector<int32_t> offsets(groups + 1, 0);
  for (int32_t g = 0; g < groups; ++g) offsets[g + 1] = offsets[g] + c.sizes[g];
  const int64_t rows = offsets[groups];
  std::vector<HostWeight> gate, up;
  std::vector<DeviceWeight> dgate, dup;
  std::vector<GemmWeight> vgate, vup;
  for (int32_t g = 0; g < groups; ++g) {
    gate.push_back(random_weight(f, c.n, c.k, rng, g % 2 == 1));
    gate.back().dequantize();
    dgate.emplace_back(gate.back(), s);
    vgate.push_back(dgate.back().view);
    if (swiglu) {
      up.push_back(random_weight(f, c.n, c.k, rng, g % 2 == 0));
      up.back().dequantize();
      dup.emplace_back(up.back(), s);
      vup.push_back(dup.back().view);
    }
  }
  const std::vector<uint16_t> x16 = random_x(rows, c.k, rng);
  DeviceBuffer x(std::max<size_t>(x16.size() * 2, 16), "grouped x"), off(offsets.size() * 4, "offsets");
  DeviceBuffer wg(vgate.size() * sizeof(GemmWeight), "gates"), wu(std::max<size_t>(vup.size(), 1) * sizeof(GemmWeight), "ups");
  copy_to_device(x.data(), x16.data(), x16.size() * 2, s);
  copy_to_device(off.data(), offsets.data(), offsets.size() * 4, s);
  copy_to_device(wg.data(), vgate.data(), vgate.size() * sizeof(GemmWeight), s);
  if (swiglu) copy_to_device(wu.data(), vup.data(), vup.size() * sizeof(GemmWeight), s);
  const bool bf16 = out == GemmOutput::Bf16;
  const size_t count = static_cast<size_t>(rows * c.n);
  DeviceBuffer y(std::max<size_t>(count * (bf16 ? 2 : 4), 16), "grouped y");
  fill_bytes(y.data(), 0xFF, y.bytes(), s);

  GroupedGemm gg;
  gg.x = x.data<uint16_t>();
  gg.rows = rows;
  gg.offsets = off.data<int32_t>();
  gg.groups = groups;
  gg.n = c.n;
  gg.k = c.k;
  gg.format = f;
  gg.weights = wg.data<GemmWeight>();
  gg.up = swiglu ? wu.data<GemmWeight>() : nullptr;
  gg.swiglu_limit = limit;
  gg.y = y.data();
  gg.out = out;
  grouped_weight_gemm(gg, s.get());
  const std::vector<float> got = read_output(y, count, bf16, s);

  std::string sizes;
  for (int32_t v : c.sizes) sizes += std::to_string(v) + " ";
  size_t failures = 0;
  for (int32_t g = 0; g < groups; ++g) {
    const int64_t m = c.sizes[g];
    if (m == 0) continue;
    const std::vector<uint16_t> xg(x16.begin() + offsets[g] * c.k, x16.begin() + offsets[g + 1] * c.k);
    const std::vector<float> xf = widen(xg);
    std::vector<float> rg, sg, ru, su;
    reference(xf, gate[g], m, rg, sg);
    if (swiglu) reference(xf, up[g], m, ru, su);
    for (int64_t i = 0; i < m * c.n; ++i) {
      double expected, tol;
      if (swiglu) {
        std::tie(expected, tol) = swiglu_expectation(rg[i], sg[i], ru[i], su[i], c.k, limit, bf16);
      } else {
        expected = rg[i];
        tol = tolerance(rg[i], sg[i], c.k, bf16);
      }
      const size_t yi = static_cast<size_t>(offsets[g] * c.n + i);
      if (close(expected, got[yi], tol)) continue;
      if (++failures <= 5)
        ADD_FAILURE() << "grouped " << name_of(f) << (swiglu ? " swiglu" : "") << " limit " << limit
                      << " N=" << c.n << " K=" << c.k << " sizes [" << sizes << "] group " << g << " y[" << i / c.n
                      << ", " << i % c.n << "] = " << got[yi] << ", expected " << expected << " (tol " << tol
                      << ", gate " << rg[i] << (swiglu ? ", up " + std::to_string(ru[i]) : std::string()) << ")";
    }
  }
  EXPECT_EQ(failures, 0u) << "grouped " << name_of(f) << " sizes [" << sizes << "]";
}

TEST(CudaGroupedWeightGemm, FewRowsPerGroupDecodePath) {
  FP4KIT_REQUIRE_GPU();
  std::mt19937 rng(7);
  // 8 tokens x 6 experts over 16 experts: most groups 0-3 rows, some empty.
  const GroupedCase c{{3, 0, 1, 5, 0, 0, 2, 1, 9, 0, 4, 1, 0, 17, 1, 4}, 136, 272};
  const GroupedCase cm{{3, 0, 1, 5, 0, 0, 2, 1, 9, 0, 4, 1, 0, 17, 1, 4}, 136, 288};
  for (WeightFormat f : kFormats)
    for (bool swiglu : {false, true})
      check_grouped(f, f == WeightFormat::Mxfp4 ? cm : c, swiglu, swiglu ? 7.0f : 0.0f,
                    swiglu ? GemmOutput::Bf16 : GemmOutput::F32, rng);
  // No clamp (limit 0) with the SwiGLU epilogue too.
  check_grouped(WeightFormat::Nvfp4, c, true, 0.0f, GemmOutput::F32, rng);
}

// Grouped FP4 products with K a multiple of 128: groups averaging at most 8 rows take the register-
// streaming kernel (MXFP4 at any count, NVFP4 up to 16 rows; groups of 9 and 17 rows there span
// several tiles), the others the ring kernel.
TEST(CudaGroupedWeightGemm, Fp4KMultipleOf128DecodePath) {
  FP4KIT_REQUIRE_GPU();
  std::mt19937 rng(13);
  const GroupedCase few{{1, 0, 2, 0, 9, 1, 3}, 136, 256};
  const GroupedCase small{{3, 0, 1, 5, 0, 0, 2, 1, 9, 0, 4, 1, 0, 17, 1, 4, 0, 0, 0, 0}, 136, 256};
  const GroupedCase tall{{16, 9, 12, 0, 15}, 72, 384};
  for (WeightFormat f : {WeightFormat::Nvfp4, WeightFormat::Mxfp4})
    for (bool swiglu : {false, true}) {
      check_grouped(f, few, swiglu, swiglu ? 7.0f : 0.0f, swiglu ? GemmOutput::Bf16 : GemmOutput::F32, rng);
      check_grouped(f, small, swiglu, swiglu ? 7.0f : 0.0f, swiglu ? GemmOutput::Bf16 : GemmOutput::F32, rng);
      check_grouped(f, tall, swiglu, swiglu ? 7.0f : 0.0f, swiglu ? GemmOutput::F32 : GemmOutput::Bf16, rng);
    }
}

TEST(CudaGroupedWeightGemm, ManyRowsPerGroupPrefillPath) {
  FP4KIT_REQUIRE_GPU();
  std::mt19937 rng(8);
  const GroupedCase c{{130, 0, 1, 257, 0, 64, 129, 17}, 200, 272};
  const GroupedCase cm{{130, 0, 1, 257, 0, 64, 129, 17}, 200, 288};
  for (WeightFormat f : kFormats)
    for (bool swiglu : {false, true})
      check_grouped(f, f == WeightFormat::Mxfp4 ? cm : c, swiglu, swiglu ? 7.0f : 0.0f,
                    swiglu ? GemmOutput::F32 : GemmOutput::Bf16, rng);
}

TEST(CudaGroupedWeightGemm, DeepSeekExpertShape) {
  FP4KIT_REQUIRE_GPU();
  std::mt19937 rng(9);
  const GroupedCase decode{{1, 0, 2, 1, 0, 1, 0, 3}, 2048, 4096};
  const GroupedCase prefill{{300, 0, 1, 700, 64, 0, 129, 17}, 2048, 4096};
  check_grouped(WeightFormat::Nvfp4, decode, true, 10.0f, GemmOutput::Bf16, rng);
  check_grouped(WeightFormat::Mxfp4, decode, true, 10.0f, GemmOutput::Bf16, rng);
  check_grouped(WeightFormat::Nvfp4, prefill, true, 10.0f, GemmOutput::Bf16, rng);
  check_grouped(WeightFormat::Mxfp4, prefill, false, 0.0f, GemmOutput::F32, rng);
}

// ---- argument checks (no GPU needed: they throw before any CUDA call) ---------------------------

TEST(WeightGemmArguments, BadShapesAndNullPointersAreInputErrorsNamingTheKernel) {
  alignas(16) static uint16_t x[64];
  alignas(16) static uint8_t data[64], scales[64];
  float y[16];
  GemmWeight w;
  w.format = WeightFormat::Nvfp4;
  w.n = 2;
  w.k = 24;  // not a multiple of 16
  w.data = data;
  w.scales = scales;
  auto expect_input_error = [](auto&& call, const std::string& needle) {
    try {
      call();
      ADD_FAILURE() << "no error; expected one mentioning " << needle;
    } catch (const InputError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
      EXPECT_NE(msg.find("weight_gemm"), std::string::npos) << msg;
    }
  };
  expect_input_error([&] { weight_gemm(x, 1, w, y, GemmOutput::F32, nullptr); }, "multiple of 16");
  w.k = 32;
  w.format = WeightFormat::Mxfp4;
  expect_input_error([&] { w.k = 48; weight_gemm(x, 1, w, y, GemmOutput::F32, nullptr); }, "multiple of 32");
  w.k = 32;
  w.scales = nullptr;
  expect_input_error([&] { weight_gemm(x, 1, w, y, GemmOutput::F32, nullptr); }, "scales");
  w.scales = scales;
  expect_input_error([&] { weight_gemm(nullptr, 1, w, y, GemmOutput::F32, nullptr); }, "null");
  expect_input_error([&] { weight_gemm(x, -1, w, y, GemmOutput::F32, nullptr); }, "M=-1");
  w.n = 0;
  expect_input_error([&] { weight_gemm(x, 1, w, y, GemmOutput::F32, nullptr); }, "N=0");
  w.n = 2;
  expect_input_error([&] { weight_gemm(x + 1, 1, w, y, GemmOutput::F32, nullptr); }, "aligned");
  // M = 0 is nothing to do, even with null pointers.
  EXPECT_NO_THROW(weight_gemm(nullptr, 0, w, nullptr, GemmOutput::F32, nullptr));

  GroupedGemm g;
  g.x = x;
  g.rows = 4;
  g.groups = 0;
  g.n = 2;
  g.k = 32;
  g.format = WeightFormat::Nvfp4;
  g.y = y;
  expect_input_error([&] { grouped_weight_gemm(g, nullptr); }, "groups");
  g.groups = 2;
  expect_input_error([&] { grouped_weight_gemm(g, nullptr); }, "null");
  g.k = 40;
  expect_input_error([&] { grouped_weight_gemm(g, nullptr); }, "multiple of 16");
  g.rows = 0;
  g.k = 32;
  EXPECT_NO_THROW(grouped_weight_gemm(g, nullptr));

  GemmWeight f8;
  f8.format = WeightFormat::Fp8Block;
  f8.n = 2 * 64;
  f8.k = 128;
  f8.data = data;
  f8.scales = scales;
  BatchedGemm b;
  b.x = x, b.m = 1, b.ldx = 128, b.x_batch_stride = 0;
  b.w = f8, b.batch = 2, b.n = 64;
  b.y = y, b.ldy = 64, b.y_batch_stride = 64;
  auto expect_batched_error = [&](const std::string& needle) {
    try {
      batched_weight_gemm(b, nullptr);
      ADD_FAILURE() << "no error; expected one mentioning " << needle;
    } catch (const InputError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
      EXPECT_NE(msg.find("batched_weight_gemm"), std::string::npos) << msg;
    }
  };
  expect_batched_error("N % 128");  // FP8 products must start a scale block
  EXPECT_FALSE(batched_weight_gemm_takes(WeightFormat::Fp8Block, 1, 64, 128));
  b.w.format = WeightFormat::Nvfp4;
  b.batch = 3;
  expect_batched_error("batch x N");
  b.batch = 2;
  b.m = 17;
  expect_batched_error("M 1..16");
  b.m = 1;
  b.ldx = 12;
  expect_batched_error("16-byte aligned");
  b.ldx = 128;
  b.x = nullptr;
  expect_batched_error("null");
  EXPECT_FALSE(batched_weight_gemm_takes(WeightFormat::Bf16, 1, 64, 128));
  EXPECT_FALSE(batched_weight_gemm_takes(WeightFormat::Nvfp4, 1, 64, 96));
}

}  // namespace
}  // namespace fp4kit::cuda
