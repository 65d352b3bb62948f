#include "synth/linear_weight.h"

#include <cmath>

#include "synth/random_fill.h"

namespace fp4kit::synth {

LinearWeight::LinearWeight(CounterRng rng, int64_t cols)
    : values_(rng.child("values")),
      row_scales_(rng.child("row_scales")),
      cols_(cols),
      inv_sqrt_cols_(cols > 0 ? static_cast<float>(1.0 / std::sqrt(static_cast<double>(cols))) : 1.0f),
      column_gain_(static_cast<size_t>(cols), 1.0f) {
  const CounterRng outliers = rng.child("outlier_columns");
  const auto threshold = static_cast<uint64_t>(kOutlierColumnRate * 0x1p64);
  for (int64_t c = 0; c < cols; ++c) {
    const uint64_t bits = outliers.bits(2 * static_cast<uint64_t>(c));
    if (bits >= threshold) continue;
    const float u = uniform_open(outliers.bits(2 * static_cast<uint64_t>(c) + 1));
    column_gain_[static_cast<size_t>(c)] = kOutlierGainMin + (kOutlierGainMax - kOutlierGainMin) * u;
    has_outliers_ = true;
  }
}

float LinearWeight::row_factor(int64_t row) const {
  const float u = uniform_open(row_scales_.bits(static_cast<uint64_t>(row)));
  return static_cast<float>(std::exp2(2.0 * static_cast<double>(u) - 1.0)) * inv_sqrt_cols_;
}

void LinearWeight::rows(int64_t row_begin, int64_t row_end, float* out) const {
  const RandomFill fill = random_fill();
  const auto cols = static_cast<size_t>(cols_);
  for (int64_t r = row_begin; r < row_end; ++r, out += cols) {
    fill(Distribution::StudentT4, values_, static_cast<uint64_t>(r) * cols, cols, out);
    const float f = row_factor(r);
    if (has_outliers_) {
      for (size_t c = 0; c < cols; ++c) out[c] *= f * column_gain_[c];
    } else {
      for (size_t c = 0; c < cols; ++c) out[c] *= f;
    }
  }
}

}  // namespace fp4kit::synth
