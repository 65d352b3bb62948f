#pragma once
// RMS normalisation of one row by one block, shared by rms_norm_rows and the kernels that produce a
// row and normalise it in the same launch (hc_pre's collapse): the same per-thread order of sums and
// the same reduction, so the same bits wherever it runs.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/block_reduce.cuh"
#include "cuda/codecs.cuh"

namespace fp4kit::cuda {

constexpr int kRowNormLoads = 8;  // values a thread has in flight: a few rows are one block each, so
                                  // a row's time is its loads' latency unless they overlap

// dst[i] = weight[i] · (v_i · inv) (no weight: v_i · inv), inv = 1 / sqrt(mean(v²) + eps), for the
// n values v_i = value(i) of the row; with dst16, also each result rounded to BF16 there (round to
// nearest even, as encode_elements). Each thread sums its i = threadIdx.x + j·blockDim.x in
// increasing j in double (the zeros past the end add nothing), kRowNormLoads values fetched before
// their sums. kStash: each v_i is also written to dst[i] once the thread's kRowNormLoads values are
// in (a store among the loads would hold back the loads after it, as dst may alias what `value`
// reads); the second pass then reads src = dst, each thread only what it wrote. scratch: 32 doubles
// of shared memory.
template <bool kStash = false, class Value>
__device__ __forceinline__ void rms_norm_row(Value value, int64_t n, const float* weight, float eps, const float* src,
                                             float* dst, uint16_t* dst16, double* scratch) {
  const int64_t stride = blockDim.x;
  double sum = 0;
  for (int64_t base = threadIdx.x; base < n; base += kRowNormLoads * stride) {
    float v[kRowNormLoads];
#pragma unroll
    for (int j = 0; j < kRowNormLoads; ++j) v[j] = base + j * stride < n ? value(base + j * stride) : 0.0f;
    if constexpr (kStash) {
#pragma unroll
      for (int j = 0; j < kRowNormLoads; ++j)
        if (base + j * stride < n) dst[base + j * stride] = v[j];
    }
#pragma unroll
    for (int j = 0; j < kRowNormLoads; ++j) sum += static_cast<double>(v[j]) * v[j];
  }
  sum = block_sum(sum, scratch);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float inv = 1.0f / sqrtf(mean + eps);
  // The second pass also loads kRowNormLoads values (and weights) before any store: a store among
  // the loads would hold back the loads after it (dst may alias src), one memory latency each.
  for (int64_t base = threadIdx.x; base < n; base += kRowNormLoads * stride) {
    float v[kRowNormLoads], wv[kRowNormLoads];
#pragma unroll
    for (int j = 0; j < kRowNormLoads; ++j) {
      const int64_t i = base + j * stride;
      v[j] = i < n ? src[i] : 0.0f;
      wv[j] = weight && i < n ? weight[i] : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kRowNormLoads; ++j) {
      const int64_t i = base + j * stride;
      if (i >= n) break;
      const float r = weight ? wv[j] * (v[j] * inv) : v[j] * inv;
      dst[i] = r;
      if (dst16) dst16[i] = float_to_bf16_bits(r);
    }
  }
}

}  // namespace fp4kit::cuda
