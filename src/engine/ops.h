#pragma once
// Small elementwise and row operations of the forward pass, in f32 as transformers computes them
// (sums of squares are accumulated in double: deterministic, and closer to the exact value).
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace fp4kit::engine {

// out = weight ⊙ x / sqrt(mean(x^2) + eps); weight may be null (unweighted). out may alias x.
inline void rms_norm(const float* x, size_t n, const float* weight, float eps, float* out) {
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float inv = 1.0f / std::sqrt(mean + eps);
  for (size_t i = 0; i < n; ++i) out[i] = weight ? weight[i] * (x[i] * inv) : x[i] * inv;
}

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
inline float silu(float x) { return x / (1.0f + std::exp(-x)); }
// PyTorch's softplus (beta 1, threshold 20).
inline float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

}  // namespace fp4kit::engine
