// cuBLASLt BF16 products against the engine's f32 matmul on the same BF16 values.
//
// Bound: every BF16 x BF16 product is exact in f32, so both sides differ only in the order and the
// rounding of an f32 sum of K terms: |y - ref| <= K * 2^-22 * sum_k |x_k w_k| covers both sums with
// room for tensor-core accumulators that truncate instead of rounding; a BF16 output adds its own
// rounding, 2^-8 |ref|. Over the whole matrix ||y - ref|| / ||ref|| must also stay under 1e-4 (F32
// output), which BF16 or TF32-like accumulation would miss by an order of magnitude, or 5e-3 (BF16
// output: one rounding, about 1e-3 rms).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "cuda/cublas_gemm.h"
#include "cuda/runtime.h"
#include "engine/matmul.h"
#include "formats/bf16.h"
#include "gpu_test.h"

namespace fp4kit::cuda {
namespace {

struct Problem {
  int64_t m, n, k;
};

std::string text(const Problem& p, GemmOutput out) {
  return "M=" + std::to_string(p.m) + " N=" + std::to_string(p.n) + " K=" + std::to_string(p.k) +
         (out == GemmOutput::F32 ? " out=F32" : " out=BF16");
}

// N(0, sigma) values with a per-row scale spread (as real weights have), as BF16 bits.
std::vector<uint16_t> random_bf16(size_t rows, size_t cols, float sigma, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> spread(-2.0f, 2.0f);
  std::vector<uint16_t> v(rows * cols);
  for (size_t r = 0; r < rows; ++r) {
    const float s = sigma * std::exp2(spread(rng));
    for (size_t c = 0; c < cols; ++c) v[r * cols + c] = BF16::from_float(normal(rng) * s).bits;
  }
  return v;
}

std::vector<float> to_f32(const std::vector<uint16_t>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = BF16{v[i]}.to_float();
  return f;
}

// y read back from the device as f32 (a BF16 output widened exactly).
std::vector<float> read_y(const DeviceBuffer& y, size_t offset_elems, size_t count, GemmOutput out, const Stream& s) {
  std::vector<float> f(count);
  if (out == GemmOutput::F32) {
    copy_to_host(f.data(), y.data<float>() + offset_elems, count * 4, s);
    s.synchronize();
  } else {
    std::vector<uint16_t> b(count);
    copy_to_host(b.data(), y.data<uint16_t>() + offset_elems, count * 2, s);
    s.synchronize();
    for (size_t i = 0; i < count; ++i) f[i] = BF16{b[i]}.to_float();
  }
  return f;
}

size_t out_bytes(GemmOutput out) { return out == GemmOutput::F32 ? 4 : 2; }

// Checks y against the f32 reference with the bound above; prints the first failures.
void expect_close(const std::vector<float>& y, const std::vector<float>& xf, const std::vector<float>& wf,
                  const Problem& p, GemmOutput out, const std::string& what) {
  const size_t M = p.m, N = p.n, K = p.k;
  std::vector<float> ref(M * N);
  engine::matmul(xf.data(), wf.data(), ref.data(), M, N, K, 2);
  double err2 = 0, ref2 = 0;
  int failures = 0;
  for (size_t i = 0; i < M; ++i) {
    for (size_t j = 0; j < N; ++j) {
      double mag = 0;
      for (size_t k = 0; k < K; ++k) mag += std::fabs(static_cast<double>(xf[i * K + k]) * wf[j * K + k]);
      const double r = ref[i * N + j], v = y[i * N + j];
      double bound = static_cast<double>(K) * std::ldexp(1.0, -22) * mag + 1e-30;
      if (out == GemmOutput::Bf16) bound += std::ldexp(1.0, -8) * std::fabs(r);
      const bool bad = std::isnan(v) || !(std::fabs(v - r) <= bound);
      if (bad && ++failures <= 8)
        ADD_FAILURE() << what << " [" << text(p, out) << "] y[" << i << ", " << j << "] = " << v << ", reference "
                      << r << ", |diff| " << std::fabs(v - r) << " > bound " << bound;
      err2 += (v - r) * (v - r);
      ref2 += r * r;
    }
  }
  EXPECT_EQ(failures, 0) << what << " [" << text(p, out) << "]: " << failures << " of " << M * N << " outside the bound";
  if (ref2 > 0) {
    const double rel = std::sqrt(err2 / ref2), limit = out == GemmOutput::F32 ? 1e-4 : 5e-3;
    EXPECT_LT(rel, limit) << what << " [" << text(p, out) << "]: ||y - ref|| / ||ref|| = " << rel;
  }
}

// Uploads x and w, poisons y (0xFF bytes: NaN in F32 and BF16), runs, reads y back.
std::vector<float> run(CublasGemm& gemm, const std::vector<uint16_t>& x, const std::vector<uint16_t>& w,
                       const Problem& p, GemmOutput out, const Stream& s) {
  DeviceBuffer dx(x.size() * 2, "x"), dw(w.size() * 2, "w"), dy(static_cast<size_t>(p.m * p.n) * out_bytes(out), "y");
  copy_to_device(dx.data(), x.data(), dx.bytes(), s);
  copy_to_device(dw.data(), w.data(), dw.bytes(), s);
  fill_bytes(dy.data(), 0xFF, dy.bytes(), s);
  gemm.bf16_gemm(dx.data<uint16_t>(), dw.data<uint16_t>(), dy.data(), out, p.m, p.n, p.k, s.get());
  device_synchronize("bf16_gemm test");
  return read_y(dy, 0, static_cast<size_t>(p.m * p.n), out, s);
}

// Every test gets a GPU (or skips), one CublasGemm, one stream and a fresh seed, printed on failure.
class CudaCublasGemm : public ::testing::Test {
 protected:
  void SetUp() override {
    FP4KIT_REQUIRE_GPU();
    gemm.emplace();
    stream.emplace();
  }
  void TearDown() override {
    if (HasFailure()) std::printf("random seed of this test: %llu\n", static_cast<unsigned long long>(seed));
  }
  const uint64_t seed = std::random_device{}();
  std::mt19937_64 rng{seed};
  std::optional<CublasGemm> gemm;
  std::optional<Stream> stream;
};

TEST_F(CudaCublasGemm, MatchesEngineMatmulOnRandomData) {
  const Stream& s = *stream;
  // V4 expert and attention shapes at decode and prefill-like M, then ragged ones.
  const Problem problems[] = {{1, 3072, 7168}, {8, 512, 7168}, {64, 256, 3072}, {300, 384, 1024},
                              {1, 1, 1},       {3, 5, 7},      {17, 33, 130},   {129, 65, 257}};
  for (const Problem& p : problems) {
    for (GemmOutput out : {GemmOutput::F32, GemmOutput::Bf16}) {
      const auto x = random_bf16(p.m, p.k, 1.0f, rng), w = random_bf16(p.n, p.k, 0.05f, rng);
      const auto y = run(*gemm, x, w, p, out, s);
      expect_close(y, to_f32(x), to_f32(w), p, out, "random");
    }
  }
}

TEST_F(CudaCublasGemm, OperandsThatStartInsideABufferAreHonoured) {
  const Stream& s = *stream;
  // Odd K: row 1 of x or W starts 2-byte aligned; y starts one element in.
  const Problem p{37, 41, 131};
  for (GemmOutput out : {GemmOutput::F32, GemmOutput::Bf16}) {
    const auto x = random_bf16(p.m + 1, p.k, 1.0f, rng), w = random_bf16(p.n + 1, p.k, 0.05f, rng);
    DeviceBuffer dx(x.size() * 2, "x"), dw(w.size() * 2, "w"), dy((p.m * p.n + 1) * out_bytes(out), "y");
    copy_to_device(dx.data(), x.data(), dx.bytes(), s);
    copy_to_device(dw.data(), w.data(), dw.bytes(), s);
    fill_bytes(dy.data(), 0xFF, dy.bytes(), s);
    auto* y_at = static_cast<char*>(dy.data()) + out_bytes(out);
    gemm->bf16_gemm(dx.data<uint16_t>() + p.k, dw.data<uint16_t>() + p.k, y_at, out, p.m, p.n, p.k, s.get());
    device_synchronize("bf16_gemm at offsets");
    const auto y = read_y(dy, 1, static_cast<size_t>(p.m * p.n), out, s);
    const auto xf_all = to_f32(x), wf_all = to_f32(w);
    const std::vector<float> xf(xf_all.begin() + p.k, xf_all.end()), wf(wf_all.begin() + p.k, wf_all.end());
    expect_close(y, xf, wf, p, out, "offset operands");
    // The element before y stays poisoned: nothing is written outside [M, N].
    const auto before = read_y(dy, 0, 1, out, s);
    EXPECT_TRUE(std::isnan(before[0])) << "bf16_gemm wrote before y: " << before[0];
  }
}

TEST_F(CudaCublasGemm, AccumulatesInF32) {
  const Stream& s = *stream;
  // sum = 256 + 1023 * 1 = 1279: exact in F32 in any order, stuck at 256 in a BF16 accumulator.
  const Problem p{2, 3, 1024};
  std::vector<uint16_t> x(p.m * p.k, BF16::from_float(1.0f).bits), w(p.n * p.k, BF16::from_float(1.0f).bits);
  for (int64_t j = 0; j < p.n; ++j) w[j * p.k] = BF16::from_float(256.0f).bits;
  for (GemmOutput out : {GemmOutput::F32, GemmOutput::Bf16}) {
    const auto y = run(*gemm, x, w, p, out, s);
    const float want = out == GemmOutput::F32 ? 1279.0f : 1280.0f;  // BF16 keeps 8 significant bits
    for (size_t i = 0; i < y.size(); ++i) EXPECT_EQ(y[i], want) << text(p, out) << " element " << i;
  }
}

TEST_F(CudaCublasGemm, NanAndInfinityPropagate) {
  const Stream& s = *stream;
  const Problem p{4, 70, 96};
  auto x = random_bf16(p.m, p.k, 1.0f, rng);
  const auto w = random_bf16(p.n, p.k, 0.05f, rng);
  x[2 * p.k + 5] = 0x7FC0;  // NaN in row 2
  x[0 * p.k + 0] = 0x7F80;  // +Inf in row 0, column 0
  for (GemmOutput out : {GemmOutput::F32, GemmOutput::Bf16}) {
    const auto y = run(*gemm, x, w, p, out, s);
    for (int64_t j = 0; j < p.n; ++j) {
      const float w0 = BF16{w[j * p.k]}.to_float();
      EXPECT_TRUE(std::isnan(y[2 * p.n + j])) << text(p, out) << " y[2, " << j << "] = " << y[2 * p.n + j];
      if (w0 != 0.0f) {
        EXPECT_EQ(y[0 * p.n + j], w0 > 0 ? INFINITY : -INFINITY) << text(p, out) << " y[0, " << j << "], w[j, 0] = " << w0;
      }
      for (int64_t i : {1, 3})
        EXPECT_TRUE(std::isfinite(y[i * p.n + j])) << text(p, out) << " y[" << i << ", " << j << "] = " << y[i * p.n + j];
    }
  }
}

TEST_F(CudaCublasGemm, AnySplitKSchemeStaysNearTheF32Sum) {
  // The benchmark's baseline: BF16 partial sums allowed, so only a norm bound (a few BF16 roundings).
  CublasGemm any(CublasGemm::kDefaultWorkspaceBytes, CublasGemm::Bf16Partials::AnyScheme);
  for (const Problem& p : {Problem{1, 3072, 7168}, Problem{8, 512, 7168}, Problem{64, 7168, 3072}}) {
    const auto x = random_bf16(p.m, p.k, 1.0f, rng), w = random_bf16(p.n, p.k, 0.05f, rng);
    const auto y = run(any, x, w, p, GemmOutput::Bf16, *stream);
    std::vector<float> ref(y.size());
    engine::matmul(to_f32(x).data(), to_f32(w).data(), ref.data(), p.m, p.n, p.k, 2);
    double e2 = 0, r2 = 0;
    size_t nans = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      nans += std::isnan(y[i]) ? 1 : 0;
      e2 += (double{y[i]} - ref[i]) * (double{y[i]} - ref[i]);
      r2 += double{ref[i]} * ref[i];
    }
    EXPECT_EQ(nans, 0u) << text(p, GemmOutput::Bf16) << ": NaN outputs (unwritten?)";
    EXPECT_LT(std::sqrt(e2 / r2), 1e-2) << text(p, GemmOutput::Bf16);
  }
}

TEST_F(CudaCublasGemm, RepeatedCallsGiveIdenticalBits) {
  const Stream& s = *stream;
  // Decode shapes, where split-K algorithms are likely: the sum must not depend on the run.
  for (const Problem& p : {Problem{1, 3072, 7168}, Problem{8, 7168, 3072}}) {
    for (GemmOutput out : {GemmOutput::F32, GemmOutput::Bf16}) {
      const auto x = random_bf16(p.m, p.k, 1.0f, rng), w = random_bf16(p.n, p.k, 0.05f, rng);
      const auto first = run(*gemm, x, w, p, out, s);
      for (int rep = 0; rep < 3; ++rep) {
        const auto again = run(*gemm, x, w, p, out, s);
        ASSERT_EQ(std::memcmp(first.data(), again.data(), first.size() * sizeof(float)), 0)
            << text(p, out) << ": run " << rep + 2 << " differs from run 1";
      }
    }
  }
}

TEST_F(CudaCublasGemm, PlansAreCachedPerProblem) {
  const Stream& s = *stream;
  const Problem p{8, 64, 128};
  const auto x = random_bf16(p.m, p.k, 1.0f, rng), w = random_bf16(p.n, p.k, 0.05f, rng);
  (void)run(*gemm, x, w, p, GemmOutput::F32, s);
  EXPECT_EQ(gemm->cached_plans(), 1u);
  (void)run(*gemm, x, w, p, GemmOutput::F32, s);  // fresh 256-byte aligned buffers: same plan
  EXPECT_EQ(gemm->cached_plans(), 1u);
  (void)run(*gemm, x, w, p, GemmOutput::Bf16, s);
  EXPECT_EQ(gemm->cached_plans(), 2u);
}

TEST_F(CudaCublasGemm, EmptyMDoesNothingAndBadArgumentsAreInputErrors) {
  const Stream& s = *stream;
  DeviceBuffer x(64 * 2), w(64 * 2), y(64 * 4);
  fill_bytes(y.data(), 0xFF, y.bytes(), s);
  gemm->bf16_gemm(x.data<uint16_t>(), w.data<uint16_t>(), y.data(), GemmOutput::F32, 0, 8, 8, s.get());
  gemm->bf16_gemm(nullptr, nullptr, nullptr, GemmOutput::F32, 0, 8, 8, s.get());
  std::vector<uint8_t> back(y.bytes(), 0);
  copy_to_host(back.data(), y.data(), y.bytes(), s);
  s.synchronize();
  for (size_t i = 0; i < back.size(); ++i) ASSERT_EQ(back[i], 0xFF) << "M=0 wrote byte " << i;
  auto call = [&](const void* xp, const void* wp, void* yp, int64_t m, int64_t n, int64_t k) {
    gemm->bf16_gemm(static_cast<const uint16_t*>(xp), static_cast<const uint16_t*>(wp), yp, GemmOutput::F32, m, n, k,
                   s.get());
  };
  EXPECT_THROW(call(x.data(), w.data(), y.data(), -1, 8, 8), InputError);
  EXPECT_THROW(call(x.data(), w.data(), y.data(), 1, 0, 8), InputError);
  EXPECT_THROW(call(x.data(), w.data(), y.data(), 1, 8, 0), InputError);
  EXPECT_THROW(call(nullptr, w.data(), y.data(), 1, 8, 8), InputError);
  EXPECT_THROW(call(x.data(), nullptr, y.data(), 1, 8, 8), InputError);
  EXPECT_THROW(call(x.data(), w.data(), nullptr, 1, 8, 8), InputError);
  try {
    call(x.data(), w.data(), y.data(), 1, 8, -3);
    ADD_FAILURE() << "K=-3 was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("K=-3"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace fp4kit::cuda
