#include "engine/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace fp4kit::engine {

Rope::Rope(int64_t dim, float theta, const YarnParams& yarn) : dim_(dim) {
  const int64_t half = dim / 2;
  inv_freq_.resize(static_cast<size_t>(half));
  // transformers: base ** (arange(0, dim, 2) / dim) in f32, then 1 / that.
  std::vector<float> pos_freq(inv_freq_.size());
  for (int64_t i = 0; i < half; ++i)
    pos_freq[i] = std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(dim));
  if (!yarn.enabled) {
    for (int64_t i = 0; i < half; ++i) inv_freq_[i] = 1.0f / pos_freq[i];
    return;
  }
  // YaRN correction range, in double as transformers computes it in Python.
  const auto correction_dim = [&](double rotations) {
    return static_cast<double>(dim) * std::log(yarn.original_max_position / (rotations * 2 * std::numbers::pi)) /
           (2 * std::log(static_cast<double>(theta)));
  };
  double low = std::max(std::floor(correction_dim(yarn.beta_fast)), 0.0);
  double high = std::min(std::ceil(correction_dim(yarn.beta_slow)), static_cast<double>(dim - 1));
  if (low == high) high += 0.001;
  const float factor = static_cast<float>(yarn.factor);
  for (int64_t i = 0; i < half; ++i) {
    float ramp = (static_cast<float>(i) - static_cast<float>(low)) / static_cast<float>(high - low);
    ramp = std::clamp(ramp, 0.0f, 1.0f);
    const float extrapolation_factor = 1.0f - ramp;
    const float interpolation = 1.0f / (factor * pos_freq[i]);
    const float extrapolation = 1.0f / pos_freq[i];
    inv_freq_[i] = interpolation * (1.0f - extrapolation_factor) + extrapolation * extrapolation_factor;
  }
}

void Rope::apply(float* v, int64_t position, bool inverse) const {
  const float p = static_cast<float>(position);
  for (size_t i = 0; i < inv_freq_.size(); ++i) {
    const float angle = p * inv_freq_[i];
    const float c = std::cos(angle);
    const float s = inverse ? -std::sin(angle) : std::sin(angle);
    const float a = v[2 * i], b = v[2 * i + 1];
    v[2 * i] = a * c - b * s;
    v[2 * i + 1] = b * c + a * s;
  }
}

}  // namespace fp4kit::engine
