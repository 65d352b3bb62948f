#pragma once
// The E2M1 code of a quotient that no tie can reach, from its f32 bits, with no branch (the quantize
// kernel's per-element path; e2m1_of_quotient.cuh says when it applies). Plain constexpr C++: the
// device compiles it (--expt-relaxed-constexpr) and the CPU tests check it against E2M1.
#include <cstdint>

namespace fp4kit::cuda {

// Whether |q| of f32 bits u is normal, in [2^-100, 2^127), and more than 5 bit-steps from every float
// whose low 21 mantissa bits are zero (so from every E2M1 midpoint 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5).
constexpr bool e2m1_product_decides(uint32_t u) {
  return u - 0x0D800000u < 0x71800000u && ((u + 5u) & 0x1FFFFFu) > 10u;
}

// E2M1 magnitude code of a = |q| (f32 bits u, sign clear) for an a where e2m1_product_decides(u): from 1
// up, a rounded to one mantissa bit (half up: no tie reaches here) gives (exponent, mantissa) as the
// code, saturating at 7; below 1 the grid step is 0.5, so the code counts the midpoints 0.25 and 0.75
// below a. Selects, not branches: every lane of a warp runs the same instructions.
constexpr uint32_t e2m1_code_off_midpoints(uint32_t u) {
  const uint32_t from_one = ((u + 0x200000u) >> 22) - 252u;  // 252 = (127 - 1) << 1
  const uint32_t below_one = static_cast<uint32_t>(u > 0x3E800000u) + static_cast<uint32_t>(u > 0x3F400000u);
  return u >= 0x3F800000u ? (from_one < 7u ? from_one : 7u) : below_one;
}

}  // namespace fp4kit::cuda
