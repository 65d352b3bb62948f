#include "formats/nvfp4_mse_sweep.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "formats/e2m1.h"
#include "formats/e4m3.h"
#include "formats/modelopt_gpu_arith.h"

namespace fp4kit {

namespace {

constexpr int kMseBlock = 16;

// fp4_round_magnitude: the E2M1 magnitude of a scaled value (round half to even, NaN -> 6).
float e2m1_magnitude(float y) { return E2M1::kValues[E2M1::magnitude_code(y)]; }

int window_code(float value) { return E4M3::from_float(value).bits & 0x7F; }

}  // namespace

Nvfp4MseCandidates::Nvfp4MseCandidates(float global_amax) : global_amax_(global_amax) {
  for (int k = 0; k < kCount; ++k) {
    // fp8_scale_candidates on the GPU: the E4M3 value divided by the Python float 448.
    const float c = gpu_arith::div_by_constant(E4M3{static_cast<uint8_t>(k + 1)}.to_float(), 448.0f, true);
    // The kernel: scale = c * global_amax / 6.0, 1.0 where that is 0; best_amax = global_amax * c.
    float s = gpu_arith::triton_div(c * global_amax, 6.0f);
    if (s == 0.0f) s = 1.0f;
    scale_[k] = s;
    reciprocal_[k] = 1.0f / s;
    block_amax_[k] = global_amax * c;
  }
}

int mse_sweep_lanes(DType source) { return dtype_bits(source) == 32 ? 4 : 2; }

float mse_block_loss(const float* magnitudes, const Nvfp4MseCandidates& cand, int k, int lanes) {
  const float scale = cand.scale(k), reciprocal = cand.reciprocal(k);
  const int per_lane = kMseBlock / lanes;
  float lane_sum[kMseBlock];
  for (int t = 0; t < lanes; ++t) {
    float acc = 0.0f;
    for (int j = 0; j < per_lane; ++j) {
      const float a = magnitudes[t * per_lane + j];
      const float q = e2m1_magnitude(a * reciprocal);
      const float d = gpu_arith::triton_sub_mul(a, q, scale);
      // Within a thread the kernel accumulates in order, the square fused into the addition.
      acc = j == 0 ? d * d : std::fma(d, d, acc);
    }
    lane_sum[t] = acc;
  }
  // Across threads: butterfly shuffles, widest offset first.
  for (int offset = lanes / 2; offset > 0; offset /= 2)
    for (int t = 0; t < offset; ++t) lane_sum[t] = lane_sum[t] + lane_sum[t + offset];
  return lane_sum[0];
}

namespace {

int sweep_range(const float* x, const Nvfp4MseCandidates& cand, int lanes, int first, int last) {
  float magnitudes[kMseBlock];
  for (int i = 0; i < kMseBlock; ++i) magnitudes[i] = std::fabs(x[i]);
  float best = std::numeric_limits<float>::infinity();
  int best_k = 0;  // the kernel's start: a block whose every loss is NaN keeps candidate 0
  for (int k = first; k <= last; ++k) {
    const float loss = mse_block_loss(magnitudes, cand, k, lanes);
    if (loss < best) {
      best = loss;
      best_k = k;
    }
  }
  return best_k;
}

}  // namespace

int mse_sweep_full(const float* x, const Nvfp4MseCandidates& cand, int lanes) {
  return sweep_range(x, cand, lanes, 0, Nvfp4MseCandidates::kCount - 1);
}

Nvfp4MseWindow mse_sweep_window(float block_amax, float global_amax) {
  Nvfp4MseWindow w;
  // An all-zero block has loss 0 everywhere: the first candidate wins.
  if (block_amax == 0.0f) return {0, 0};
  // The candidates halve exactly from code to code - 8 only for normal global amaxes well away from
  // the subnormal range (c * g stays normal); NaN and infinities follow the full sweep.
  if (!std::isfinite(block_amax) || !std::isfinite(global_amax) || !(global_amax >= 0x1p-100f)) return w;
  // Squared errors of blocks this small underflow and tie candidates the bound tells apart.
  if (block_amax < 0x1p-40f) return w;
  const double ratio = static_cast<double>(block_amax) * 448.0 / static_cast<double>(global_amax);
  if (!(ratio < 464.0)) return w;  // beyond the rounding cell of 448
  const int q0 = window_code(static_cast<float>(ratio));
  if (q0 < 9) return w;  // subnormal q0: the bound's doubling chain leaves the E4M3 grid
  w.first = std::max(q0 - 4, 1) - 1;
  w.last = std::min(q0 + 8, Nvfp4MseCandidates::kCount) - 1;
  return w;
}

int mse_sweep(const float* x, const Nvfp4MseCandidates& cand, int lanes) {
  float block_amax = 0.0f;
  for (int i = 0; i < kMseBlock; ++i) {
    const float a = std::fabs(x[i]);
    if (std::isnan(a)) return mse_sweep_full(x, cand, lanes);
    block_amax = std::max(block_amax, a);
  }
  const Nvfp4MseWindow w = mse_sweep_window(block_amax, cand.global_amax());
  return sweep_range(x, cand, lanes, w.first, w.last);
}

}  // namespace fp4kit
