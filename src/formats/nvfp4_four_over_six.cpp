#include "formats/nvfp4_four_over_six.h"

#include <cmath>

#include "formats/e2m1.h"
#include "formats/e4m3.h"
#include "formats/modelopt_gpu_arith.h"

namespace fp4kit {

FourOverSixFakeScale::FourOverSixFakeScale(float global_amax) {
  // compute_fp4_scales: the FP8 amax global_amax * (448/256) / 6.0; fake_e4m3fy: an amax at or
  // below 2^-24 counts as 1, x * (448/amax) to E4M3, times the reciprocal of that factor.
  const float fp8_amax = gpu_arith::div_by_constant(global_amax * 1.75f, 6.0f, true);
  const float safe_amax = fp8_amax <= 0x1p-24f ? 1.0f : fp8_amax;
  factor_ = 448.0f / safe_amax;
  inverse_ = 1.0f / factor_;
}

float FourOverSixFakeScale::operator()(float candidate_amax) const {
  // compute_fp4_scales: scale = amax / 6.0, to E4M3 (saturating, round to nearest even).
  const float scale = gpu_arith::div_by_constant(candidate_amax, 6.0f, true);
  return E4M3::from_float_saturate(scale * factor_).to_float() * inverse_;
}

float four_over_six_fake_scale(float candidate_amax, float global_amax) {
  return FourOverSixFakeScale(global_amax)(candidate_amax);
}

float four_over_six_safe_scale(float scale) {
  return scale == 0.0f || std::isnan(scale) || std::isinf(scale) ? 1.0f : scale;
}

float four_over_six_block_loss(const float* x, float scale) {
  // nvfp4_scalar_quant: a zero scale gives zeros.
  const bool zero = scale == 0.0f;
  const float safe = four_over_six_safe_scale(scale);
  float squared[16];
  for (int i = 0; i < 16; ++i) {
    const float q = E2M1::kValues[E2M1::magnitude_code(gpu_arith::triton_div(std::fabs(x[i]), safe))];
    const float magnitude = q * safe;
    const float xq = zero ? 0.0f : (x[i] >= 0.0f ? magnitude : -magnitude);
    // F.mse_loss(reduction="none"), then the sum over the block.
    const float d = x[i] - xq;
    squared[i] = d * d;
  }
  return gpu_arith::torch_sum16(squared);
}

bool four_over_six_prefers_four(float loss6, float loss4) {
  // torch.argmin: NaN counts as the smallest, the first of equal values wins.
  if (std::isnan(loss6)) return false;
  if (std::isnan(loss4)) return true;
  return loss4 < loss6;
}

bool four_over_six_picks_four(const float* x, float block_amax, float global_amax) {
  // MseCalibrator with multipliers linspace(1.0, 1.5, 2): candidate amaxes block_amax * {1, 1.5}.
  const FourOverSixFakeScale fake_scale(global_amax);
  const float loss6 = four_over_six_block_loss(x, fake_scale(block_amax));
  const float loss4 = four_over_six_block_loss(x, fake_scale(block_amax * 1.5f));
  return four_over_six_prefers_four(loss6, loss4);
}

}  // namespace fp4kit
