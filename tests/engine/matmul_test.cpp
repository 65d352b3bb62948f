// The f32 matmul: the vector path of every ISA equals the scalar reference bit for bit (random and adversarial
// inputs, every K remainder), the reference follows the documented summation order, and the
// threaded product does not depend on the thread count.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "engine/matmul.h"
#include "isa_cases.h"

namespace fp4kit::engine {
namespace {

bool same_bits(float a, float b) { return (std::isnan(a) && std::isnan(b)) || std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b); }

std::vector<float> random_values(size_t n, std::mt19937& rng, bool adversarial) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 9);
  const float specials[] = {0.0f, -0.0f, 1e30f, -1e30f, 1e-40f, -3e-39f, 65504.0f, 1.0f / 3.0f};
  std::vector<float> v(n);
  for (float& x : v) {
    x = normal(rng);
    if (adversarial && pick(rng) < 3) x = specials[pick(rng) % 8];
  }
  return v;
}

TEST(EngineMatmul, VectorPathsEqualReferenceBitForBit) {
  FP4KIT_REQUIRE_SIMD();
  std::mt19937 rng(7);
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(isa_name(isa));
    for (bool adversarial : {false, true}) {
      for (size_t K : {1, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 33, 64, 131}) {
        const size_t M = 7, N = 5;
        const auto x = random_values(M * K, rng, adversarial);
        const auto w = random_values(N * K, rng, adversarial);
        std::vector<float> y_ref(M * N), y_fast(M * N);
        matmul_ref::matmul(x.data(), K, w.data(), K, y_ref.data(), N, M, N, K);
        matmul_kernels(isa).matmul(x.data(), K, w.data(), K, y_fast.data(), N, M, N, K);
        for (size_t i = 0; i < y_ref.size(); ++i)
          ASSERT_TRUE(same_bits(y_ref[i], y_fast[i]))
              << "K=" << K << " i=" << i << " " << y_ref[i] << " vs " << y_fast[i];
        for (size_t m = 0; m < M; ++m)
          ASSERT_TRUE(same_bits(matmul_kernels(isa).dot(&x[m * K], w.data(), K), y_ref[m * N]));
      }
    }
  }
}

TEST(EngineMatmul, InfinitiesAndNanPropagate) {
  FP4KIT_REQUIRE_SIMD();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {1, inf, 2, 3, 4, 5, 6, 7, 8, 1}, w = {1, 1, 1, 1, 1, 1, 1, 1, 1, -inf};
  // inf + -inf in different lanes: NaN after the lane combination; both paths agree.
  const float r = matmul_ref::dot(x.data(), w.data(), x.size());
  EXPECT_TRUE(std::isnan(r));
  for (Isa isa : simd_isas())
    EXPECT_TRUE(same_bits(r, matmul_kernels(isa).dot(x.data(), w.data(), x.size()))) << isa_name(isa);
}

TEST(EngineMatmul, ReferenceFollowsTheDocumentedOrder) {
  // Lane j sums k = j, j+8, ...; lanes combine as ((s0+s4)+(s2+s6))+((s1+s5)+(s3+s7)). These values
  // give a different f32 result for a left-to-right sum, so the test sees the order.
  std::vector<float> a = {1e8f, 1, 0, 0, -1e8f, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1};
  std::vector<float> b(a.size(), 1.0f);
  float s[8] = {};
  for (size_t k = 0; k < 24; ++k) s[k % 8] += k < a.size() ? a[k] * b[k] : 0.0f;
  const float expected = ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
  float left_to_right = 0;
  for (float v : a) left_to_right += v;
  ASSERT_NE(expected, left_to_right);
  EXPECT_EQ(matmul_ref::dot(a.data(), b.data(), a.size()), expected);
}

TEST(EngineMatmul, ThreadCountDoesNotChangeTheResult) {
  std::mt19937 rng(11);
  const size_t M = 70, N = 130, K = 100;
  const auto x = random_values(M * K, rng, false);
  const auto w = random_values(N * K, rng, false);
  std::vector<float> y1(M * N), y3(M * N), y_ref(M * N);
  matmul(x.data(), w.data(), y1.data(), M, N, K, 1);
  matmul(x.data(), w.data(), y3.data(), M, N, K, 3);
  matmul_ref::matmul(x.data(), K, w.data(), K, y_ref.data(), N, M, N, K);
  for (size_t i = 0; i < y1.size(); ++i) {
    ASSERT_TRUE(same_bits(y1[i], y3[i])) << i;
    ASSERT_TRUE(same_bits(y1[i], y_ref[i])) << i;
  }
}

}  // namespace
}  // namespace fp4kit::engine
