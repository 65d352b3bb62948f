#include "verify/tensor_error.h"

#include <cmath>

namespace fp4kit::verify {

void TensorError::add(const float* x, const float* ref, size_t n) {
  values += n;
  if (!ref) {
    for (size_t i = 0; i < n; ++i)
      if (!std::isfinite(x[i])) {
        nan += std::isnan(x[i]);
        inf += std::isinf(x[i]);
      }
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    const float a = x[i], b = ref[i];
    exact += a == b;
    const double d = static_cast<double>(a) - static_cast<double>(b);
    if (!std::isfinite(d)) {  // a NaN or Inf on either side (finite floats never overflow a double)
      nan += std::isnan(a);
      inf += std::isinf(a);
      ref_nan += std::isnan(b);
      ref_inf += std::isinf(b);
      ++skipped;
      continue;
    }
    signal += static_cast<double>(b) * static_cast<double>(b);
    noise += d * d;
    max_abs = std::max(max_abs, std::fabs(d));
  }
}

std::optional<double> TensorError::sqnr_db() const {
  if (noise == 0.0) return std::nullopt;
  if (signal == 0.0) return kSqnrFloorDb;
  return std::max(kSqnrFloorDb, 10.0 * std::log10(signal / noise));
}

double TensorError::rel_rms() const {
  if (noise == 0.0) return 0.0;
  if (signal == 0.0) return INFINITY;
  return std::sqrt(noise / signal);
}

}  // namespace fp4kit::verify
