#pragma once
// max |x| reductions that keep NaN, as the CPU observer's maximum does (fmaxf would drop it): the
// calibration amax of linear inputs (elementwise.cu) and of routed-expert inputs (moe_observe.cu).
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/block_reduce.cuh"

namespace fp4kit::cuda {

__device__ __forceinline__ float max_nan(float a, float b) { return (isnan(a) || a > b) ? a : b; }

__device__ __forceinline__ float block_max_nan(float v, float* scratch) {
  return block_reduce(v, scratch, [](float a, float b) { return max_nan(a, b); });
}

struct AsF32 {
  __device__ float operator()(float v) const { return v; }
};

// row_max[r] = max |widen(x[r, c])| over the row, one block per row of x [rows, cols].
template <class T, class Widen = AsF32>
__global__ void row_abs_max_kernel(const T* x, int64_t cols, float* row_max, Widen widen = {}) {
  __shared__ float scratch[32];
  const T* row = x + blockIdx.x * cols;
  float m = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) m = max_nan(m, fabsf(widen(row[i])));
  m = block_max_nan(m, scratch);
  if (threadIdx.x == 0) row_max[blockIdx.x] = m;
}

}  // namespace fp4kit::cuda
