#include "formats/nvfp4_gptq.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "base/cholesky.h"
#include "formats/e2m1.h"

namespace fp4kit {

namespace {

constexpr int kDampingTries = 4;  // λ, 10λ, 100λ, 1000λ

// The plain rounding of one row (quantize_with_scales' rule) into its codes.
void round_row(FloatSpan row, const uint8_t* scales, const Nvfp4Scaling& scaling, uint8_t* codes) {
  for (size_t c = 0; c < row.size; ++c)
    codes[c] = E2M1::from_float(row.at(c) / nvfp4_quant_divisor(scales[c / kNvfp4BlockSize], scaling)).bits;
}

// False when a value was not finite (the row then keeps plain rounding).
bool compensate_row(FloatSpan row, const uint8_t* scales, const Nvfp4Scaling& scaling, const GptqFactor& f,
                    size_t block, std::vector<double>& w, std::vector<double>& err, std::vector<double>& acc,
                    uint8_t* codes) {
  const size_t k = f.k;
  for (size_t i = 0; i < k; ++i) {
    w[i] = row.at(f.order[i]);
    if (!std::isfinite(w[i])) return false;
  }
  for (size_t i1 = 0; i1 < k; i1 += block) {
    const size_t i2 = std::min(i1 + block, k);
    for (size_t i = i1; i < i2; ++i) {
      const size_t c = f.order[i];
      const float divisor = nvfp4_quant_divisor(scales[c / kNvfp4BlockSize], scaling);
      const E2M1 q = E2M1::from_float(static_cast<float>(w[i]) / divisor);
      codes[c] = q.bits;
      const double rounded = static_cast<double>(q.to_float() * nvfp4_dequant_multiplier(scales[c / kNvfp4BlockSize], scaling));
      const double* ui = f.u.data() + i * k;
      const double e = (w[i] - rounded) / ui[i];
      if (!std::isfinite(e)) return false;
      for (size_t j = i + 1; j < i2; ++j) w[j] -= e * ui[j];
      err[i - i1] = e;
    }
    // The batch's errors reach the later columns at once: W[:, i2:] -= Err · U[i1:i2, i2:].
    if (i2 == k) break;
    std::fill(acc.begin() + static_cast<std::ptrdiff_t>(i2), acc.end(), 0.0);
    for (size_t t = i1; t < i2; ++t) {
      const double e = err[t - i1];
      const double* ut = f.u.data() + t * k;
      for (size_t j = i2; j < k; ++j) acc[j] += e * ut[j];
    }
    for (size_t j = i2; j < k; ++j) w[j] -= acc[j];
  }
  return true;
}

}  // namespace

GptqFactor gptq_factor(const std::vector<double>& h, size_t k, const GptqOptions& options, unsigned threads) {
  GptqFactor f;
  f.k = k;
  f.order.resize(k);
  std::iota(f.order.begin(), f.order.end(), size_t{0});
  double trace = 0;
  for (size_t i = 0; i < k; ++i) {
    const double d = h[i * k + i];
    if (!std::isfinite(d) || d < 0) {
      f.why = std::isfinite(d) ? "a negative diagonal value" : "NaN or Inf";
      return f;
    }
    trace += d;
  }
  for (double v : h)
    if (!std::isfinite(v)) {
      f.why = "NaN or Inf";
      return f;
    }
  if (!(trace > 0)) {
    f.why = "an all-zero diagonal (no calibration row)";
    return f;
  }
  if (options.act_order)
    std::stable_sort(f.order.begin(), f.order.end(), [&](size_t a, size_t b) { return h[a * k + a] > h[b * k + b]; });
  std::vector<double> damped(k * k);
  for (size_t i = 0; i < k; ++i)
    for (size_t j = 0; j < k; ++j) damped[i * k + j] = h[f.order[i] * k + f.order[j]];
  const double mean = trace / static_cast<double>(k);
  double lambda = options.damping;
  for (int t = 0; t < kDampingTries; ++t, lambda = lambda > 0 ? lambda * 10 : 0.01) {
    std::vector<double> a = damped;
    for (size_t i = 0; i < k; ++i) a[i * k + i] += lambda * mean;
    if (inverse_cholesky_upper(a, k, f.u, threads)) {
      f.damping = lambda;
      f.usable = true;
      return f;
    }
  }
  f.u.clear();
  f.why = "not positive definite with damping up to " + std::to_string(lambda / 10);
  return f;
}

GptqRowStats nvfp4_gptq_quantize_rows(FloatSpan src, size_t k, const uint8_t* scales, const Nvfp4Scaling& scaling,
                                      const GptqFactor& factor, size_t block, uint8_t* packed) {
  GptqRowStats stats;
  const size_t rows = src.size / k;
  std::vector<double> w(k), err(block), acc(k);
  std::vector<uint8_t> codes(k);
  for (size_t r = 0; r < rows; ++r) {
    const FloatSpan row = src.subspan(r * k, k);
    const uint8_t* row_scales = scales + r * k / kNvfp4BlockSize;
    const bool done = factor.usable && compensate_row(row, row_scales, scaling, factor, block, w, err, acc, codes.data());
    if (!done) round_row(row, row_scales, scaling, codes.data());
    (done ? stats.rows : stats.skipped_rows) += factor.usable ? 1 : 0;
    for (size_t c = 0; c < k; c += 2)
      packed[(r * k + c) / 2] = pack_e2m1(E2M1{codes[c]}, E2M1{codes[c + 1]});
  }
  return stats;
}

}  // namespace fp4kit
