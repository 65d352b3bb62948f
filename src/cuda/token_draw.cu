// Drawing tokens on the device (token_draw.h): keys for CUB's radix sort, the sort of every row at
// once (the row index above the key's 32 bits, so one device-wide sort orders each row apart), then
// one block per row walks its candidates in order.
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

// One block per row. keys/ids: the row's candidates in order; cum: scratch, the running sums.
__global__ void __launch_bounds__(kDrawThreads) token_draw_walk_kernel(const uint64_t* __restrict__ keys,
                                                                      const int32_t* __restrict__ ids,
                                                                      unsigned long long* cum,
                                                                      const float* __restrict__ logits, int64_t vocab,
                                                                      const DrawParams* params, const uint32_t* first_bad,
                                                                      int max_top, DrawOut* out, int32_t* top_ids,
                                                                      double* top_logprobs) {
  __shared__ WalkShared s;
  const int64_t r = blockIdx.x;
  const DrawParams p = params[r];
  keys += r * vocab, ids += r * vocab, cum += r * vocab, logits += r * vocab;
  if (first_bad[r] != kNoBadLogit) {
    if (threadIdx.x == 0) out[r] = DrawOut{0, first_bad[r], NAN};
    return;
  }
  int64_t chosen = 0;  // greedy: the first candidate
  if (p.temperature > 0.0) {
    // serve/sampling.h's rules: integer weights, their running sums exact in any order.
    const double T = p.temperature;
    const double top = static_cast<double>(logit_of_key(keys[0])) / T;
    const auto prob = [&](int64_t i) { return exp(static_cast<double>(logit_of_key(keys[i])) / T - top); };
    const int64_t k = p.top_k > 0 ? min(p.top_k, vocab) : vocab;
    const int bits = fraction_bits(k);
    if (threadIdx.x == 0) s.carry = 0;
    __syncthreads();
    for (int64_t base = 0; base < k; base += kDrawTile) {
      unsigned long long v[kDrawItems];
      const int64_t first = base + static_cast<int64_t>(threadIdx.x) * kDrawItems;
#pragma unroll
      for (int j = 0; j < kDrawItems; ++j) {
        const double w = first + j < k ? prob(first + j) : 0.0;
        v[j] = w > 0.0 ? static_cast<unsigned long long>(ldexp(w, bits)) : 0ull;  // NaN as 0
      }
      cub::BlockScan<unsigned long long, kDrawThreads>(s.temp.scan).InclusiveSum(v, v);
      const unsigned long long carry = s.carry;
#pragma unroll
      for (int j = 0; j < kDrawItems; ++j)
        if (first + j < k) cum[first + j] = carry + v[j];
      __syncthreads();  // every thread read the carry and wrote its sums
      const int64_t last = min(base + kDrawTile, k) - 1;
      if (threadIdx.x == 0) s.carry = cum[last];
      __syncthreads();
    }
    int64_t n = k;
    if (p.top_p < 1.0) {
      const U128 threshold = static_cast<U128>(static_cast<unsigned long long>(ldexp(p.top_p, 63))) * cum[k - 1];
      const int64_t at = first_index(0, k, s, [&](int64_t i) { return (static_cast<U128>(cum[i]) << 63) >= threshold; });
      if (at < k) n = at + 1;
    }
    if (p.min_p > 0.0) n = first_index(1, n, s, [&](int64_t i) { return !(prob(i) >= p.min_p); });
    const unsigned long long target = static_cast<unsigned long long>(
        (static_cast<U128>(static_cast<unsigned long long>(ldexp(p.uniform, 54))) * cum[n - 1]) >> 54);
    chosen = first_index(0, n, s, [&](int64_t i) { return target < cum[i]; });
    if (chosen == n) chosen = n - 1;  // only when every weight is 0
  }
  const int32_t token = ids[chosen];
  double logprob = NAN;
  if (p.logprobs || p.top_logprobs > 0) {
    // log of the softmax's normalizer of the raw logits (serve/sampling.cpp's log_normalizer).
    const float m = logit_of_key(keys[0]);
    double part = 0.0;
    for (int64_t i = threadIdx.x; i < vocab; i += kDrawThreads) part += exp(static_cast<double>(logits[i]) - m);
    __syncthreads();
    const double sum = cub::BlockReduce<double, kDrawThreads>(s.temp.reduce).Sum(part);
    if (threadIdx.x == 0) s.log_z = m + log(sum);
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

int bits_for(int64_t values) {  // bits that hold 0 .. values - 1
  int b = 0;
  while ((int64_t{1} << b) < values) ++b;
  return b;
}

}  // namespace

std::vector<TokenDrawResult> draw_tokens(const float* logits, int64_t vocab, const std::vector<TokenDrawRow>& rows,
                                         StreamHandle stream) {
  const int64_t R = static_cast<int64_t>(rows.size());
  const std::string shape = "rows=" + std::to_string(R) + " vocab=" + std::to_string(vocab);
  const auto bad = [&](const std::string& why) { throw InputError("draw_tokens [" + shape + "]: " + why); };
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
  const int64_t items = R * vocab;
  DeviceBuffer key_a(static_cast<size_t>(items) * 8, "token draw keys"), key_b(static_cast<size_t>(items) * 8, "token draw keys");
  DeviceBuffer id_a(static_cast<size_t>(items) * 4, "token draw ids"), id_b(static_cast<size_t>(items) * 4, "token draw ids");
  DeviceBuffer d_params(params.size() * sizeof(DrawParams), "token draw parameters");
  DeviceBuffer d_bad(static_cast<size_t>(R) * 4, "token draw checks"), d_out(static_cast<size_t>(R) * sizeof(DrawOut), "token draws");
  DeviceBuffer d_top_ids(std::max<size_t>(static_cast<size_t>(R * max_top) * 4, 4), "top logprob ids");
  DeviceBuffer d_top_lp(std::max<size_t>(static_cast<size_t>(R * max_top) * 8, 8), "top logprobs");
  // The parameters go from page-locked memory: a copy from pageable memory first waits for all the
  // stream's work (the head's product), and the draw's launches would queue only after it. Kept per
  // thread; every call ends with a synchronisation, so the last call's copy from it is done.
  thread_local std::unique_ptr<PinnedBuffer> staging;
  if (!staging || staging->bytes() < d_params.bytes())
    staging = std::make_unique<PinnedBuffer>(std::max<size_t>(d_params.bytes(), 64 * sizeof(DrawParams)), "token draw parameters");
  std::memcpy(staging->data(), params.data(), d_params.bytes());
  check(cudaMemcpyAsync(d_params.data(), staging->data(), d_params.bytes(), cudaMemcpyHostToDevice, stream),
        "draw_tokens [" + shape + "]: parameters to the device");
  check(cudaMemsetAsync(d_bad.data(), 0x7F, d_bad.bytes(), stream), "draw_tokens [" + shape + "]: checks");

  const unsigned key_blocks = static_cast<unsigned>(std::min<int64_t>((items + 255) / 256, 4096));
  token_draw_keys_kernel<<<key_blocks, 256, 0, stream>>>(logits, vocab, items, key_a.data<uint64_t>(), id_a.data<int32_t>(),
                                                         d_bad.data<uint32_t>());
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
  token_draw_walk_kernel<<<static_cast<unsigned>(R), kDrawThreads, 0, stream>>>(
      keys.Current(), ids.Current(), reinterpret_cast<unsigned long long*>(keys.Alternate()), logits, vocab, d_params.data<DrawParams>(),
      d_bad.data<uint32_t>(), max_top, d_out.data<DrawOut>(), d_top_ids.data<int32_t>(), d_top_lp.data<double>());
  check_launch("token_draw_walk", shape);

  std::vector<DrawOut> out(static_cast<size_t>(R));
  std::vector<int32_t> top_ids(static_cast<size_t>(R * max_top));
  std::vector<double> top_lp(static_cast<size_t>(R * max_top));
  check(cudaMemcpyAsync(out.data(), d_out.data(), out.size() * sizeof(DrawOut), cudaMemcpyDeviceToHost, stream),
        "draw_tokens [" + shape + "]: draws to the host");
  if (max_top > 0) {
    check(cudaMemcpyAsync(top_ids.data(), d_top_ids.data(), top_ids.size() * 4, cudaMemcpyDeviceToHost, stream),
          "draw_tokens [" + shape + "]: top ids to the host");
    check(cudaMemcpyAsync(top_lp.data(), d_top_lp.data(), top_lp.size() * 8, cudaMemcpyDeviceToHost, stream),
          "draw_tokens [" + shape + "]: top logprobs to the host");
  }
  check(cudaStreamSynchronize(stream), "draw_tokens [" + shape + "]: synchronize");

  std::vector<TokenDrawResult> results(static_cast<size_t>(R));
  for (int64_t r = 0; r < R; ++r) {
    const DrawOut& o = out[static_cast<size_t>(r)];
    TokenDrawResult& res = results[static_cast<size_t>(r)];
    if (o.first_bad != kNoBadLogit) {
      res.first_non_finite = o.first_bad;
      continue;
    }
    res.token = o.token;
    res.logprob = o.logprob;
    const int64_t tops = std::min<int64_t>(rows[static_cast<size_t>(r)].top_logprobs, max_top);
    for (int64_t t = 0; t < tops; ++t) {
      res.top_ids.push_back(top_ids[static_cast<size_t>(r * max_top + t)]);
      res.top_logprobs.push_back(top_lp[static_cast<size_t>(r * max_top + t)]);
    }
  }
  return results;
}

}  // namespace fp4kit::cuda
