#include "verify/tensor_error.h"

#include <cmath>

#include "formats/isa.h"

namespace fp4kit::verify {

void TensorError::add(const float* x, const float* ref, size_t n) {
  static const TensorErrorAdd fast = tensor_error_add_kernel(preferred_isa());
  if (ref && fast) return fast(*this, x, ref, n);
  add_ref(x, ref, n);
}

void TensorError::add_ref(const float* x, const float* ref, size_t n) {
  const uint64_t first = values;
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
    const size_t lane = (first + i) % kLanes;
    signal_lanes[lane] += static_cast<double>(b) * static_cast<double>(b);
    noise_lanes[lane] += d * d;
    max_abs = std::max(max_abs, std::fabs(d));
  }
}

double TensorError::signal() const {
  double s = 0.0;
  for (double v : signal_lanes) s += v;
  return s;
}

double TensorError::noise() const {
  double s = 0.0;
  for (double v : noise_lanes) s += v;
  return s;
}

std::optional<double> TensorError::sqnr_db() const {
  const double sig = signal(), noi = noise();
  if (noi == 0.0) return std::nullopt;
  if (sig == 0.0) return kSqnrFloorDb;
  return std::max(kSqnrFloorDb, 10.0 * std::log10(sig / noi));
}

double TensorError::rel_rms() const {
  const double sig = signal(), noi = noise();
  if (noi == 0.0) return 0.0;
  if (sig == 0.0) return INFINITY;
  return std::sqrt(noi / sig);
}

}  // namespace fp4kit::verify
