// The scalar reference of GPTQ's row compensation: one row at a time, each later column updated
// in the order the fast path keeps (nvfp4_gptq.h).
#include <algorithm>
#include <cmath>

#include "formats/e2m1.h"
#include "formats/nvfp4_gptq.h"

namespace fp4kit::nvfp4_gptq_ref {

namespace {

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
    if (!compensate_batch(w.data(), scales, scaling, f, i1, i2, err.data(), codes)) return false;
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

bool compensate_batch(double* w, const uint8_t* scales, const Nvfp4Scaling& scaling, const GptqFactor& f, size_t i1,
                      size_t i2, double* err, uint8_t* codes) {
  const size_t k = f.k;
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
  return true;
}

GptqRowStats quantize_rows(FloatSpan src, size_t k, const uint8_t* scales, const Nvfp4Scaling& scaling,
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

}  // namespace fp4kit::nvfp4_gptq_ref
