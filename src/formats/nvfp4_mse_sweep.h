#pragma once
// ModelOpt's FP8 scale sweep for NVFP4 weights (NVFP4_W4A4_WEIGHT_MSE_FP8_SWEEP_CFG): per 16-element
// block, every positive finite E4M3 value v is tried as the block scale (candidate c = v/448 of the
// global amax g, i.e. scale c*g/6) and the one with the smallest squared error wins; equal errors
// go to the smaller scale. The global amax stays the tensor's max. The arithmetic is that of
// ModelOpt's Triton sweep kernel on the GPU (formats/modelopt_gpu_arith.h); docs/scale-search.md
// has the derivation and the sources.
//
// mse_sweep_full tries all 126 candidates, as ModelOpt does. mse_sweep tries only the window of
// codes [code(q0) - 4, code(q0) + 8] around q0, the E4M3 rounding of the block's max-scaling scale
// amax*448/g: ScaleSweep's bound (one minimizer lies in [code(q0) - 3, code(q0) + 7]) widened by
// one code each side, so that q0's own rounding cannot move the window off the optimum. Outside
// the bound's assumptions (q0 subnormal, a global amax below 2^-100 or not finite, a block amax
// below 2^-40 or beyond 448's rounding cell, NaN or infinite values) it falls back to the full
// sweep. Both give the same answer (tests/formats/nvfp4_scale_search_test.cpp; docs/scale-search.md
// says why).
#include <array>
#include <cstdint>

#include "formats/dtype.h"

namespace fp4kit {

// The candidates for one global amax, in ModelOpt's order: candidate k is the E4M3 code k + 1.
class Nvfp4MseCandidates {
 public:
  static constexpr int kCount = 126;

  explicit Nvfp4MseCandidates(float global_amax);

  float global_amax() const { return global_amax_; }
  // The scale the sweep divides by (c*g/6, 1.0 where that is 0), and its reciprocal.
  float scale(int k) const { return scale_[k]; }
  float reciprocal(int k) const { return reciprocal_[k]; }
  // The block amax the calibrator keeps for candidate k: g * c.
  float block_amax(int k) const { return block_amax_[k]; }

 private:
  float global_amax_;
  std::array<float, kCount> scale_{}, reciprocal_{}, block_amax_{};
};

// The elements of a 16-block lie on `lanes` threads of the sweep kernel (2 for 16-bit weights,
// 4 for F32), which fixes the order its squared errors are summed in.
int mse_sweep_lanes(DType source);

// Squared error of the block |x| (16 magnitudes) at candidate k, summed as the kernel sums it.
float mse_block_loss(const float* magnitudes, const Nvfp4MseCandidates&, int k, int lanes);

// The winning candidate of a block of 16 values: all 126 tried.
int mse_sweep_full(const float* x, const Nvfp4MseCandidates&, int lanes);
// The same winner from the window around q0 (falling back to the full sweep where the bound does
// not apply).
int mse_sweep(const float* x, const Nvfp4MseCandidates&, int lanes);

// The first and last candidate mse_sweep tries for a block of amax `block_amax` (full range when
// it falls back).
struct Nvfp4MseWindow {
  int first = 0, last = Nvfp4MseCandidates::kCount - 1;
  bool full() const { return first == 0 && last == Nvfp4MseCandidates::kCount - 1; }
};
Nvfp4MseWindow mse_sweep_window(float block_amax, float global_amax);

}  // namespace fp4kit
