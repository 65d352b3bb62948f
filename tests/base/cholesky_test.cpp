// The Cholesky factor and the upper factor of the inverse on random symmetric positive definite
// matrices (checked by multiplying back), refusal of matrices that are not positive definite or
// hold NaN, results that do not depend on the thread count, and the blocked factor equal to the
// reference bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "base/cholesky.h"
#include "nan_aware.h"

namespace fp4kit {
namespace {

using testing::finite_below;
using testing::max_keeping_nan;

// B·Bᵀ + shift·I, B [n, n] normal.
std::vector<double> random_spd(size_t n, double shift, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> d;
  std::vector<double> b(n * n), a(n * n, 0.0);
  for (double& v : b) v = d(rng);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) {
      for (size_t k = 0; k < n; ++k) a[i * n + j] += b[i * n + k] * b[j * n + k];
      if (i == j) a[i * n + j] += shift;
    }
  return a;
}

TEST(Cholesky, LowerFactorMultipliesBack) {
  for (size_t n : {1u, 2u, 16u, 37u, 130u}) {
    const std::vector<double> a = random_spd(n, 0.5, 7 + static_cast<uint32_t>(n));
    std::vector<double> l = a;
    ASSERT_TRUE(cholesky_lower(l, n, 2)) << n;
    double worst = 0;
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < n; ++j) {
        if (j > i) {
          EXPECT_EQ(l[i * n + j], 0.0);
        }
        double s = 0;
        for (size_t k = 0; k < n; ++k) s += l[i * n + k] * l[j * n + k];
        worst = max_keeping_nan(worst, std::fabs(s - a[i * n + j]) / (1.0 + std::fabs(a[i * n + j])));
      }
    EXPECT_TRUE(finite_below(worst, 1e-12)) << n;
  }
}

TEST(Cholesky, UpperFactorOfTheInverseMultipliesBackToTheIdentity) {
  for (size_t n : {1u, 16u, 48u, 129u}) {
    const std::vector<double> a = random_spd(n, 1.0, 11 + static_cast<uint32_t>(n));
    std::vector<double> u;
    ASSERT_TRUE(inverse_cholesky_upper(a, n, u, 2)) << n;
    // (Uᵀ·U)·a = I.
    std::vector<double> inv(n * n, 0.0);
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < n; ++j) {
        if (i > j) {
          EXPECT_EQ(u[i * n + j], 0.0);
        }
        for (size_t k = 0; k < n; ++k) inv[i * n + j] += u[k * n + i] * u[k * n + j];
      }
    double worst = 0;
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < n; ++j) {
        double s = 0;
        for (size_t k = 0; k < n; ++k) s += inv[i * n + k] * a[k * n + j];
        worst = max_keeping_nan(worst, std::fabs(s - (i == j ? 1.0 : 0.0)));
      }
    EXPECT_TRUE(finite_below(worst, 1e-9)) << n;
  }
}

TEST(Cholesky, RefusesMatricesThatAreNotPositiveDefinite) {
  std::vector<double> indefinite = {1, 2, 2, 1};
  EXPECT_FALSE(cholesky_lower(indefinite, 2, 1));
  std::vector<double> singular = {1, 1, 1, 1};
  std::vector<double> u;
  EXPECT_FALSE(inverse_cholesky_upper(singular, 2, u, 1));
  std::vector<double> nan = random_spd(8, 1.0, 3);
  nan[3 * 8 + 3] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_FALSE(inverse_cholesky_upper(nan, 8, u, 1));
  std::vector<double> inf = random_spd(8, 1.0, 3);
  inf[0] = std::numeric_limits<double>::infinity();
  EXPECT_FALSE(inverse_cholesky_upper(inf, 8, u, 1));
}

// The blocked factor and inverse against the column-at-a-time reference: bit for bit, on sizes
// around the panel and tile widths, on any thread count; both refuse NaN and indefinite input.
TEST(Cholesky, BlockedEqualsTheReferenceBitForBit) {
  for (size_t n : {1u, 3u, 5u, 63u, 64u, 65u, 130u, 261u}) {
    const std::vector<double> a = random_spd(n, 0.01, 11 + static_cast<uint32_t>(n));
    std::vector<double> ref = a;
    ASSERT_TRUE(cholesky_ref::cholesky_lower(ref, n, 1)) << n;
    std::vector<double> u_ref;
    ASSERT_TRUE(cholesky_ref::inverse_cholesky_upper(a, n, u_ref, 1)) << n;
    for (unsigned threads : {1u, 2u, 3u}) {
      std::vector<double> l = a, u;
      ASSERT_TRUE(cholesky_lower(l, n, threads)) << n;
      EXPECT_TRUE(l == ref) << n << " threads " << threads;
      ASSERT_TRUE(inverse_cholesky_upper(a, n, u, threads)) << n;
      EXPECT_TRUE(u == u_ref) << n << " threads " << threads;
    }
  }
  std::vector<double> nan = random_spd(70, 0.5, 3), u;
  nan[69 * 70 + 68] = nan[68 * 70 + 69] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_FALSE(inverse_cholesky_upper(nan, 70, u, 2));
  EXPECT_FALSE(cholesky_ref::inverse_cholesky_upper(nan, 70, u, 2));
  std::vector<double> indefinite = random_spd(70, 0.5, 4);
  indefinite[66 * 70 + 66] = -1.0;
  EXPECT_FALSE(cholesky_lower(indefinite, 70, 2));
}

TEST(Cholesky, SameBitsOnAnyThreadCount) {
  const size_t n = 200;
  const std::vector<double> a = random_spd(n, 0.1, 5);
  std::vector<double> u1, u2, u4;
  ASSERT_TRUE(inverse_cholesky_upper(a, n, u1, 1));
  ASSERT_TRUE(inverse_cholesky_upper(a, n, u2, 2));
  ASSERT_TRUE(inverse_cholesky_upper(a, n, u4, 4));
  EXPECT_TRUE(u1 == u2);
  EXPECT_TRUE(u1 == u4);
}

}  // namespace
}  // namespace fp4kit
