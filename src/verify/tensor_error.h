#pragma once
// Error statistics of one tensor against its reference, accumulated chunk by chunk. The sums run
// in kLanes double lanes: value i of the tensor (counted over every add call) always goes to lane
// i % kLanes, and the lanes are combined in lane order. So the result depends neither on how the
// tensor was cut into chunks nor on the thread count nor on the ISA (the vector path of every ISA
// is bit for bit the scalar one).
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "formats/isa.h"

namespace fp4kit::verify {

struct TensorError {
  static constexpr size_t kLanes = 16;

  uint64_t values = 0, exact = 0;
  uint64_t nan = 0, inf = 0;          // in the values measured
  uint64_t ref_nan = 0, ref_inf = 0;  // in the reference
  uint64_t skipped = 0;               // pairs left out of the sums (a NaN or Inf on either side)
  std::array<double, kLanes> signal_lanes{}, noise_lanes{};  // sum ref^2, sum (x - ref)^2 over finite pairs
  double max_abs = 0.0;

  // `ref` may be null: then only the NaN/Inf counts of `x` are taken. The fastest supported ISA.
  void add(const float* x, const float* ref, size_t n);
  // The scalar definition of add.
  void add_ref(const float* x, const float* ref, size_t n);

  double signal() const;  // the lanes summed in lane order
  double noise() const;
  // 10 log10(signal / noise); nullopt when noise is 0 (exact); -inf is reported as -999.
  std::optional<double> sqnr_db() const;
  double rel_rms() const;  // sqrt(noise / signal), 0 when both are 0
};

// The vector form of TensorError::add_ref with a non-null ref for `isa` (tensor_error_simd.cpp),
// nullptr where none was compiled.
using TensorErrorAdd = void (*)(TensorError& e, const float* x, const float* ref, size_t n);
TensorErrorAdd tensor_error_add_kernel(Isa isa);

// Below this, the SQNR is shown as the floor (a zero reference with a nonzero error).
inline constexpr double kSqnrFloorDb = -999.0;

}  // namespace fp4kit::verify
