#include "formats/nvfp4_hessian_sweep.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "formats/e2m1.h"
#include "formats/modelopt_gpu_arith.h"

namespace fp4kit {

namespace {

constexpr int kHessianBlock = 16;

}  // namespace

HessianBlockWeight hessian_block_weight(const float* xtx, double damping) {
  HessianBlockWeight w;
  double diag_sum = 0.0;
  for (int i = 0; i < kHessianBlock * kHessianBlock; ++i)
    if (!std::isfinite(xtx[i])) return w;
  for (int i = 0; i < kHessianBlock; ++i) {
    const double d = xtx[i * kHessianBlock + i];
    if (d < 0.0) return w;  // not a Gram matrix
    diag_sum += d;
  }
  if (!(diag_sum > 0.0)) return w;  // no row ever touched these channels
  const double shift = damping * (diag_sum / kHessianBlock);
  // Normalised by the largest damped diagonal value: a multiple of the identity becomes exactly 1s.
  double top = 0.0;
  for (int i = 0; i < kHessianBlock; ++i) top = std::max(top, static_cast<double>(xtx[i * kHessianBlock + i]) + shift);
  for (int i = 0; i < kHessianBlock; ++i)
    for (int j = 0; j < kHessianBlock; ++j) {
      const double v = static_cast<double>(xtx[i * kHessianBlock + j]) + (i == j ? shift : 0.0);
      w.h[static_cast<size_t>(i * kHessianBlock + j)] = static_cast<float>(v / top);
    }
  w.usable = true;
  return w;
}

HessianLossTerms hessian_block_terms(const float* x, const Nvfp4MseCandidates& cand, int k, const HessianBlockWeight& w,
                                     int lanes) {
  const float scale = cand.scale(k), reciprocal = cand.reciprocal(k);
  float d[kHessianBlock];
  for (int i = 0; i < kHessianBlock; ++i) {
    const float a = std::fabs(x[i]);
    const float q = E2M1::kValues[E2M1::magnitude_code(a * reciprocal)];
    d[i] = gpu_arith::triton_sub_mul(a, q, scale);
  }
  // Diagonal terms in the mse sweep's order (mse_block_loss): with h_ii = 1, h_ii·d is d exactly.
  const int per_lane = kHessianBlock / lanes;
  float lane_sum[kHessianBlock];
  for (int t = 0; t < lanes; ++t) {
    float acc = 0.0f;
    for (int j = 0; j < per_lane; ++j) {
      const int i = t * per_lane + j;
      const float hd = w.h[static_cast<size_t>(i * kHessianBlock + i)] * d[i];
      acc = j == 0 ? d[i] * hd : std::fma(d[i], hd, acc);
    }
    lane_sum[t] = acc;
  }
  for (int offset = lanes / 2; offset > 0; offset /= 2)
    for (int t = 0; t < offset; ++t) lane_sum[t] = lane_sum[t] + lane_sum[t + offset];
  // Off-diagonal terms with the signs of the errors: e_i = sign(w_i)·d_i.
  double cross = 0.0;
  bool any = false;
  for (int i = 0; i < kHessianBlock; ++i) {
    const double ei = std::signbit(x[i]) ? -static_cast<double>(d[i]) : static_cast<double>(d[i]);
    for (int j = i + 1; j < kHessianBlock; ++j) {
      const float h = w.h[static_cast<size_t>(i * kHessianBlock + j)];
      if (h == 0.0f) continue;
      const double ej = std::signbit(x[j]) ? -static_cast<double>(d[j]) : static_cast<double>(d[j]);
      cross += 2.0 * static_cast<double>(h) * ei * ej;
      any = true;
    }
  }
  return HessianLossTerms{lane_sum[0], cross, any};
}

float hessian_block_loss(const float* x, const Nvfp4MseCandidates& cand, int k, const HessianBlockWeight& w, int lanes) {
  return hessian_block_terms(x, cand, k, w, lanes).loss();
}

int hessian_sweep(const float* x, const Nvfp4MseCandidates& cand, const HessianBlockWeight& w, int lanes) {
  if (!w.usable) return mse_sweep(x, cand, lanes);
  float best = std::numeric_limits<float>::infinity();
  int best_k = 0;  // as the mse sweep: a block whose every loss is NaN keeps candidate 0
  for (int k = 0; k < Nvfp4MseCandidates::kCount; ++k) {
    const float loss = hessian_block_loss(x, cand, k, w, lanes);
    if (loss < best) {  // strictly: equal losses keep the smaller scale
      best = loss;
      best_k = k;
    }
  }
  return best_k;
}

void nvfp4_hessian_quantize_ref(FloatSpan src, size_t first_block, const std::vector<HessianBlockWeight>& weights,
                                const HessianLayout& layout, const Nvfp4SearchScaling& sc, uint8_t* packed, uint8_t* scales,
                                Nvfp4HessianStats* stats) {
  const Nvfp4MseCandidates candidates(sc.global_amax);
  const int lanes = mse_sweep_lanes(src.dtype);
  const bool cuda = sc.numerics == Nvfp4Numerics::ModelOptCuda;
  const float fp8_max = scale_method_fp8_max(Nvfp4ScaleMethod::Mse);
  Nvfp4HessianStats local;
  float x[kHessianBlock];
  for (size_t b = 0; b < src.size / kHessianBlock; ++b) {
    for (size_t i = 0; i < kHessianBlock; ++i) x[i] = src.at(b * kHessianBlock + i);
    const HessianBlockWeight& w = weights.at(layout.index(first_block + b));
    const int k = hessian_sweep(x, candidates, w, lanes);
    ++local.blocks;
    local.fallback_blocks += !w.usable;
    scales[b] = modelopt_static_block_scale(candidates.block_amax(k), sc.global_amax, fp8_max, cuda);
  }
  // The elements as every ModelOpt export quantizes them with the exported scales.
  nvfp4_ref::quantize_with_scales(src, scales, Nvfp4Scaling{sc.numerics, sc.weight_scale_2, src.dtype}, packed);
  if (stats) {
    stats->blocks += local.blocks;
    stats->fallback_blocks += local.fallback_blocks;
  }
}

namespace {

void ref_block_terms(const float* x, const Nvfp4MseCandidates& cand, const HessianBlockWeight& w, int lanes,
                     HessianLossTerms* terms) {
  for (int k = 0; k < Nvfp4MseCandidates::kCount; ++k) terms[k] = hessian_block_terms(x, cand, k, w, lanes);
}

const Nvfp4HessianKernels kScalarHessianKernels = {nvfp4_hessian_quantize_ref, ref_block_terms};

}  // namespace

const Nvfp4HessianKernels& nvfp4_hessian_kernels(Isa isa) {
  if (const Nvfp4HessianKernels* k = nvfp4_hessian_simd::kernels(isa)) return *k;
  return kScalarHessianKernels;
}

}  // namespace fp4kit
