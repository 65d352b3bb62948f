#pragma once
// The float operations ModelOpt's searched NVFP4 scales are computed with on the GPU, written out so
// that the CPU reproduces them bit for bit (docs/scale-search.md):
//  - PyTorch on CUDA turns "tensor / python float" into a multiply by the f32 reciprocal of the
//    float (on the CPU it is a true division);
//  - Triton's "/" on f32 is PTX div.full.f32, a multiply by the reciprocal of the divisor; the
//    reciprocal is modelled as the correctly rounded one;
//  - a Triton kernel built with fp fusion turns a - b * c into one fused multiply-add;
//  - torch.sum over a contiguous last dimension of 16 reduces pairwise: each of 16 lanes holds one
//    value and lanes are combined with shuffles at offsets 1, 2, 4, 8.
// The build compiles with -ffp-contract=off, so every other operation here rounds on its own.
#include <cmath>

namespace fp4kit::gpu_arith {

// x / divisor, where divisor is a Python float: f32 division on the CPU, x * fl(1/divisor) on CUDA.
inline float div_by_constant(float x, float divisor, bool cuda) {
  if (cuda) {
    const float reciprocal = 1.0f / divisor;
    return x * reciprocal;
  }
  return x / divisor;
}

// Triton's a / b (div.full.f32).
inline float triton_div(float a, float b) {
  const float reciprocal = 1.0f / b;
  return a * reciprocal;
}

// Triton's a - b * c with fp fusion.
inline float triton_sub_mul(float a, float b, float c) { return std::fma(-b, c, a); }

// torch.sum of 16 contiguous f32 values on CUDA.
inline float torch_sum16(const float* v) {
  float s[16];
  for (int i = 0; i < 16; ++i) s[i] = v[i];
  for (int width = 1; width < 16; width *= 2)
    for (int i = 0; i < 16; i += 2 * width) s[i] = s[i] + s[i + width];
  return s[0];
}

}  // namespace fp4kit::gpu_arith
