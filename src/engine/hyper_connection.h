#pragma once
// Manifold-constrained hyper-connections (mHC): hc residual streams per token, collapsed into one
// sublayer input with `pre` weights and updated with `post` weights and a Sinkhorn-normalised,
// doubly stochastic mixing matrix C (X'_k = post_k * y + sum_j C[j,k] * X_j); and the hyper head
// that collapses the streams once more before the final norm.
#include <cstdint>
#include <vector>

#include "engine/model_config.h"

namespace fp4kit::engine {

struct HcParams {
  const float* fn = nullptr;     // [rows, hc*H]: (2+hc)*hc rows for a block, hc for the head
  const float* base = nullptr;   // [rows]
  const float* scale = nullptr;  // [3] for a block, [1] for the head
};

struct HcMix {
  std::vector<float> post;  // [T, hc]
  std::vector<float> comb;  // [T, hc, hc], C[j, k] row-major
};

// streams [T, hc, H] -> collapsed [T, H] = sum_j pre_j X_j, and the mixing used by hc_post.
void hc_pre(const float* streams, int64_t tokens, const HcParams& p, const ModelConfig& cfg, unsigned threads,
            float* collapsed, HcMix& mix);
// streams <- post_k * y + sum_j C[j,k] X_j, with y [T, H] the sublayer output.
void hc_post(float* streams, const float* y, int64_t tokens, const HcMix& mix, const ModelConfig& cfg, unsigned threads);
// The hyper head: out [T, H] = sum_j (sigmoid(z_j * scale + base_j) + hc_eps) X_j.
void hc_head(const float* streams, int64_t tokens, const HcParams& p, const ModelConfig& cfg, unsigned threads,
             float* out);

}  // namespace fp4kit::engine
