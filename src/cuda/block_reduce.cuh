#pragma once
// Reductions over a warp and over a block, for the row kernels of the forward pass.
#include <cuda_runtime.h>

namespace fp4kit::cuda {

__device__ __forceinline__ float warp_sum(float v) {
  for (int d = 16; d > 0; d >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, d);
  return v;
}

// op over one value per thread of the block (blockDim.x a multiple of 32, at most 1024); every
// thread gets the result. `scratch` holds 32 values in shared memory; calls may follow each other.
template <class T, class Op>
__device__ T block_reduce(T v, T* scratch, Op op) {
  for (int d = 16; d > 0; d >>= 1) v = op(v, __shfl_xor_sync(0xFFFFFFFFu, v, d));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // a previous call may still be reading scratch
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T r = scratch[0];
  for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w) r = op(r, scratch[w]);
  return r;
}

template <class T>
__device__ T block_sum(T v, T* scratch) {
  return block_reduce(v, scratch, [](T a, T b) { return a + b; });
}

}  // namespace fp4kit::cuda
