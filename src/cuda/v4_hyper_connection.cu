#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda/block_reduce.cuh"
#include "cuda/check.cuh"
#include "cuda/dependent_launch.cuh"
#include "cuda/row_norm.cuh"
#include "cuda/v4_hyper_connection.h"

namespace fp4kit::cuda {
namespace {

constexpr int kHcThreads = 256;
constexpr int kMaxHc = 8;

std::string shape_text(const HcShape& s);

__device__ float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

// z[t, r] = rms_norm_unweighted(streams[t]) · fn[r] for the `rows` rows of fn: one block per token.
__global__ void mixing_logits_kernel(const float* streams, int64_t width, const float* fn, int64_t rows, float eps,
                                     float* z) {
  __shared__ double dscratch[32];
  __shared__ float fscratch[32];
  const float* x = streams + blockIdx.x * width;
  double sum = 0;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) sum += static_cast<double>(x[i]) * x[i];
  sum = block_sum(sum, dscratch);
  const float inv = 1.0f / sqrtf(static_cast<float>(sum / static_cast<double>(width)) + eps);
  for (int64_t r = 0; r < rows; ++r) {
    float s = 0;
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) s += (x[i] * inv) * fn[r * width + i];
    s = block_sum(s, fscratch);
    if (threadIdx.x == 0) z[blockIdx.x * rows + r] = s;
  }
}

// The same for widths a multiple of kMixChunk and R rows: 32 tokens per block, 8 threads per token
// each summing a quarter-vector-strided share of the products, the rows of fn staged in shared
// memory chunk by chunk and read by all 32 tokens. Each product is (x·inv)·fn as above; the sums
// run in another order.
constexpr int kMixTokens = 32, kMixParts = 8, kMixChunk = 256;

template <int R>
__global__ void __launch_bounds__(kHcThreads) mixing_logits_tiled_kernel(const float* streams, int64_t tokens,
                                                                      int64_t width, const float* fn, float eps, float* z) {
  __shared__ float4 sfn[R * kMixChunk / 4];
  const int tid = threadIdx.x, tok = tid / kMixParts, part = tid % kMixParts;
  const int64_t t = blockIdx.x * static_cast<int64_t>(kMixTokens) + tok;
  const bool live = t < tokens;
  const float* x = streams + (live ? t : 0) * width;
  double ss = 0;
  if (live)
    for (int64_t i = part * 4; i < width; i += kMixParts * 4) {
      const float4 v = *reinterpret_cast<const float4*>(x + i);
      ss += static_cast<double>(v.x) * v.x;
      ss += static_cast<double>(v.y) * v.y;
      ss += static_cast<double>(v.z) * v.z;
      ss += static_cast<double>(v.w) * v.w;
    }
  for (int o = kMixParts / 2; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  const float inv = 1.0f / sqrtf(static_cast<float>(ss / static_cast<double>(width)) + eps);
  float acc[R] = {};
  for (int64_t c0 = 0; c0 < width; c0 += kMixChunk) {
    __syncthreads();  // the last chunk consumed
    for (int i = tid; i < R * kMixChunk / 4; i += kHcThreads) {
      const int r = i / (kMixChunk / 4), k = i % (kMixChunk / 4);
      sfn[i] = *reinterpret_cast<const float4*>(fn + r * width + c0 + 4 * k);
    }
    __syncthreads();
    if (!live) continue;
#pragma unroll 2
    for (int m = 0; m < kMixChunk / (kMixParts * 4); ++m) {
      const int k4 = part + kMixParts * m;
      float4 v = *reinterpret_cast<const float4*>(x + c0 + 4 * k4);
      v.x *= inv, v.y *= inv, v.z *= inv, v.w *= inv;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const float4 f = sfn[r * (kMixChunk / 4) + k4];
        acc[r] = fmaf(v.x, f.x, acc[r]);
        acc[r] = fmaf(v.y, f.y, acc[r]);
        acc[r] = fmaf(v.z, f.z, acc[r]);
        acc[r] = fmaf(v.w, f.w, acc[r]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r)
    for (int o = kMixParts / 2; o > 0; o >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], o);
  if (live && part == 0)
#pragma unroll
    for (int r = 0; r < R; ++r) z[t * R + r] = acc[r];
}

// A few tokens (decode steps): the tiled kernel would run one block over all of fn (1.5 MB at V4's
// width: a few hundred microseconds on one multiprocessor). Here each block takes kSplitColumns
// columns of every token and every row and writes partial sums, the sum of squares in F64;
// mixing_logits_finish_kernel adds them in block order: z = inv · Σ x·fn (the normalisation applied
// once to the sum instead of to each x: another rounding order, as the tiled kernel's).
constexpr int kSplitTokens = 8, kSplitColumns = 2 * kHcThreads, kWarps = kHcThreads / 32;

template <int R>
__global__ void __launch_bounds__(kHcThreads) mixing_logits_split_kernel(const float* streams, int64_t tokens,
                                                                      int64_t width, const float* fn, float* dots,
                                                                      double* squares) {
  wait_for_previous_grid();  // launched dependent: nothing read before this
  allow_next_grid();  // the next product may launch now (cuda/dependent_launch.cuh)
  __shared__ float sdot[kWarps][kSplitTokens][R];
  __shared__ double ssq[kWarps][kSplitTokens];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t c = blockIdx.x * static_cast<int64_t>(kSplitColumns) + 2 * threadIdx.x;
  float2 f[R];
#pragma unroll
  for (int r = 0; r < R; ++r) f[r] = *reinterpret_cast<const float2*>(fn + r * width + c);
  for (int t = 0; t < tokens; ++t) {
    const float2 x = *reinterpret_cast<const float2*>(streams + t * width + c);
    double sq = static_cast<double>(x.x) * x.x + static_cast<double>(x.y) * x.y;
    for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffffu, sq, o);
    if (lane == 0) ssq[warp][t] = sq;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float d = fmaf(x.y, f[r].y, x.x * f[r].x);
      for (int o = 16; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
      if (lane == 0) sdot[warp][t][r] = d;
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < tokens * (R + 1); i += kHcThreads) {
    const int t = i / (R + 1), r = i % (R + 1);
    if (r == R) {
      double sq = 0;
      for (int w = 0; w < kWarps; ++w) sq += ssq[w][t];
      squares[blockIdx.x * tokens + t] = sq;
    } else {
      float d = 0;
      for (int w = 0; w < kWarps; ++w) d += sdot[w][t][r];
      dots[(blockIdx.x * tokens + t) * R + r] = d;
    }
  }
}

// z[t, r] from the split kernel's partial sums, added in block order.
__device__ __forceinline__ float finish_logit(const float* dots, const double* squares, int blocks, int64_t tokens,
                                              int64_t rows, int64_t width, float eps, int64_t t, int64_t r) {
  double sq = 0;
  float d = 0;
#pragma unroll 8
  for (int b = 0; b < blocks; ++b) {
    sq += squares[b * tokens + t];
    d += dots[(b * tokens + t) * rows + r];
  }
  const float inv = 1.0f / sqrtf(static_cast<float>(sq / static_cast<double>(width)) + eps);
  return inv * d;
}

__global__ void mixing_logits_finish_kernel(const float* dots, const double* squares, int blocks, int64_t tokens,
                                            int64_t rows, int64_t width, float eps, float* z) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= tokens * rows) return;
  z[e] = finish_logit(dots, squares, blocks, tokens, rows, width, eps, e / rows, e % rows);
}

// Floats the split path's partial sums take for tokens T (its doubles counted as two floats each);
// 0 where it does not run. Grows with T up to kSplitTokens, so that scratch sized for more tokens
// holds it for fewer.
int64_t split_scratch_floats(int64_t tokens, int64_t width, int64_t rows) {
  if (width % kSplitColumns != 0) return 0;
  const int64_t blocks = width / kSplitColumns, t = std::min<int64_t>(tokens, kSplitTokens);
  return blocks * t * (rows + 2) + 2;  // + 2: room to align the doubles
}

// The split kernel's partial sums for a few tokens, in `split` (scratch of split_scratch_floats()).
struct SplitSums {
  const float* dots = nullptr;
  const double* squares = nullptr;
  int parts = 0;
};
bool mixing_logits_split(const float* streams, const HcShape& s, const float* fn, int64_t rows, float* split,
                         StreamHandle stream, const char* name, SplitSums& out) {
  const int64_t width = s.hc * s.hidden;
  if (s.tokens > kSplitTokens || width % kSplitColumns != 0 || (rows != 4 && rows != 24)) return false;
  const int parts = static_cast<int>(width / kSplitColumns);
  float* dots = split;
  const uintptr_t after = reinterpret_cast<uintptr_t>(dots + parts * s.tokens * rows);
  double* squares = reinterpret_cast<double*>((after + 7) / 8 * 8);
  check(launch_dependent(rows == 4 ? mixing_logits_split_kernel<4> : mixing_logits_split_kernel<24>, dim3(parts),
                         dim3(kHcThreads), 0, stream, streams, s.tokens, width, fn, dots, squares),
        "mixing logits launch");
  check_launch(name, [&] { return shape_text(s); });
  out = {dots, squares, parts};
  return true;
}

// z [tokens, rows]: the split kernels for a few tokens, the tiled kernel where the shape suits it,
// else one block per token. `split` is scratch of split_scratch_floats().
void mixing_logits(const float* streams, const HcShape& s, const float* fn, int64_t rows, float* z, float* split,
                   StreamHandle stream, const char* name) {
  const int64_t width = s.hc * s.hidden;
  const unsigned blocks = ceil_div(static_cast<size_t>(s.tokens), kMixTokens);
  const bool tiled = width % kMixChunk == 0;
  SplitSums sums;
  if (mixing_logits_split(streams, s, fn, rows, split, stream, name, sums)) {
    mixing_logits_finish_kernel<<<ceil_div(static_cast<size_t>(s.tokens * rows), 128), 128, 0, stream>>>(
        sums.dots, sums.squares, sums.parts, s.tokens, rows, width, s.rms_eps, z);
    check_launch(name, [&] { return shape_text(s); });
    return;
  }
#define FP4KIT_MIX_ROWS(R)                                                                                        \
  if (tiled && rows == R) {                                                                                       \
    mixing_logits_tiled_kernel<R><<<blocks, kHcThreads, 0, stream>>>(streams, s.tokens, width, fn, s.rms_eps, z); \
    check_launch(name, [&] { return shape_text(s); });                                                            \
    return;                                                                                                       \
  }
  FP4KIT_MIX_ROWS(2)
  FP4KIT_MIX_ROWS(3)
  FP4KIT_MIX_ROWS(4)
  FP4KIT_MIX_ROWS(8)
  FP4KIT_MIX_ROWS(15)
  FP4KIT_MIX_ROWS(24)
#undef FP4KIT_MIX_ROWS
  mixing_logits_kernel<<<static_cast<unsigned>(s.tokens), kHcThreads, 0, stream>>>(streams, width, fn, rows, s.rms_eps, z);
  check_launch(name, [&] { return shape_text(s); });
}

// Per token: pre, post and the Sinkhorn-normalised comb from z (engine::hc_pre's arithmetic).
__global__ void hc_mix_kernel(const float* z, HcShape s, HcParamsDevice p, float* pre, float* post, float* comb) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= s.tokens) return;
  const int64_t hc = s.hc, rows = (2 + hc) * hc;
  const float* zt = z + t * rows;
  const float eps = s.hc_eps;
  for (int64_t j = 0; j < hc; ++j) {
    pre[t * hc + j] = sigmoidf(zt[j] * p.scale[0] + p.base[j]) + eps;
    post[t * hc + j] = 2.0f * sigmoidf(zt[hc + j] * p.scale[1] + p.base[hc + j]);
  }
  float c[kMaxHc * kMaxHc];
  for (int64_t j = 0; j < hc; ++j) {
    float* row = c + j * hc;
    float mx = -INFINITY;
    for (int64_t k = 0; k < hc; ++k) {
      row[k] = zt[2 * hc + j * hc + k] * p.scale[2] + p.base[2 * hc + j * hc + k];
      mx = fmaxf(mx, row[k]);
    }
    float sum = 0;
    for (int64_t k = 0; k < hc; ++k) sum += (row[k] = expf(row[k] - mx));
    for (int64_t k = 0; k < hc; ++k) row[k] = row[k] / sum + eps;
  }
  auto column_step = [&] {
    for (int64_t k = 0; k < hc; ++k) {
      float sum = 0;
      for (int64_t j = 0; j < hc; ++j) sum += c[j * hc + k];
      for (int64_t j = 0; j < hc; ++j) c[j * hc + k] /= sum + eps;
    }
  };
  column_step();
  for (int64_t it = 1; it < s.sinkhorn_iters; ++it) {
    for (int64_t j = 0; j < hc; ++j) {
      float sum = 0;
      for (int64_t k = 0; k < hc; ++k) sum += c[j * hc + k];
      for (int64_t k = 0; k < hc; ++k) c[j * hc + k] /= sum + eps;
    }
    column_step();
  }
  for (int64_t i = 0; i < hc * hc; ++i) comb[t * hc * hc + i] = c[i];
}

// hc_mix_kernel for hc = 4 (V4's): 16 lanes per token, one per element of the 4×4 mixing, each sum
// gathered from its row's or column's lanes and added in the same order as there, so the results are
// the same bit for bit; the single thread per token spent tens of microseconds on the Sinkhorn loop.
// Every lane of the warp calls it (lanes base_lane .. base_lane + 15 for one token; a dead token's
// lanes compute and write nothing); pre_t, post_t, comb_t: the token's rows.
__device__ __forceinline__ void hc_mix4_lanes(const float* zt, const HcShape& s, const HcParamsDevice& p, bool live,
                                              float* pre_t, float* post_t, float* comb_t) {
  constexpr int hc = 4;
  const int lane = threadIdx.x % 32, base_lane = lane & ~15, e = lane & 15, j = e / hc, k = e % hc;
  const float eps = s.hc_eps;
  if (live && e < hc) {
    pre_t[e] = sigmoidf(zt[e] * p.scale[0] + p.base[e]) + eps;
    post_t[e] = 2.0f * sigmoidf(zt[hc + e] * p.scale[1] + p.base[hc + e]);
  }
  const unsigned all = 0xffffffffu;
  const int row0 = base_lane + j * hc, col0 = base_lane + k;
  float v = live ? zt[2 * hc + e] * p.scale[2] + p.base[2 * hc + e] : 0.0f;
  float mx = -INFINITY;
  for (int q = 0; q < hc; ++q) mx = fmaxf(mx, __shfl_sync(all, v, row0 + q));
  v = expf(v - mx);
  float sum = 0;
  for (int q = 0; q < hc; ++q) sum += __shfl_sync(all, v, row0 + q);
  v = v / sum + eps;
  auto column_step = [&] {
    float cs = 0;
    for (int q = 0; q < hc; ++q) cs += __shfl_sync(all, v, col0 + q * hc);
    v /= cs + eps;
  };
  column_step();
  for (int64_t it = 1; it < s.sinkhorn_iters; ++it) {
    float rs = 0;
    for (int q = 0; q < hc; ++q) rs += __shfl_sync(all, v, row0 + q);
    v /= rs + eps;
    column_step();
  }
  if (live) comb_t[e] = v;
}

__global__ void hc_mix4_kernel(const float* z, HcShape s, HcParamsDevice p, float* pre, float* post, float* comb) {
  constexpr int hc = 4, rows = (2 + hc) * hc;
  const int64_t t = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 16;
  const bool live = t < s.tokens;
  const int64_t tt = live ? t : 0;
  hc_mix4_lanes(z + tt * rows, s, p, live, pre + tt * hc, post + tt * hc, comb + tt * hc * hc);
}

// pre for the hyper head: sigmoid(z_j · scale + base_j) + hc_eps.
__global__ void head_pre_kernel(const float* z, HcShape s, HcParamsDevice p, float* pre) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= s.tokens * s.hc) return;
  const int64_t j = e % s.hc;
  pre[e] = sigmoidf(z[e] * p.scale[0] + p.base[j]) + s.hc_eps;
}

// out[t, d] = Σ_j pre[t, j] · X[t, j, d].
// A token's hc mixing weights in registers (they are read for every d).
__device__ __forceinline__ void load_pre(const float* pre, int64_t hc, float (&w)[kMaxHc]) {
#pragma unroll
  for (int j = 0; j < kMaxHc; ++j) w[j] = j < hc ? pre[j] : 0.0f;
}

// Σ_j pre[j] · X_j[d] of one token in increasing j (x: its stream 0 at d).
__device__ __forceinline__ float collapse_at(const float* x, const float (&pre)[kMaxHc], int64_t hc, int64_t hidden) {
  float acc = 0;
#pragma unroll
  for (int j = 0; j < kMaxHc; ++j)
    if (j < hc) acc += pre[j] * x[j * hidden];
  return acc;
}

__global__ void collapse_kernel(const float* streams, const float* pre, HcShape s, float* out) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= s.tokens * s.hidden) return;
  const int64_t t = e / s.hidden, d = e % s.hidden;
  float w[kMaxHc];
  load_pre(pre + t * s.hc, s.hc, w);
  out[e] = collapse_at(streams + t * s.hc * s.hidden + d, w, s.hc, s.hidden);
}

// collapse_kernel's row of one token (a block per token), then rms_norm_rows' normalisation of it
// with `norm`: the same arithmetic as the two kernels, one launch.
__global__ void __launch_bounds__(kHcThreads) collapse_norm_kernel(const float* streams, const float* pre, HcShape s,
                                                                 const float* norm, float* out, uint16_t* out16) {
  __shared__ double scratch[32];
  const int64_t t = blockIdx.x, n = s.hidden, hc = s.hc;
  const float* x = streams + t * hc * n;
  float w[kMaxHc];
  load_pre(pre + t * hc, hc, w);
  float* dst = out + t * n;
  const auto value = [&](int64_t d) { return collapse_at(x + d, w, hc, n); };
  rms_norm_row<true>(value, n, norm, s.rms_eps, dst, dst, out16 ? out16 + t * n : nullptr, scratch);
}

// hc_pre of a few tokens with hc = 4 after the split kernel, one block per token: its z row from the
// partial sums (mixing_logits_finish_kernel's arithmetic), the mixing (hc_mix4_kernel's, by the
// first 16 lanes), then the collapse with or without the norm (collapse_norm_kernel's and
// collapse_kernel's): the same bits as those kernels, one launch instead of three.
__global__ void __launch_bounds__(kHcThreads) hc_pre_few_kernel(SplitSums sums, const float* streams, HcShape s,
                                                               HcParamsDevice p, float* post, float* comb,
                                                               const float* norm, float* out, uint16_t* out16) {
  wait_for_previous_grid();  // launched dependent: nothing read before this
  allow_next_grid();  // the next product may launch now (cuda/dependent_launch.cuh)
  constexpr int hc = 4, rows = (2 + hc) * hc;
  __shared__ float zt[rows];
  __shared__ float pre[hc];
  __shared__ double scratch[32];
  const int64_t t = blockIdx.x, n = s.hidden, width = hc * n;
  if (threadIdx.x < rows)
    zt[threadIdx.x] = finish_logit(sums.dots, sums.squares, sums.parts, s.tokens, rows, width, s.rms_eps, t, threadIdx.x);
  __syncthreads();
  if (threadIdx.x < 32) hc_mix4_lanes(zt, s, p, threadIdx.x < 16, pre, post + t * hc, comb + t * hc * hc);
  __syncthreads();
  float w[kMaxHc];
  load_pre(pre, hc, w);
  const float* x = streams + t * width;
  float* dst = out + t * n;
  if (!norm) {
    for (int64_t d = threadIdx.x; d < n; d += kHcThreads) dst[d] = collapse_at(x + d, w, hc, n);
    return;
  }
  const auto value = [&](int64_t d) { return collapse_at(x + d, w, hc, n); };
  rms_norm_row<true>(value, n, norm, s.rms_eps, dst, dst, out16 ? out16 + t * n : nullptr, scratch);
}

// X'[t, k, d] = post[t, k] · y[t, d] + Σ_j C[t, j, k] · X[t, j, d], all k of one (t, d) in one thread;
// the index of a non-finite result lowers *first_nonfinite where given.
__global__ void hc_post_kernel(float* streams, const float* y, const float* post, const float* comb, HcShape s,
                               unsigned long long* first_nonfinite) {
  wait_for_previous_grid();  // launched dependent: nothing read before this
  allow_next_grid();  // the next product may launch now (cuda/dependent_launch.cuh)
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= s.tokens * s.hidden) return;
  const int64_t t = e / s.hidden, d = e % s.hidden, hc = s.hc;
  float* x = streams + t * hc * s.hidden + d;
  // Unrolled to kMaxHc with guards, so that `in` stays in registers (a loop to hc would index it
  // at run time, from local memory); the same sums in the same order.
  float in[kMaxHc];
#pragma unroll
  for (int j = 0; j < kMaxHc; ++j) in[j] = j < hc ? x[j * s.hidden] : 0.0f;
  const float* c = comb + t * hc * hc;
  const float yv = y[e];
#pragma unroll
  for (int k = 0; k < kMaxHc; ++k) {
    if (k >= hc) break;
    float acc = 0;
#pragma unroll
    for (int j = 0; j < kMaxHc; ++j)
      if (j < hc) acc += c[j * hc + k] * in[j];
    const float v = post[t * hc + k] * yv + acc;
    x[k * s.hidden] = v;
    if (first_nonfinite && !isfinite(v))
      atomicMin(first_nonfinite, static_cast<unsigned long long>((t * hc + k) * s.hidden + d));
  }
}

void check_shape(const HcShape& s, const char* what) {
  if (s.hc < 1 || s.hc > kMaxHc || s.hidden < 1 || s.tokens < 0)
    throw InputError(std::string(what) + ": hc " + std::to_string(s.hc) + " (1.." + std::to_string(kMaxHc) +
                     "), hidden " + std::to_string(s.hidden) + ", tokens " + std::to_string(s.tokens));
}

std::string shape_text(const HcShape& s) {
  return "T=" + std::to_string(s.tokens) + " hc=" + std::to_string(s.hc) + " H=" + std::to_string(s.hidden);
}

}  // namespace

int64_t hc_scratch_floats(const HcShape& s) {
  const int64_t rows = (2 + s.hc) * s.hc, width = s.hc * s.hidden;
  // The block's rows ((2+hc)·hc) need more split room than the head's (hc).
  return s.tokens * (rows + s.hc) + split_scratch_floats(s.tokens, width, rows);
}

void hc_pre(const float* streams, const HcShape& s, const HcParamsDevice& p, float* collapsed, float* post,
            float* comb, float* scratch, StreamHandle stream, const float* norm, uint16_t* collapsed_bf16) {
  check_shape(s, "hc_pre");
  if (collapsed_bf16 && !norm) throw InputError("hc_pre: a BF16 copy of the collapsed rows is made with the norm only");
  if (s.tokens == 0) return;
  const int64_t rows = (2 + s.hc) * s.hc;
  float* z = scratch;
  float* pre = scratch + s.tokens * rows;
  SplitSums sums;
  if (s.hc == 4 && mixing_logits_split(streams, s, p.fn, rows, pre + s.tokens * s.hc, stream, "hc_mixing_logits", sums)) {
    check(launch_dependent(hc_pre_few_kernel, dim3(static_cast<unsigned>(s.tokens)), dim3(kHcThreads), 0, stream, sums, streams,
                           s, p, post, comb, norm, collapsed, collapsed_bf16),
          "hc_pre launch");
    check_launch("hc_pre (few tokens)", [&] { return shape_text(s); });
    return;
  }
  mixing_logits(streams, s, p.fn, rows, z, pre + s.tokens * s.hc, stream, "hc_mixing_logits");
  if (s.hc == 4)
    hc_mix4_kernel<<<ceil_div(static_cast<size_t>(s.tokens * 16), 128), 128, 0, stream>>>(z, s, p, pre, post, comb);
  else hc_mix_kernel<<<ceil_div(static_cast<size_t>(s.tokens), 128), 128, 0, stream>>>(z, s, p, pre, post, comb);
  check_launch("hc_mix", [&] { return shape_text(s); });
  if (norm) {
    collapse_norm_kernel<<<static_cast<unsigned>(s.tokens), kHcThreads, 0, stream>>>(streams, pre, s, norm, collapsed,
                                                                                     collapsed_bf16);
    check_launch("hc_collapse_norm", [&] { return shape_text(s); });
    return;
  }
  collapse_kernel<<<ceil_div(static_cast<size_t>(s.tokens * s.hidden), kHcThreads), kHcThreads, 0, stream>>>(streams, pre, s,
                                                                                                     collapsed);
  check_launch("hc_collapse", [&] { return shape_text(s); });
}

void hc_post(float* streams, const float* y, const float* post, const float* comb, const HcShape& s,
             StreamHandle stream, int64_t* first_nonfinite) {
  check_shape(s, "hc_post");
  if (s.tokens == 0) return;
  check(launch_dependent(hc_post_kernel, dim3(ceil_div(static_cast<size_t>(s.tokens * s.hidden), kHcThreads)),
                         dim3(kHcThreads), 0, stream, streams, y, post, comb, s,
                         reinterpret_cast<unsigned long long*>(first_nonfinite)),
        "hc_post launch");
  check_launch("hc_post", [&] { return shape_text(s); });
}

void hc_head(const float* streams, const HcShape& s, const HcParamsDevice& p, float* out, float* scratch,
             StreamHandle stream) {
  check_shape(s, "hc_head");
  if (s.tokens == 0) return;
  float* z = scratch;
  float* pre = scratch + s.tokens * s.hc;
  mixing_logits(streams, s, p.fn, s.hc, z, pre + s.tokens * s.hc, stream, "hc_head_logits");
  head_pre_kernel<<<ceil_div(static_cast<size_t>(s.tokens * s.hc), 128), 128, 0, stream>>>(z, s, p, pre);
  check_launch("hc_head_pre", [&] { return shape_text(s); });
  collapse_kernel<<<ceil_div(static_cast<size_t>(s.tokens * s.hidden), kHcThreads), kHcThreads, 0, stream>>>(streams, pre, s,
                                                                                                     out);
  check_launch("hc_head_collapse", [&] { return shape_text(s); });
}

}  // namespace fp4kit::cuda
