#pragma once
// Maxima and bounds that NaN cannot pass. std::max(m, NaN) returns m and `NaN > worst` is false, so
// a loop that keeps the largest error silently drops a NaN and the bound check after it passes;
// these keep the NaN, and the checks fail on it (and on infinities).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

namespace fp4kit::testing {

// max(m, x), NaN if either is NaN.
inline float max_keeping_nan(float m, float x) { return std::isnan(m) || std::isnan(x) ? NAN : std::max(m, x); }
inline double max_keeping_nan(double m, double x) { return std::isnan(m) || std::isnan(x) ? NAN : std::max(m, x); }

// value <= bound, and value finite.
inline ::testing::AssertionResult finite_at_most(double value, double bound) {
  if (!std::isfinite(value)) return ::testing::AssertionFailure() << value << " is not finite (bound " << bound << ")";
  if (!(value <= bound)) return ::testing::AssertionFailure() << value << " exceeds " << bound;
  return ::testing::AssertionSuccess();
}

// value < bound, and value finite.
inline ::testing::AssertionResult finite_below(double value, double bound) {
  if (!std::isfinite(value)) return ::testing::AssertionFailure() << value << " is not finite (bound " << bound << ")";
  if (!(value < bound)) return ::testing::AssertionFailure() << value << " is not below " << bound;
  return ::testing::AssertionSuccess();
}

}  // namespace fp4kit::testing
