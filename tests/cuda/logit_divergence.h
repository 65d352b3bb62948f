#pragma once
// KL divergence and top-1 agreement between two sets of logits, for the GPU tests' BF16 bounds.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace fp4kit::testing {

struct Divergence {
  double kld_mean = 0, kld_max = 0;
  int64_t top1_same = 0, positions = 0;
};

// KL(reference || got) per position in F64 over [positions, V] logits; NaN propagates into the mean.
inline Divergence divergence(const std::vector<float>& reference, const std::vector<float>& got, int64_t V) {
  Divergence d;
  d.positions = static_cast<int64_t>(reference.size()) / V;
  for (int64_t r = 0; r < d.positions; ++r) {
    const float* p = &reference[static_cast<size_t>(r * V)];
    const float* q = &got[static_cast<size_t>(r * V)];
    auto log_sum_exp = [V](const float* x) {
      double m = -INFINITY, s = 0;
      for (int64_t i = 0; i < V; ++i) m = std::max(m, static_cast<double>(x[i]));
      for (int64_t i = 0; i < V; ++i) s += std::exp(x[i] - m);
      return m + std::log(s);
    };
    const double lp = log_sum_exp(p), lq = log_sum_exp(q);
    double kl = 0;
    for (int64_t i = 0; i < V; ++i) {
      const double a = p[i] - lp, b = q[i] - lq;
      kl += std::exp(a) * (a - b);
    }
    d.kld_mean += kl;
    d.kld_max = std::isnan(kl) ? kl : std::max(d.kld_max, kl);
    d.top1_same += std::max_element(p, p + V) - p == std::max_element(q, q + V) - q;
  }
  d.kld_mean /= static_cast<double>(d.positions);
  return d;
}

}  // namespace fp4kit::testing
