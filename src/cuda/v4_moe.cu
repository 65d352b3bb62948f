#include <cuda_runtime.h>

#include <string>

#include "cuda/check.cuh"
#include "cuda/codecs.cuh"
#include "cuda/dependent_launch.cuh"
#include "cuda/v4_moe.h"

namespace fp4kit::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxK = 32;

unsigned blocks_for(int64_t n) { return ceil_div(static_cast<size_t>(n), kThreads); }

__device__ __forceinline__ float router_score(float x) { return sqrtf(x > 20.0f ? x : log1pf(expf(x))); }

__global__ void router_scores_kernel(float* s, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  s[i] = router_score(s[i]);
}

// The biased score a top-k choice compares: NaN (a NaN score, or a NaN bias) as -inf.
__device__ __forceinline__ float biased_score(float s, float bias) {
  const float v = s + bias;
  return isnan(v) ? -INFINITY : v;
}

// The chosen experts' weights (renormalised over them in the order they were chosen, times the
// scaling) and both sorted by ascending expert id, written for token t: engine::moe_forward's order.
__device__ void write_route(const RouteTokens& r, int64_t t, int64_t* chosen, const float* chosen_s) {
  float sum = 0;
  for (int64_t j = 0; j < r.k; ++j) sum += chosen_s[j];
  float w[kMaxK];
  for (int64_t j = 0; j < r.k; ++j) w[j] = chosen_s[j] / (sum + 1e-20f) * r.scaling;
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

__device__ void flag_bad(const RouteTokens& r, int64_t t) {
  atomicCAS(reinterpret_cast<unsigned long long*>(r.bad), 0ull, static_cast<unsigned long long>(t + 1));
}

// The hash layers' experts of token t from tid2eid; false (the token flagged) where out of range.
__device__ bool hashed_experts(const RouteTokens& r, int64_t t, int64_t* chosen) {
  const int64_t id = r.ids[t];
  if (id < 0 || id >= r.vocab) return flag_bad(r, t), false;
  for (int64_t j = 0; j < r.k; ++j) {
    chosen[j] = r.tid2eid[id * r.k + j];
    if (chosen[j] < 0 || chosen[j] >= r.experts) return flag_bad(r, t), false;
  }
  return true;
}

// One thread per token (any number of experts).
__global__ void route_tokens_kernel(RouteTokens r) {
  wait_for_previous_grid();  // launched dependent: nothing read before this
  allow_next_grid();  // the next product may launch now (cuda/dependent_launch.cuh)
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= r.tokens) return;
  const float* s = r.scores + t * r.experts;
  auto score = [&](int64_t e) { return r.scores_are_logits ? router_score(s[e]) : s[e]; };
  int64_t chosen[kMaxK];
  if (r.tid2eid) {
    if (!hashed_experts(r, t, chosen)) return;
  } else {
    // Top k of score + bias, ties to the lower expert id (partial_sort with that order).
    for (int64_t j = 0; j < r.k; ++j) {
      int64_t best = -1;
      float best_v = 0;
      for (int64_t e = 0; e < r.experts; ++e) {
        bool taken = false;
        for (int64_t i = 0; i < j; ++i) taken |= chosen[i] == e;
        if (taken) continue;
        const float v = biased_score(score(e), r.bias[e]);
        if (best < 0 || v > best_v) best = e, best_v = v;
      }
      chosen[j] = best;
    }
  }
  float chosen_s[kMaxK];
  for (int64_t j = 0; j < r.k; ++j) chosen_s[j] = score(chosen[j]);
  write_route(r, t, chosen, chosen_s);
}

constexpr int kWarpTokens = 4;     // tokens (warps) per block of the warp kernel
constexpr int kLaneExperts = 16;   // experts per lane: up to 512

// One warp per token: each lane holds the scores of experts lane, lane + 32, ...; each of the k
// choices is the warp's largest biased score, ties to the lower expert id — the first largest, as
// the thread kernel's scan finds it (NaN is -inf in both, so the order is total).
__global__ void __launch_bounds__(32 * kWarpTokens) route_tokens_warp_kernel(RouteTokens r) {
  wait_for_previous_grid();  // launched dependent: nothing read before this
  allow_next_grid();  // the next product may launch now (cuda/dependent_launch.cuh)
  __shared__ float scores[kWarpTokens][32 * kLaneExperts];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kWarpTokens + warp;
  if (t >= r.tokens) return;  // a whole warp leaves: no shuffle waits for it
  const float* s = r.scores + t * r.experts;
  float* own = scores[warp];
  float v[kLaneExperts];
#pragma unroll
  for (int i = 0; i < kLaneExperts; ++i) {
    const int64_t e = lane + 32 * i;
    v[i] = -INFINITY;
    if (e < r.experts) {
      const float x = r.scores_are_logits ? router_score(s[e]) : s[e];
      own[e] = x;
      if (!r.tid2eid) v[i] = biased_score(x, r.bias[e]);
    }
  }
  __syncwarp();
  int64_t chosen[kMaxK];
  if (r.tid2eid) {
    if (lane == 0 && hashed_experts(r, t, chosen)) {
      float chosen_s[kMaxK];
      for (int64_t j = 0; j < r.k; ++j) chosen_s[j] = own[chosen[j]];
      write_route(r, t, chosen, chosen_s);
    }
    return;
  }
  uint32_t taken = 0;  // this lane's chosen experts, by local index
  for (int64_t j = 0; j < r.k; ++j) {
    float best_v = -INFINITY;
    int32_t best_e = INT32_MAX;
#pragma unroll
    for (int i = 0; i < kLaneExperts; ++i) {
      const int32_t e = lane + 32 * i;
      if (e >= r.experts || (taken >> i & 1u)) continue;
      if (best_e == INT32_MAX || v[i] > best_v) best_v = v[i], best_e = e;  // ascending e: first largest
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, best_v, off);
      const int32_t oe = __shfl_xor_sync(0xffffffffu, best_e, off);
      if (oe != INT32_MAX && (best_e == INT32_MAX || ov > best_v || (ov == best_v && oe < best_e))) best_v = ov, best_e = oe;
    }
    chosen[j] = best_e;
    if ((best_e & 31) == lane) taken |= 1u << (best_e >> 5);
  }
  if (lane != 0) return;
  float chosen_s[kMaxK];
  for (int64_t j = 0; j < r.k; ++j) chosen_s[j] = own[chosen[j]];
  write_route(r, t, chosen, chosen_s);
}

__global__ void swiglu_kernel(float* g, const float* u, int64_t n, float limit, uint16_t* g_bf16) {
  wait_for_previous_grid();  // launched dependent: nothing read before this
  allow_next_grid();  // the next product may launch now (cuda/dependent_launch.cuh)
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
  if (r.experts <= 32 * kLaneExperts)
    check(launch_dependent(route_tokens_warp_kernel, dim3(ceil_div(static_cast<size_t>(r.tokens), kWarpTokens)),
                           dim3(32 * kWarpTokens), 0, stream, r),
          "route_tokens launch");
  else
    check(launch_dependent(route_tokens_kernel, dim3(blocks_for(r.tokens)), dim3(kThreads), 0, stream, r), "route_tokens launch");
  check_launch("route_tokens", [&] {
    return "tokens=" + std::to_string(r.tokens) + " experts=" + std::to_string(r.experts);
  });
}

void swiglu_clamped(float* g, const float* u, int64_t n, float limit, StreamHandle stream, uint16_t* g_bf16) {
  if (n <= 0) return;
  check(launch_dependent(swiglu_kernel, dim3(blocks_for(n)), dim3(kThreads), 0, stream, g, u, n, limit, g_bf16),
        "swiglu launch");
  check_launch("swiglu_clamped", [&] { return "n=" + std::to_string(n); });
}

}  // namespace fp4kit::cuda
