#include <cuda_runtime.h>

#include <string>

#include "cuda/check.cuh"
#include "cuda/codecs.cuh"
#include "cuda/v4_moe.h"

namespace fp4kit::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxK = 32;

unsigned blocks_for(int64_t n) { return ceil_div(static_cast<size_t>(n), kThreads); }

__global__ void router_scores_kernel(float* s, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float x = s[i];
  s[i] = sqrtf(x > 20.0f ? x : log1pf(expf(x)));
}

// One thread per token (engine::moe_forward's router).
__global__ void route_tokens_kernel(RouteTokens r) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= r.tokens) return;
  const float* s = r.scores + t * r.experts;
  int64_t chosen[kMaxK];
  if (r.tid2eid) {
    const int64_t id = r.ids[t];
    if (id < 0 || id >= r.vocab) {
      atomicCAS(r.bad, 0, static_cast<int32_t>(t + 1));
      return;
    }
    for (int64_t j = 0; j < r.k; ++j) {
      chosen[j] = r.tid2eid[id * r.k + j];
      if (chosen[j] < 0 || chosen[j] >= r.experts) {
        atomicCAS(r.bad, 0, static_cast<int32_t>(t + 1));
        return;
      }
    }
  } else {
    // Top k of score + bias, ties to the lower expert id (partial_sort with that order), NaN last.
    for (int64_t j = 0; j < r.k; ++j) {
      int64_t best = -1;
      float best_v = 0;
      for (int64_t e = 0; e < r.experts; ++e) {
        bool taken = false;
        for (int64_t i = 0; i < j; ++i) taken |= chosen[i] == e;
        if (taken) continue;
        const float v = isnan(s[e]) ? -INFINITY : s[e] + r.bias[e];
        if (best < 0 || v > best_v) best = e, best_v = v;
      }
      chosen[j] = best;
    }
  }
  float sum = 0;
  for (int64_t j = 0; j < r.k; ++j) sum += s[chosen[j]];
  // Ascending expert id (insertion sort of k entries), weights with them.
  float w[kMaxK];
  for (int64_t j = 0; j < r.k; ++j) w[j] = s[chosen[j]] / (sum + 1e-20f) * r.scaling;
  for (int64_t j = 1; j < r.k; ++j)
    for (int64_t i = j; i > 0 && chosen[i - 1] > chosen[i]; --i) {
      const int64_t ce = chosen[i];
      chosen[i] = chosen[i - 1], chosen[i - 1] = ce;
      const float cw = w[i];
      w[i] = w[i - 1], w[i - 1] = cw;
    }
  for (int64_t j = 0; j < r.k; ++j) {
    r.chosen[t * r.k + j] = static_cast<int32_t>(chosen[j]);
    r.weights[t * r.k + j] = w[j];
  }
}

__global__ void swiglu_kernel(float* g, const float* u, int64_t n, float limit, uint16_t* g_bf16) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  float gi = g[i], ui = u[i];
  if (limit > 0) {  // comparisons, not fminf/fmaxf: NaN stays NaN
    gi = gi > limit ? limit : gi;
    ui = ui > limit ? limit : (ui < -limit ? -limit : ui);
  }
  const float v = gi / (1.0f + expf(-gi)) * ui;
  g[i] = v;
  if (g_bf16) g_bf16[i] = float_to_bf16_bits(v);
}

}  // namespace

void router_scores(float* s, int64_t n, StreamHandle stream) {
  if (n <= 0) return;
  router_scores_kernel<<<blocks_for(n), kThreads, 0, stream>>>(s, n);
  check_launch("router_scores", [&] { return "n=" + std::to_string(n); });
}

void route_tokens(const RouteTokens& r, StreamHandle stream) {
  if (r.k < 1 || r.k > kMaxK || r.k > r.experts || !r.scores || !r.chosen || !r.weights || !r.bad ||
      (r.tid2eid ? (!r.ids || r.vocab < 1) : !r.bias))
    throw InputError("route_tokens: bad arguments (experts " + std::to_string(r.experts) + ", k " + std::to_string(r.k) + ")");
  if (r.tokens == 0) return;
  route_tokens_kernel<<<blocks_for(r.tokens), kThreads, 0, stream>>>(r);
  check_launch("route_tokens", [&] {
    return "tokens=" + std::to_string(r.tokens) + " experts=" + std::to_string(r.experts);
  });
}

void swiglu_clamped(float* g, const float* u, int64_t n, float limit, StreamHandle stream, uint16_t* g_bf16) {
  if (n <= 0) return;
  swiglu_kernel<<<blocks_for(n), kThreads, 0, stream>>>(g, u, n, limit, g_bf16);
  check_launch("swiglu_clamped", [&] { return "n=" + std::to_string(n); });
}

}  // namespace fp4kit::cuda
