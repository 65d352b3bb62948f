#pragma once
// DeepSeek V4's manifold-constrained hyper-connections on the GPU, in F32 as the CPU engine
// computes them (engine/hyper_connection.h, which the tests compare with): hc_pre collapses the hc
// residual streams of each token into one sublayer input and returns the Sinkhorn-normalised
// mixing; hc_post updates the streams with the sublayer output; hc_head collapses them before the
// final norm. Device pointers; asynchronous on `stream`. Plain C++ header.
#include <cstdint>

#include "cuda/runtime.h"

namespace fp4kit::cuda {

struct HcShape {
  int64_t tokens = 0, hc = 0, hidden = 0;
  float hc_eps = 1e-6f, rms_eps = 1e-6f;
  int64_t sinkhorn_iters = 20;
};

struct HcParamsDevice {
  const float* fn = nullptr;     // [rows, hc*hidden]: (2+hc)*hc rows for a block, hc for the head
  const float* base = nullptr;   // [rows]
  const float* scale = nullptr;  // [3] for a block, [1] for the head
};

// Scratch hc_pre and hc_head need: z [tokens, (2+hc)*hc] F32 and pre [tokens, hc] F32.
int64_t hc_scratch_floats(const HcShape& s);

// streams [T, hc, H] -> collapsed [T, H], post [T, hc], comb [T, hc, hc] (C[j, k] row-major). With
// `norm` [H], each collapsed row is then RMS-normalised with that weight and s.rms_eps in the same
// launch, bit for bit as rms_norm_rows would (the sublayer's input norm), and with collapsed_bf16
// [T, H] also rounded to BF16 there (the products' input).
void hc_pre(const float* streams, const HcShape& s, const HcParamsDevice& p, float* collapsed, float* post,
            float* comb, float* scratch, StreamHandle stream, const float* norm = nullptr,
            uint16_t* collapsed_bf16 = nullptr);
// streams <- post_k · y + Σ_j C[j, k] · X_j, y [T, H]. With first_nonfinite (device; it must hold
// T·hc·H or less before), the index into streams of the first non-finite result is left there, as
// first_nonfinite() over the new streams would leave it: the check a decode step makes of each
// layer's output, without a launch of its own.
void hc_post(float* streams, const float* y, const float* post, const float* comb, const HcShape& s,
             StreamHandle stream, int64_t* first_nonfinite = nullptr);
// out [T, H] = Σ_j (sigmoid(z_j · scale + base_j) + hc_eps) · X_j.
void hc_head(const float* streams, const HcShape& s, const HcParamsDevice& p, float* out, float* scratch,
             StreamHandle stream);

}  // namespace fp4kit::cuda
