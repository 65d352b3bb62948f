#pragma once
// NVFP4 block scales on the device, as src/formats/nvfp4.cpp computes them on the CPU
// (modelopt_block_scale, nvfp4_block_scale, nvfp4_quant_divisor), NaN sign bits included.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/codecs.cuh"
#include "cuda/exact/encoders.cuh"
#include "cuda/exact/host_nan.cuh"
#include "formats/nvfp4.h"
#include "formats/nvfp4_scale_steps.h"

namespace fp4kit::cuda {

// A kernel argument: Nvfp4Scaling plus what the host computes once.
struct Nvfp4BlockRule {
  Nvfp4Numerics numerics;
  uint8_t source;        // compressed-tensors rounds amax/6 to it: 0 F32, 1 BF16, 2 F16
  float global;          // weight_scale_2 or weight_global_scale
  float modelopt_denom;  // 6*weight_scale_2, computed by the host as the CPU reference does
  uint32_t default_nan;  // host_default_nan()
};

// Host side: the rule for `scaling` (launch.cuh's host_default_nan() gives `default_nan`).
inline Nvfp4BlockRule nvfp4_block_rule(const Nvfp4Scaling& scaling, uint32_t default_nan) {
  Nvfp4BlockRule r;
  r.numerics = scaling.numerics;
  r.source = scaling.source == DType::BF16 ? 1 : scaling.source == DType::F16 ? 2 : 0;
  r.global = scaling.global;
  r.modelopt_denom = 6.0f * scaling.global;
  r.default_nan = default_nan;
  return r;
}

// torch.clamp(s, lo, hi) for 0 < lo < hi: NaN passes through with its bits. Decided on the bits (see
// float_to_e4m3_saturate): a float compare-and-select clamp may become a min/max that returns the
// canonical NaN. -0 and every negative value are below lo.
__device__ __forceinline__ float clamp_keep_nan(float s, float lo, float hi) {
  const uint32_t u = __float_as_uint(s);
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return s;
  if ((u >> 31) != 0 || a < __float_as_uint(lo)) return lo;
  if (a > __float_as_uint(hi)) return hi;
  return s;
}

// modelopt_block_scale with denom = 6*weight_scale_2.
__device__ __forceinline__ uint32_t modelopt_block_scale(float block_amax, float denom, bool zero_block_to_one,
                                                         uint32_t default_nan) {
  float s = host_div(block_amax, denom, default_nan);
  if (zero_block_to_one && s == 0.0f) s = 1.0f;
  return float_to_e4m3(clamp_keep_nan(s, 0x1p-9f, 448.0f));
}

// round_to_source of nvfp4.cpp: an f32 result rounded to the precision of the weight dtype.
__device__ __forceinline__ float round_to_source(float f, uint8_t source) {
  if (source == 1) return bf16_bits_to_float(float_to_bf16_bits(f));
  if (source == 2) return f16_bits_to_float(float_to_f16_bits(f));
  return f;
}

// nvfp4_block_scale: the E4M3 byte of a block whose max |x| is `block_amax`.
__device__ __forceinline__ uint32_t nvfp4_block_scale(float block_amax, const Nvfp4BlockRule& r) {
  if (r.numerics == Nvfp4Numerics::ModelOpt) return modelopt_block_scale(block_amax, r.modelopt_denom, true, r.default_nan);
  if (r.numerics == Nvfp4Numerics::ModelOptCuda) {
    const uint32_t s8 = modelopt_block_scale(block_amax, r.modelopt_denom, true, r.default_nan);
    return (s8 & 0x7Fu) == 0x7Fu ? 0x7Fu : s8;
  }
  const float group = round_to_source(host_div(block_amax, 6.0f, r.default_nan), r.source);
  // global * group; with both NaN (a NaN global, which nvfp4_global_scale never gives) the compiled
  // reference returns the group's NaN, so that operand goes first here.
  const uint32_t s8 = float_to_e4m3_saturate(host_mul(group, r.global, r.default_nan));
  return (s8 & 0x7Fu) == 0 ? float_to_e4m3(0.125f) : s8;
}

// nvfp4_block_scale of a finite amax >= 0 with bits u, from the tensor's usable steps
// (formats/nvfp4_scale_steps.h; nvfp4_scale_from_steps there is the same count on the host): ~25
// integer instructions for an amax at or above the first periodic step (every block but tiny ones),
// where the reference's arithmetic takes an IEEE division and a software E4M3 rounding. The steps
// are uniform kernel arguments, read from the constant bank.
__device__ __forceinline__ uint32_t nvfp4_block_scale_by_steps(const Nvfp4ScaleSteps& t, uint32_t u) {
  uint32_t b;
  if (u >= t.period_first) {
    const uint32_t r = u - t.period_first;
    const int rem = static_cast<int>(r & 0x7FFFFFu);
    b = t.periodic_byte + 8 * (r >> 23);
    // rem >= offset as max(min(rem + 1 - offset, 1), 0), one instruction each (offset[0] is 0).
#pragma unroll
    for (int j = 1; j < 8; ++j) b += __viaddmin_s32_relu(rem, 1 - static_cast<int>(t.period_offset[j]), 1);
    b = min(b, static_cast<uint32_t>(t.last_byte));
  } else {
    b = t.first_byte;
#pragma unroll
    for (int k = 0; k < Nvfp4ScaleSteps::kLowSteps; ++k) b += u >= t.low[k] ? 1u : 0u;
  }
  return u < t.zero_below ? t.zero_byte : b;
}

// nvfp4_quant_divisor: what a block's elements are divided by before the E2M1 cast.
__device__ __forceinline__ float nvfp4_quant_divisor(uint32_t scale_byte, const Nvfp4BlockRule& r) {
  const float s = e4m3_to_float(scale_byte);
  return r.numerics == Nvfp4Numerics::CompressedTensors ? __fdiv_rn(s, r.global) : __fmul_rn(s, r.global);
}

}  // namespace fp4kit::cuda
