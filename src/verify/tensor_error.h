#pragma once
// Error statistics of one tensor against its reference, accumulated chunk by chunk in a fixed order
// (so the result never depends on how the work was split over threads).
#include <cstddef>
#include <cstdint>
#include <optional>

namespace fp4kit::verify {

struct TensorError {
  uint64_t values = 0, exact = 0;
  uint64_t nan = 0, inf = 0;          // in the values measured
  uint64_t ref_nan = 0, ref_inf = 0;  // in the reference
  uint64_t skipped = 0;               // pairs left out of the sums (a NaN or Inf on either side)
  double signal = 0.0, noise = 0.0;   // sum ref^2, sum (x - ref)^2 over finite pairs
  double max_abs = 0.0;

  // `ref` may be null: then only the NaN/Inf counts of `x` are taken.
  void add(const float* x, const float* ref, size_t n);

  // 10 log10(signal / noise); nullopt when noise is 0 (exact); -inf is reported as -999.
  std::optional<double> sqnr_db() const;
  double rel_rms() const;  // sqrt(noise / signal), 0 when both are 0
};

// Below this, the SQNR is shown as the floor (a zero reference with a nonzero error).
inline constexpr double kSqnrFloorDb = -999.0;

}  // namespace fp4kit::verify
