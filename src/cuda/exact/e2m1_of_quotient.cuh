#pragma once
// float_to_e2m1(__fdiv_rn(x, d)) for many x over one divisor d, with a multiply where the reference
// divides, for all but a few x. The division is most of the quantize kernel's arithmetic.
//
// r = RN(1/d) is computed once. For normal operands, q = RN(x·r) is within 2 ulps of x/d (r's error
// is at most 2^-24 relative, then q's own rounding). E2M1's code changes only at the midpoints 0.25,
// 0.75, 1.25, 1.75, 2.5, 3.5 and 5, floats whose low 21 mantissa bits are zero. A q more than 5
// bit-steps from every such float (2 ulps are 4 steps of the binade below 0.25, the one midpoint that
// is a power of two) lies strictly on the same side of every midpoint as x/d and its correct rounding,
// so its code is theirs, and no tie needs breaking (e2m1_off_midpoints.h computes it without a
// branch). The other x — next to a midpoint (or to any float with those bits zero), q near zero
// (where the sign of an underflowing quotient matters) or outside the normal range — and divisors
// whose reciprocal is not normal take the division, except ±0 over a normal divisor (code 0).
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/exact/e2m1_off_midpoints.h"
#include "cuda/exact/encoders.cuh"

namespace fp4kit::cuda {

// The reciprocal E2m1OfQuotient uses for `divisor`, or 0 where it divides every element; the host's
// IEEE division gives the same float as __frcp_rn.
__host__ __device__ inline float e2m1_quotient_reciprocal(float divisor) {
  const float a = fabsf(divisor);
  return a >= 0x1p-120f && a <= 0x1p120f ? 1.0f / divisor : 0.0f;
}

class E2m1OfQuotient {
 public:
  __device__ explicit E2m1OfQuotient(float divisor) : d_(divisor) {
    const float a = fabsf(divisor);
    quick_ = a >= 0x1p-120f && a <= 0x1p120f;  // false for 0, NaN and Inf too
    r_ = quick_ ? __frcp_rn(divisor) : 0.0f;
  }
  // With the reciprocal computed before (e2m1_quotient_reciprocal): 0 where the divisor is not quick.
  __device__ E2m1OfQuotient(float divisor, float reciprocal)
      : d_(divisor), r_(reciprocal), quick_(reciprocal != 0.0f) {}

  __device__ uint32_t operator()(float x) const {
    const uint32_t s = __float_as_uint(__fmul_rn(x, r_)), u = s & 0x7FFFFFFFu;
    if (quick_ && e2m1_product_decides(u)) return e2m1_code_off_midpoints(u) | ((s >> 28) & 0x8u);
    if (quick_ && (__float_as_uint(x) << 1) == 0) return 0;  // ±0 / d is ±0: code 0 (E2M1 has no -0 code)
    return float_to_e2m1(__fdiv_rn(x, d_));
  }

 private:
  float d_, r_;
  bool quick_;
};

}  // namespace fp4kit::cuda
