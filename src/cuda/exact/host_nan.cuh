#pragma once
// NaN as the host's FPU makes it, on the device. The CPU references compute with plain f32
// operations; x86 (and Arm) return a NaN operand quieted, the first one when both are NaN, and
// a "default NaN" for an invalid operation (0/0, 0*inf, inf/inf, inf-inf), 0xFFC00000 on x86. A GPU
// returns 0x7FFFFFFF in every case. Where the NaN's bits reach an output (the sign of an E4M3 scale
// byte, an f32 value), a kernel passes the result through host_nan(), and decides clamps of such a
// value on its bits: ptxas may turn a float compare-and-select clamp into a NaN-propagating min/max,
// which gives the canonical NaN.
#include <cuda_runtime.h>

#include <cstdint>

namespace fp4kit::cuda {

// `r` = a op b as the device computed it; `default_nan` from host_default_nan() of the launcher.
__device__ __forceinline__ float host_nan(float r, float a, float b, uint32_t default_nan) {
  if (!(r != r)) return r;
  if (a != a) return __uint_as_float(__float_as_uint(a) | 0x00400000u);
  if (b != b) return __uint_as_float(__float_as_uint(b) | 0x00400000u);
  return __uint_as_float(default_nan);
}

__device__ __forceinline__ float host_mul(float a, float b, uint32_t default_nan) {
  return host_nan(__fmul_rn(a, b), a, b, default_nan);
}
__device__ __forceinline__ float host_div(float a, float b, uint32_t default_nan) {
  return host_nan(__fdiv_rn(a, b), a, b, default_nan);
}

}  // namespace fp4kit::cuda
