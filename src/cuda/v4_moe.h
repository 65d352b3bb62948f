#pragma once
// The mixture-of-experts pieces of DeepSeek V4 on the GPU, in F32 as the CPU engine computes them
// (engine/moe.h, which the tests compare with): router scores sqrt(softplus(x·gateᵀ)), routing
// (top-k of score + bias, or the tid2eid table of hash layers; weights renormalised over the chosen
// experts times routed_scaling_factor; each token's experts ascending) and the clamped SwiGLU. Device pointers;
// asynchronous on `stream`. Plain C++ header.
#include <cstdint>

#include "cuda/runtime.h"

namespace fp4kit::cuda {

// s <- sqrt(softplus(s)) for n values (PyTorch's softplus: x above 20 stays x).
void router_scores(float* s, int64_t n, StreamHandle stream);

struct RouteTokens {
  const float* scores = nullptr;   // [tokens, experts], after router_scores (or the logits: below)
  bool scores_are_logits = false;  // scores are the router's logits: router_scores' transform is applied on reading
  const float* bias = nullptr;     // [experts]: score routing
  const int64_t* tid2eid = nullptr;  // [vocab, k]: hash routing (instead of bias)
  const int64_t* ids = nullptr;    // [tokens]: hash routing
  int64_t tokens = 0, experts = 0, k = 0, vocab = 0;
  float scaling = 1.0f;            // routed_scaling_factor
  int32_t* chosen = nullptr;       // [tokens, k], ascending per token
  float* weights = nullptr;        // [tokens, k]
  int64_t* bad = nullptr;          // device flag, 0 before: set to 1 + token when a token id or table entry is out of range
};
// One warp per token where experts <= 512 (a thread per token beyond): the same choices and weights.
// A biased score that is NaN counts as -inf (a NaN score whatever the bias, or a NaN bias).
void route_tokens(const RouteTokens& r, StreamHandle stream);

// g <- silu(min(g, limit)) · clamp(u, -limit, limit) for n values (no clamp when limit <= 0); with
// g_bf16, each result also rounded to BF16 there (round to nearest even, as encode_elements).
void swiglu_clamped(float* g, const float* u, int64_t n, float limit, StreamHandle stream, uint16_t* g_bf16 = nullptr);

}  // namespace fp4kit::cuda
