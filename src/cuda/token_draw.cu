// Drawing tokens on the device (token_draw.h): keys for CUB's radix sort, the sort of every row at
// once (the row index above the key's 32 bits, so one device-wide sort orders each row apart), then
// the walk over each row's candidates in order: their weights by chunks on many blocks, the choices
// by one block per row.
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>

#include "cuda/check.cuh"
#include "cuda/token_draw.h"

namespace fp4kit::cuda {

namespace {

constexpr int kDrawThreads = 512;
constexpr int kDrawItems = 8;  // per thread and tile: loads in flight
constexpr int64_t kDrawTile = int64_t{kDrawThreads} * kDrawItems;
constexpr uint32_t kNoBadLogit = 0x7F7F7F7Fu;  // what the fill leaves: above every id

// The row's parameters as the kernel reads them.
struct DrawParams {
  double temperature, top_p, min_p, uniform;
  int64_t top_k;
  int32_t top_logprobs;
  int32_t logprobs;
};

// serve/sampling.h: without top_k (or top_k >= vocab), top_p or min_p, every token is a candidate
// and the draw walks them in id order.
template <class Row>
__host__ __device__ inline bool every_token_a_candidate(const Row& q, int64_t vocab) {
  return (q.top_k == 0 || q.top_k >= vocab) && q.top_p >= 1.0 && q.min_p <= 0.0;
}

struct DrawOut {
  int32_t token;
  uint32_t first_bad;
  double logprob;
};

// Unsigned order = logits descending; -0 as +0 (serve/logit_order.cpp's descending_key).
__device__ __forceinline__ uint32_t descending_key(float logit) {
  uint32_t u = __float_as_uint(logit + 0.0f);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return ~u;
}

__device__ __forceinline__ float logit_of_key(uint64_t key) {
  const uint32_t a = ~static_cast<uint32_t>(key);
  return __uint_as_float((a & 0x80000000u) ? (a & 0x7FFFFFFFu) : ~a);
}

__global__ void token_draw_keys_kernel(const float* __restrict__ logits, int64_t vocab, int64_t items,
                                       uint64_t* __restrict__ keys, int32_t* __restrict__ ids, uint32_t* first_bad) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < items; i += int64_t{gridDim.x} * blockDim.x) {
    const float f = logits[i];
    const int64_t row = i / vocab, id = i - row * vocab;
    keys[i] = (static_cast<uint64_t>(row) << 32) | descending_key(f);
    ids[i] = static_cast<int32_t>(id);
    if (!isfinite(f)) atomicMin(first_bad + row, static_cast<uint32_t>(id));
  }
}

using U128 = unsigned __int128;

struct WalkShared {
  union {
    cub::BlockScan<unsigned long long, kDrawThreads>::TempStorage scan;
    cub::BlockReduce<double, kDrawThreads>::TempStorage reduce;
  } temp;
  unsigned long long first;
  unsigned long long carry;
  double log_z;
};

// serve::sampling_fraction_bits.
__device__ __forceinline__ int fraction_bits(int64_t candidates) {
  int width = 0;
  while (width < 63 && (1ull << width) <= static_cast<unsigned long long>(candidates)) ++width;
  return 62 - width;
}

// The first i in [begin, end) with pred(i), or `end`. Tiles in order, so a hit early stops early.
template <class Pred>
__device__ int64_t first_index(int64_t begin, int64_t end, WalkShared& s, Pred pred) {
  for (int64_t base = begin; base < end; base += kDrawTile) {
    if (threadIdx.x == 0) s.first = static_cast<unsigned long long>(end);
    __syncthreads();
    unsigned long long mine = static_cast<unsigned long long>(end);
#pragma unroll
    for (int j = kDrawItems - 1; j >= 0; --j) {
      const int64_t i = base + j * kDrawThreads + threadIdx.x;
      if (i < end && pred(i)) mine = static_cast<unsigned long long>(i);
    }
    if (mine != static_cast<unsigned long long>(end)) atomicMin(&s.first, mine);
    __syncthreads();
    const int64_t found = static_cast<int64_t>(s.first);
    __syncthreads();
    if (found < end) return found;
  }
  return end;
}

// The walk in two launches, so that a row's candidates are spread over many multiprocessors:
//  1. token_draw_chunks_kernel, grid (chunks, rows): chunk c of a row holds the candidates
//     [c·kDrawTile, (c+1)·kDrawTile) in order. It writes their integer weights' running sums within
//     the chunk (cum), the chunk's total, the first candidate of the chunk that min_p refuses, and
//     the chunk's part of the softmax normalizer (raw logits [c·kDrawTile, ...) by id).
//  2. token_draw_pick_kernel, one block per row: the chunks' offsets (a scan of their totals), then
//     top_p, min_p and the draw as first indices of monotone predicates on the running sums (the
//     chunk first, then the index within it), the normalizer from the parts in chunk order.
// The sums are integers, so the running sums are those of the one-block walk, bit for bit.
struct ChunkOut {
  unsigned long long total;  // the chunk's sum of weights
  int64_t min_p_refused;     // the first candidate i >= 1 of the chunk with !(p_i >= min_p), else INT64_MAX
  double normalizer_part;    // Σ exp(logit - max) over the chunk's ids
};

// serve/sampling.h's candidate count and weight of candidate i (0 past the candidates; NaN as 0).
struct RowWeights {
  double T, top;
  int64_t k;
  int bits;
  __device__ double prob(const uint64_t* keys, int64_t i) const {
    return exp(static_cast<double>(logit_of_key(keys[i])) / T - top);
  }
  __device__ unsigned long long weight(const uint64_t* keys, int64_t i) const {
    const double w = i < k ? prob(keys, i) : 0.0;
    return w > 0.0 ? static_cast<unsigned long long>(ldexp(w, bits)) : 0ull;
  }
};

__device__ __forceinline__ RowWeights row_weights(const uint64_t* keys, int64_t vocab, const DrawParams& p) {
  RowWeights w;
  w.T = p.temperature;
  w.top = static_cast<double>(logit_of_key(keys[0])) / w.T;
  w.k = p.top_k > 0 ? min(p.top_k, vocab) : vocab;
  w.bits = fraction_bits(w.k);
  return w;
}

// The chunk from `base`'s part of the softmax's normalizer of the raw logits, sum of exp(l - m) with
// m the row's largest logit (the block's sum, in thread 0).
__device__ double chunk_normalizer_part(const float* logits, int64_t vocab, int64_t base, float m, WalkShared& s) {
  double part = 0.0;
  for (int64_t i = base + threadIdx.x; i < min(base + kDrawTile, vocab); i += kDrawThreads)
    part += exp(static_cast<double>(logits[i]) - m);
  __syncthreads();
  return cub::BlockReduce<double, kDrawThreads>(s.temp.reduce).Sum(part);
}

__global__ void __launch_bounds__(kDrawThreads, 1) token_draw_chunks_kernel(const uint64_t* __restrict__ keys,
                                                                        unsigned long long* cum,
                                                                        const float* __restrict__ logits, int64_t vocab,
                                                                        const DrawParams* params, const uint32_t* first_bad,
                                                                        ChunkOut* chunks) {
  __shared__ WalkShared s;
  __shared__ unsigned long long refused;
  const int64_t r = blockIdx.y, c = blockIdx.x, chunk_count = gridDim.x;
  const DrawParams p = params[r];
  keys += r * vocab, cum += r * vocab, logits += r * vocab;
  ChunkOut out{0, INT64_MAX, 0.0};
  if (first_bad[r] != kNoBadLogit) {
    if (threadIdx.x == 0) chunks[r * chunk_count + c] = out;
    return;
  }
  const int64_t base = c * kDrawTile;
  if (p.temperature > 0.0) {
    const RowWeights rw = row_weights(keys, vocab, p);
    if (threadIdx.x == 0) refused = static_cast<unsigned long long>(INT64_MAX);
    unsigned long long v[kDrawItems];
    const int64_t first = base + static_cast<int64_t>(threadIdx.x) * kDrawItems;
    unsigned long long mine = static_cast<unsigned long long>(INT64_MAX);
#pragma unroll
    for (int j = 0; j < kDrawItems; ++j) {
      const int64_t i = first + j;
      v[j] = rw.weight(keys, i);
      if (p.min_p > 0.0 && i >= 1 && i < rw.k && !(rw.prob(keys, i) >= p.min_p) && mine == static_cast<unsigned long long>(INT64_MAX))
        mine = static_cast<unsigned long long>(i);
    }
    __syncthreads();  // `refused` set
    if (mine != static_cast<unsigned long long>(INT64_MAX)) atomicMin(&refused, mine);
    unsigned long long total = 0;
    cub::BlockScan<unsigned long long, kDrawThreads>(s.temp.scan).InclusiveSum(v, v, total);
#pragma unroll
    for (int j = 0; j < kDrawItems; ++j)
      if (first + j < rw.k) cum[first + j] = v[j];
    __syncthreads();
    out.total = total;
    out.min_p_refused = static_cast<int64_t>(refused);
  }
  if (p.logprobs || p.top_logprobs > 0) {
    // log of the softmax's normalizer of the raw logits (serve/sampling.cpp's log_normalizer): this
    // chunk's ids.
    out.normalizer_part = chunk_normalizer_part(logits, vocab, base, logit_of_key(keys[0]), s);
  }
  if (threadIdx.x == 0) chunks[r * chunk_count + c] = out;
}

// The first chunk in [0, chunk_end) with pred(chunk), or chunk_end (pred monotone: false, then true).
template <class Pred>
__device__ int64_t first_chunk(int64_t chunk_end, WalkShared& s, Pred pred) {
  if (threadIdx.x == 0) s.first = static_cast<unsigned long long>(chunk_end);
  __syncthreads();
  for (int64_t c = threadIdx.x; c < chunk_end; c += kDrawThreads)
    if (pred(c)) {
      atomicMin(&s.first, static_cast<unsigned long long>(c));
      break;
    }
  __syncthreads();
  const int64_t found = static_cast<int64_t>(s.first);
  __syncthreads();
  return found;
}

// offsets[c] = the running sum of the chunks' weights before chunk c, for c < count (an exclusive
// scan of their totals, kDrawThreads at a time); returns the sum of all `count`.
__device__ unsigned long long chunk_offsets(const ChunkOut* chunks, int64_t count, unsigned long long* offsets,
                                            WalkShared& s) {
  if (threadIdx.x == 0) s.carry = 0;
  __syncthreads();
  for (int64_t base = 0; base < count; base += kDrawThreads) {
    const int64_t c = base + threadIdx.x;
    unsigned long long t = c < count ? chunks[c].total : 0ull, block_total = 0;
    cub::BlockScan<unsigned long long, kDrawThreads>(s.temp.scan).ExclusiveSum(t, t, block_total);
    const unsigned long long carry = s.carry;
    if (c < count) offsets[c] = carry + t;
    __syncthreads();
    if (threadIdx.x == 0) s.carry = carry + block_total;
    __syncthreads();
  }
  return s.carry;
}

__global__ void __launch_bounds__(kDrawThreads) token_draw_pick_kernel(const uint64_t* __restrict__ keys,
                                                                      const int32_t* __restrict__ ids,
                                                                      const unsigned long long* cum,
                                                                      const float* __restrict__ logits, int64_t vocab,
                                                                      const DrawParams* params, const uint32_t* first_bad,
                                                                      const ChunkOut* chunks, int64_t chunk_count,
                                                                      unsigned long long* offsets, int max_top, DrawOut* out,
                                                                      int32_t* top_ids, double* top_logprobs) {
  __shared__ WalkShared s;
  const int64_t r = blockIdx.x;
  const DrawParams p = params[r];
  keys += r * vocab, ids += r * vocab, cum += r * vocab, logits += r * vocab;
  chunks += r * chunk_count, offsets += r * chunk_count;
  if (first_bad[r] != kNoBadLogit) {
    if (threadIdx.x == 0) out[r] = DrawOut{0, first_bad[r], NAN};
    return;
  }
  int64_t chosen = 0;  // greedy: the first candidate
  if (p.temperature > 0.0) {
    const RowWeights rw = row_weights(keys, vocab, p);
    const int64_t k = rw.k, used = (k + kDrawTile - 1) / kDrawTile;  // chunks holding candidates
    const unsigned long long total = chunk_offsets(chunks, used, offsets, s);
    // The running sum at candidate i (i < k): its chunk's offset and its sum within the chunk.
    const auto sum_at = [&](int64_t i) { return offsets[i / kDrawTile] + cum[i]; };
    const auto chunk_last = [&](int64_t c, int64_t end) { return min((c + 1) * kDrawTile, end) - 1; };
    int64_t n = k;
    if (p.top_p < 1.0) {
      const U128 threshold = static_cast<U128>(static_cast<unsigned long long>(ldexp(p.top_p, 63))) * total;
      const auto reached = [&](int64_t i) { return (static_cast<U128>(sum_at(i)) << 63) >= threshold; };
      const int64_t c = first_chunk(used, s, [&](int64_t c) { return reached(chunk_last(c, k)); });
      if (c < used) {
        const int64_t at = first_index(c * kDrawTile, chunk_last(c, k) + 1, s, reached);
        if (at < k) n = at + 1;
      }
    }
    if (p.min_p > 0.0) {
      // The first refused candidate from 1 on, over every chunk; below n it ends the candidates.
      if (threadIdx.x == 0) s.first = static_cast<unsigned long long>(INT64_MAX);
      __syncthreads();
      for (int64_t c = threadIdx.x; c < used; c += kDrawThreads)
        atomicMin(&s.first, static_cast<unsigned long long>(chunks[c].min_p_refused));
      __syncthreads();
      const int64_t refused = static_cast<int64_t>(s.first);
      __syncthreads();
      if (refused < n) n = refused;
    }
    const unsigned long long target = static_cast<unsigned long long>(
        (static_cast<U128>(static_cast<unsigned long long>(ldexp(p.uniform, 54))) * sum_at(n - 1)) >> 54);
    const int64_t n_chunks = (n + kDrawTile - 1) / kDrawTile;
    const auto past = [&](int64_t i) { return target < sum_at(i); };
    const int64_t c = first_chunk(n_chunks, s, [&](int64_t c) { return past(chunk_last(c, n)); });
    chosen = c < n_chunks ? first_index(c * kDrawTile, chunk_last(c, n) + 1, s, past) : n;
    if (chosen >= n) chosen = n - 1;  // only when every weight is 0
  }
  const int32_t token = ids[chosen];
  double logprob = NAN;
  if (p.logprobs || p.top_logprobs > 0) {
    const float m = logit_of_key(keys[0]);
    if (threadIdx.x == 0) {
      double sum = 0.0;
      for (int64_t c = 0; c < chunk_count; ++c) sum += chunks[c].normalizer_part;  // chunk order: deterministic
      s.log_z = m + log(sum);
    }
    __syncthreads();
    const double log_z = s.log_z;
    logprob = static_cast<double>(logits[token]) - log_z;
    const int64_t tops = min(static_cast<int64_t>(min(p.top_logprobs, max_top)), vocab);
    for (int64_t t = threadIdx.x; t < tops; t += kDrawThreads) {
      top_ids[r * max_top + t] = ids[t];
      top_logprobs[r * max_top + t] = static_cast<double>(logit_of_key(keys[t])) - log_z;
    }
  }
  if (threadIdx.x == 0) out[r] = DrawOut{token, kNoBadLogit, logprob};
}

// Rows drawn in id order (serve/sampling.h: every token a candidate — no top_k, top_p or min_p —
// or greedy), with at most one top logprob: no sort. Three launches, chunk c of a row holding the
// ids [c·kDrawTile, (c+1)·kDrawTile):
//  1. token_draw_best_kernel, grid (chunks, rows): the chunk's first largest logit as the least
//     (descending key << 32 | id) — the sort's first candidate — and the row's first non-finite id.
//  2. token_draw_id_chunks_kernel, grid (chunks, rows): the row's first largest logit from the
//     chunks' (the same in every block), then the chunk's weights' running sums, its total and its
//     part of the softmax normalizer.
//  3. token_draw_id_pick_kernel, one block per row: the chunks' offsets, the draw as the first id
//     whose running sum passes the target (the chunk first), the normalizer, the top logprob.
__global__ void __launch_bounds__(kDrawThreads) token_draw_best_kernel(const float* __restrict__ logits, int64_t vocab,
                                                                      uint32_t* first_bad, unsigned long long* chunk_best) {
  __shared__ unsigned long long best_all;
  const int64_t r = blockIdx.y, c = blockIdx.x, base = c * kDrawTile, end = min(base + kDrawTile, vocab);
  logits += r * vocab;
  if (threadIdx.x == 0) best_all = ~0ull;
  __syncthreads();
  unsigned long long best = ~0ull;
  uint32_t bad = kNoBadLogit;
  for (int64_t i = base + threadIdx.x; i < end; i += kDrawThreads) {
    const float f = logits[i];
    if (!isfinite(f)) bad = min(bad, static_cast<uint32_t>(i));
    best = min(best, static_cast<unsigned long long>(descending_key(f)) << 32 | static_cast<unsigned long long>(i));
  }
  atomicMin(&best_all, best);
  if (bad != kNoBadLogit) atomicMin(first_bad + r, bad);
  __syncthreads();
  if (threadIdx.x == 0) chunk_best[r * gridDim.x + c] = best_all;
}

// The least of a row's chunk bests: its first largest logit's id.
__device__ int64_t row_best_id(const unsigned long long* chunk_best, int64_t chunk_count) {
  __shared__ unsigned long long best_all;
  if (threadIdx.x == 0) best_all = ~0ull;
  __syncthreads();
  unsigned long long best = ~0ull;
  for (int64_t c = threadIdx.x; c < chunk_count; c += kDrawThreads) best = min(best, chunk_best[c]);
  atomicMin(&best_all, best);
  __syncthreads();
  const int64_t id = static_cast<int64_t>(best_all & 0xFFFFFFFFull);
  __syncthreads();
  return id;
}

__global__ void __launch_bounds__(kDrawThreads, 1) token_draw_id_chunks_kernel(const float* __restrict__ logits, int64_t vocab,
                                                                           const DrawParams* params, const uint32_t* first_bad,
                                                                           const unsigned long long* chunk_best,
                                                                           unsigned long long* cum, ChunkOut* chunks) {
  __shared__ WalkShared s;
  const int64_t r = blockIdx.y, c = blockIdx.x, chunk_count = gridDim.x;
  const DrawParams p = params[r];
  logits += r * vocab, cum += r * vocab, chunk_best += r * chunk_count;
  ChunkOut out{0, INT64_MAX, 0.0};
  if (first_bad[r] != kNoBadLogit) {
    if (threadIdx.x == 0) chunks[r * chunk_count + c] = out;
    return;
  }
  const float m = logits[row_best_id(chunk_best, chunk_count)];
  const int64_t base = c * kDrawTile;
  if (p.temperature > 0.0) {
    const double T = p.temperature, top = static_cast<double>(m) / T;
    const int bits = fraction_bits(vocab);
    unsigned long long v[kDrawItems];
    const int64_t first = base + static_cast<int64_t>(threadIdx.x) * kDrawItems;
#pragma unroll
    for (int j = 0; j < kDrawItems; ++j) {
      const int64_t i = first + j;
      const double w = i < vocab ? exp(static_cast<double>(logits[i]) / T - top) : 0.0;
      v[j] = w > 0.0 ? static_cast<unsigned long long>(ldexp(w, bits)) : 0ull;  // NaN (l/T overflowing) as 0
    }
    unsigned long long total = 0;
    cub::BlockScan<unsigned long long, kDrawThreads>(s.temp.scan).InclusiveSum(v, v, total);
#pragma unroll
    for (int j = 0; j < kDrawItems; ++j)
      if (first + j < vocab) cum[first + j] = v[j];
    __syncthreads();
    out.total = total;
  }
  if (p.logprobs || p.top_logprobs > 0) out.normalizer_part = chunk_normalizer_part(logits, vocab, base, m, s);
  if (threadIdx.x == 0) chunks[r * chunk_count + c] = out;
}

__global__ void __launch_bounds__(kDrawThreads) token_draw_id_pick_kernel(const float* __restrict__ logits, int64_t vocab,
                                                                         const DrawParams* params, const uint32_t* first_bad,
                                                                         const unsigned long long* chunk_best,
                                                                         const unsigned long long* cum, const ChunkOut* chunks,
                                                                         int64_t chunk_count, unsigned long long* offsets,
                                                                         int max_top, bool only_id_walks, DrawOut* out,
                                                                         int32_t* top_ids, double* top_logprobs) {
  __shared__ WalkShared s;
  const int64_t r = blockIdx.x;
  const DrawParams p = params[r];
  if (only_id_walks && !(p.temperature > 0.0 && every_token_a_candidate(p, vocab))) return;
  logits += r * vocab, cum += r * vocab, chunk_best += r * chunk_count;
  chunks += r * chunk_count, offsets += r * chunk_count;
  if (first_bad[r] != kNoBadLogit) {
    if (threadIdx.x == 0) out[r] = DrawOut{0, first_bad[r], NAN};
    return;
  }
  const int64_t best = row_best_id(chunk_best, chunk_count);
  int64_t chosen = best;  // greedy
  if (p.temperature > 0.0) {
    const unsigned long long total = chunk_offsets(chunks, chunk_count, offsets, s);
    const unsigned long long target = static_cast<unsigned long long>(
        (static_cast<U128>(static_cast<unsigned long long>(ldexp(p.uniform, 54))) * total) >> 54);
    const auto past = [&](int64_t i) { return target < offsets[i / kDrawTile] + cum[i]; };
    const auto chunk_last = [&](int64_t c) { return min((c + 1) * kDrawTile, vocab) - 1; };
    const int64_t c = first_chunk(chunk_count, s, [&](int64_t c) { return past(chunk_last(c)); });
    if (c < chunk_count) chosen = first_index(c * kDrawTile, chunk_last(c) + 1, s, past);  // else every weight is 0
  }
  double logprob = NAN;
  if (p.logprobs || p.top_logprobs > 0) {
    const float m = logits[best];
    if (threadIdx.x == 0) {
      double sum = 0.0;
      for (int64_t c = 0; c < chunk_count; ++c) sum += chunks[c].normalizer_part;  // chunk order: deterministic
      s.log_z = m + log(sum);
    }
    __syncthreads();
    logprob = static_cast<double>(logits[chosen]) - s.log_z;
    if (threadIdx.x == 0 && p.top_logprobs > 0 && max_top > 0 && !only_id_walks) {
      top_ids[r * max_top] = static_cast<int32_t>(best);
      top_logprobs[r * max_top] = static_cast<double>(m) - s.log_z;
    }
  }
  if (threadIdx.x == 0) out[r] = DrawOut{static_cast<int32_t>(chosen), kNoBadLogit, logprob};
}

// Greedy rows without top logprobs need no order: the first largest logit (ties by id, -0 as +0:
// the least (descending key, id), the sort's first candidate), the first non-finite id, and for a
// logprob the normalizer. One block per row.
__global__ void __launch_bounds__(kDrawThreads, 1) token_draw_greedy_kernel(const float* __restrict__ logits, int64_t vocab,
                                                                        const DrawParams* params, DrawOut* out) {
  __shared__ WalkShared s;
  __shared__ unsigned long long best_all, bad_all;
  const int64_t r = blockIdx.x;
  const DrawParams p = params[r];
  logits += r * vocab;
  if (threadIdx.x == 0) best_all = ~0ull, bad_all = ~0ull;
  __syncthreads();
  unsigned long long best = ~0ull, bad = ~0ull;  // (descending key << 32 | id); first non-finite id
  for (int64_t i = threadIdx.x; i < vocab; i += kDrawThreads) {
    const float f = logits[i];
    if (!isfinite(f)) bad = min(bad, static_cast<unsigned long long>(i));
    best = min(best, static_cast<unsigned long long>(descending_key(f)) << 32 | static_cast<unsigned long long>(i));
  }
  atomicMin(&best_all, best);
  atomicMin(&bad_all, bad);
  __syncthreads();
  if (bad_all != ~0ull) {
    if (threadIdx.x == 0) out[r] = DrawOut{0, static_cast<uint32_t>(bad_all), NAN};
    return;
  }
  const int32_t token = static_cast<int32_t>(best_all & 0xFFFFFFFFull);
  double logprob = NAN;
  if (p.logprobs) {
    const float m = logits[token];
    double part = 0.0;
    for (int64_t i = threadIdx.x; i < vocab; i += kDrawThreads) part += exp(static_cast<double>(logits[i]) - m);
    const double sum = cub::BlockReduce<double, kDrawThreads>(s.temp.reduce).Sum(part);
    if (threadIdx.x == 0) s.log_z = m + log(sum);
    __syncthreads();
    logprob = static_cast<double>(logits[token]) - s.log_z;
  }
  if (threadIdx.x == 0) out[r] = DrawOut{token, kNoBadLogit, logprob};
}

int bits_for(int64_t values) {  // bits that hold 0 .. values - 1
  int b = 0;
  while ((int64_t{1} << b) < values) ++b;
  return b;
}

// Every row's candidates sorted by CUB (the row index above the key's 32 bits), then the walk over
// them (token_draw_chunks_kernel, token_draw_pick_kernel). Temporaries follow the stream's order.
// shape: returns the call's text for an error.
template <class Shape>
void queue_sorted_draw(const float* logits, int64_t vocab, int64_t R, const DrawParams* d_params, uint32_t* d_bad,
                       int max_top, DrawOut* d_out, int32_t* d_top_ids, double* d_top_lp, const Shape& shape,
                       StreamHandle stream) {
  const int64_t items = R * vocab;
  const int64_t chunk_count = (vocab + kDrawTile - 1) / kDrawTile;
  if (chunk_count > 65535)
    throw InputError("draw_tokens [" + shape() + "]: more than 65535 chunks of candidates a row");
  DeviceBuffer key_a(static_cast<size_t>(items) * 8, "token draw keys"), key_b(static_cast<size_t>(items) * 8, "token draw keys");
  DeviceBuffer id_a(static_cast<size_t>(items) * 4, "token draw ids"), id_b(static_cast<size_t>(items) * 4, "token draw ids");
  const unsigned key_blocks = static_cast<unsigned>(std::min<int64_t>((items + 255) / 256, 4096));
  token_draw_keys_kernel<<<key_blocks, 256, 0, stream>>>(logits, vocab, items, key_a.data<uint64_t>(), id_a.data<int32_t>(),
                                                         d_bad);
  check_launch("token_draw_keys", shape);

  cub::DoubleBuffer<uint64_t> keys(key_a.data<uint64_t>(), key_b.data<uint64_t>());
  cub::DoubleBuffer<int32_t> ids(id_a.data<int32_t>(), id_b.data<int32_t>());
  const int end_bit = 32 + bits_for(R);
  size_t temp_bytes = 0;
  const std::string sort = "cub::DeviceRadixSort::SortPairs of " + std::to_string(items) + " logits";
  check(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys, ids, static_cast<int>(items), 0, end_bit, stream), sort);
  DeviceBuffer temp(std::max<size_t>(temp_bytes, 1), "token draw sort workspace");
  check(cub::DeviceRadixSort::SortPairs(temp.data(), temp_bytes, keys, ids, static_cast<int>(items), 0, end_bit, stream), sort);

  // The other key buffer is free after the sort: the running sums go there.
  DeviceBuffer d_chunks(static_cast<size_t>(R * chunk_count) * sizeof(ChunkOut), "token draw chunks");
  DeviceBuffer d_offsets(static_cast<size_t>(R * chunk_count) * 8, "token draw chunk offsets");
  auto* cum = reinterpret_cast<unsigned long long*>(keys.Alternate());
  token_draw_chunks_kernel<<<dim3(static_cast<unsigned>(chunk_count), static_cast<unsigned>(R)), kDrawThreads, 0, stream>>>(
      keys.Current(), cum, logits, vocab, d_params, d_bad, d_chunks.data<ChunkOut>());
  check_launch("token_draw_chunks", shape);
  token_draw_pick_kernel<<<static_cast<unsigned>(R), kDrawThreads, 0, stream>>>(
      keys.Current(), ids.Current(), cum, logits, vocab, d_params, d_bad,
      d_chunks.data<ChunkOut>(), chunk_count, d_offsets.data<unsigned long long>(), max_top, d_out,
      d_top_ids, d_top_lp);
  check_launch("token_draw_pick", shape);
}

// Rows drawn in id order (token_draw_best_kernel, token_draw_id_chunks_kernel,
// token_draw_id_pick_kernel). Temporaries follow the stream's order.
// only_id_walks: the sorted draw ran before; only the rows whose every token is a candidate are
// drawn again (their top logprobs, from the sort, stay).
template <class Shape>
void queue_id_order_draw(const float* logits, int64_t vocab, int64_t R, const DrawParams* d_params, uint32_t* d_bad,
                         int max_top, DrawOut* d_out, int32_t* d_top_ids, double* d_top_lp, bool only_id_walks,
                         const Shape& shape, StreamHandle stream) {
  const int64_t chunk_count = (vocab + kDrawTile - 1) / kDrawTile;
  if (chunk_count > 65535) throw InputError("draw_tokens [" + shape() + "]: more than 65535 chunks of candidates a row");
  DeviceBuffer d_best(static_cast<size_t>(R * chunk_count) * 8, "token draw chunk bests");
  DeviceBuffer d_cum(static_cast<size_t>(R * vocab) * 8, "token draw running sums");
  DeviceBuffer d_chunks(static_cast<size_t>(R * chunk_count) * sizeof(ChunkOut), "token draw chunks");
  DeviceBuffer d_offsets(static_cast<size_t>(R * chunk_count) * 8, "token draw chunk offsets");
  const dim3 grid(static_cast<unsigned>(chunk_count), static_cast<unsigned>(R));
  auto* best = d_best.data<unsigned long long>();
  token_draw_best_kernel<<<grid, kDrawThreads, 0, stream>>>(logits, vocab, d_bad, best);
  check_launch("token_draw_best", shape);
  token_draw_id_chunks_kernel<<<grid, kDrawThreads, 0, stream>>>(logits, vocab, d_params, d_bad, best,
                                                                d_cum.data<unsigned long long>(), d_chunks.data<ChunkOut>());
  check_launch("token_draw_id_chunks", shape);
  token_draw_id_pick_kernel<<<static_cast<unsigned>(R), kDrawThreads, 0, stream>>>(
      logits, vocab, d_params, d_bad, best, d_cum.data<unsigned long long>(), d_chunks.data<ChunkOut>(), chunk_count,
      d_offsets.data<unsigned long long>(), max_top, only_id_walks, d_out, d_top_ids, d_top_lp);
  check_launch("token_draw_id_pick", shape);
}

}  // namespace

std::vector<TokenDrawResult> draw_tokens(const float* logits, int64_t vocab, const std::vector<TokenDrawRow>& rows,
                                         StreamHandle stream) {
  const int64_t R = static_cast<int64_t>(rows.size());
  const auto shape = [&] { return "rows=" + std::to_string(R) + " vocab=" + std::to_string(vocab); };
  const auto bad = [&](const std::string& why) { throw InputError("draw_tokens [" + shape() + "]: " + why); };
  if (R == 0) return {};
  if (vocab < 1 || vocab >= (int64_t{1} << 31)) bad("the vocabulary must hold 1 to 2^31 - 1 tokens");
  if (R * vocab > std::numeric_limits<int>::max()) bad("more logits than one sort takes (2^31 - 1)");
  if (!logits) bad("no logits");
  std::vector<DrawParams> params(static_cast<size_t>(R));
  int max_top = 0;
  for (int64_t r = 0; r < R; ++r) {
    const TokenDrawRow& q = rows[static_cast<size_t>(r)];
    const std::string row = "row " + std::to_string(r) + ": ";
    if (!std::isfinite(q.temperature)) bad(row + "temperature must be finite");
    if (!(q.top_p > 0.0 && q.top_p <= 1.0)) bad(row + "top_p must be in (0, 1]");
    if (!(q.min_p >= 0.0 && q.min_p <= 1.0)) bad(row + "min_p must be in [0, 1]");
    if (!(q.uniform > 0.0 && q.uniform < 1.0)) bad(row + "the uniform draw must be in (0, 1)");
    if (q.top_k < 0) bad(row + "top_k must be at least 0");
    if (q.top_logprobs < 0) bad(row + "top_logprobs must be at least 0");
    params[static_cast<size_t>(r)] = DrawParams{q.temperature, q.top_p, q.min_p, q.uniform, q.top_k, q.top_logprobs,
                                                q.logprobs ? 1 : 0};
    max_top = std::max<int>(max_top, static_cast<int>(std::min<int64_t>(q.top_logprobs, vocab)));
  }
  // What comes back, in one device buffer and one copy: the draws, then the top logprobs, then
  // their ids (each part aligned for its type).
  const size_t out_bytes = static_cast<size_t>(R) * sizeof(DrawOut), tops = static_cast<size_t>(R * max_top);
  const size_t lp_at = out_bytes, ids_at = lp_at + tops * 8, result_bytes = ids_at + tops * 4;
  // Parameters and results go through page-locked memory: a copy from pageable memory first waits
  // for all the stream's work (the head's product), so the draw's launches would queue only after
  // it, and a copy to pageable memory costs the host a synchronisation of its own. Kept per thread;
  // every call ends with a synchronisation, so the last call's copies are done.
  thread_local std::unique_ptr<PinnedBuffer> staging, landing;
  if (!staging || staging->bytes() < params.size() * sizeof(DrawParams))
    staging = std::make_unique<PinnedBuffer>(std::max<size_t>(params.size() * sizeof(DrawParams), 64 * sizeof(DrawParams)),
                                             "token draw parameters");
  if (!landing || landing->bytes() < result_bytes)
    landing = std::make_unique<PinnedBuffer>(std::max<size_t>(result_bytes, 4096), "token draws");
  {
    // The device buffers go (in the stream's order, where they are stream-ordered) before the wait.
    DeviceBuffer d_params(params.size() * sizeof(DrawParams), "token draw parameters");
    DeviceBuffer d_bad(static_cast<size_t>(R) * 4, "token draw checks"), d_results(result_bytes, "token draws");
    auto* d_out = d_results.data<DrawOut>();
    auto* d_top_lp = reinterpret_cast<double*>(d_results.data<uint8_t>() + lp_at);
    auto* d_top_ids = reinterpret_cast<int32_t*>(d_results.data<uint8_t>() + ids_at);
    std::memcpy(staging->data(), params.data(), d_params.bytes());
    check(cudaMemcpyAsync(d_params.data(), staging->data(), d_params.bytes(), cudaMemcpyHostToDevice, stream),
          [&] { return "draw_tokens [" + shape() + "]: parameters to the device"; });
    check(cudaMemsetAsync(d_bad.data(), 0x7F, d_bad.bytes(), stream), [&] { return "draw_tokens [" + shape() + "]: checks"; });

    const bool all_greedy = std::all_of(rows.begin(), rows.end(), [](const TokenDrawRow& q) {
      return q.temperature <= 0.0 && q.top_logprobs == 0;
    });
    // serve/sampling.h: every token a candidate, the walk in id order (greedy rows too), and at
    // most the first largest logit among the top logprobs: no sort.
    // Rows that need the sort: candidates limited by top_k, top_p or min_p, or more than the first
    // largest logit among the top logprobs. Where some do, every row is drawn over the sorted
    // candidates, then the id-order walk redraws the rows whose every token is a candidate.
    const bool sorted = std::any_of(rows.begin(), rows.end(), [&](const TokenDrawRow& q) {
      return q.top_logprobs > 1 || (q.temperature > 0.0 && !every_token_a_candidate(q, vocab));
    });
    const bool id_walks = std::any_of(rows.begin(), rows.end(), [&](const TokenDrawRow& q) {
      return q.temperature > 0.0 && every_token_a_candidate(q, vocab);
    });
    if (all_greedy) {
      token_draw_greedy_kernel<<<static_cast<unsigned>(R), kDrawThreads, 0, stream>>>(logits, vocab, d_params.data<DrawParams>(),
                                                                                      d_out);
      check_launch("token_draw_greedy", shape);
    } else {
      if (sorted)
        queue_sorted_draw(logits, vocab, R, d_params.data<DrawParams>(), d_bad.data<uint32_t>(), max_top, d_out, d_top_ids,
                          d_top_lp, shape, stream);
      if (!sorted || id_walks)
        queue_id_order_draw(logits, vocab, R, d_params.data<DrawParams>(), d_bad.data<uint32_t>(), max_top, d_out, d_top_ids,
                            d_top_lp, sorted, shape, stream);
    }
    check(cudaMemcpyAsync(landing->data(), d_results.data(), result_bytes, cudaMemcpyDeviceToHost, stream),
          [&] { return "draw_tokens [" + shape() + "]: draws to the host"; });
  }
  check(cudaStreamSynchronize(stream), [&] { return "draw_tokens [" + shape() + "]: synchronize"; });
  const auto* out = landing->data<DrawOut>();
  const auto* top_lp = reinterpret_cast<const double*>(landing->data<uint8_t>() + lp_at);
  const auto* top_ids = reinterpret_cast<const int32_t*>(landing->data<uint8_t>() + ids_at);

  std::vector<TokenDrawResult> results(static_cast<size_t>(R));
  for (int64_t r = 0; r < R; ++r) {
    const DrawOut& o = out[r];
    TokenDrawResult& res = results[static_cast<size_t>(r)];
    if (o.first_bad != kNoBadLogit) {
      res.first_non_finite = o.first_bad;
      continue;
    }
    res.token = o.token;
    res.logprob = o.logprob;
    const int64_t tops = std::min<int64_t>(rows[static_cast<size_t>(r)].top_logprobs, max_top);
    for (int64_t t = 0; t < tops; ++t) {
      res.top_ids.push_back(top_ids[r * max_top + t]);
      res.top_logprobs.push_back(top_lp[r * max_top + t]);
    }
  }
  return results;
}

}  // namespace fp4kit::cuda
