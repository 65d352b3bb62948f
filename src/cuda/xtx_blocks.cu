#include "cuda/xtx_blocks.h"

#include <cstdint>
#include <string>

#include "cuda/check.cuh"

namespace fp4kit::cuda {
namespace {

constexpr int kBlock = 16;
constexpr int kBlockThreads = kBlock * kBlock;

__device__ __forceinline__ double widen_to_double(float v) { return static_cast<double>(v); }
__device__ __forceinline__ double widen_to_double(uint16_t bf16) {
  return static_cast<double>(__uint_as_float(static_cast<uint32_t>(bf16) << 16));
}

// One thread block per 16-column block. Thread (g, a) owns column a of the rows r ≡ g (mod 16) and
// keeps their 16 sums d[a]·d[b] in registers; the 16 partial sums of each entry are then added in
// increasing g. A tile of 16 rows × 16 columns goes through shared memory per step (each row's 16
// values are 64 contiguous bytes).
template <class T>
__global__ void __launch_bounds__(kBlockThreads) xtx_blocks_kernel(const T* x, int64_t rows, int64_t stride,
                                                              const float* weights, double* sums) {
  __shared__ double tile[kBlock][kBlock];
  __shared__ double part[kBlock][kBlockThreads];
  const int a = static_cast<int>(threadIdx.x) % kBlock, g = static_cast<int>(threadIdx.x) / kBlock;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kBlock + a;
  double acc[kBlock];
#pragma unroll
  for (int b = 0; b < kBlock; ++b) acc[b] = 0.0;
  for (int64_t r0 = 0; r0 < rows; r0 += kBlock) {
    const int64_t r = r0 + g;
    double v = 0.0;  // rows past the end add 0·0
    if (r < rows) {
      v = widen_to_double(x[r * stride + col]);
      if (weights) v = static_cast<double>(weights[r]) * v;
    }
    tile[g][a] = v;
    __syncthreads();
#pragma unroll
    for (int b = 0; b < kBlock; ++b) acc[b] += v * tile[g][b];
    __syncthreads();
  }
#pragma unroll
  for (int b = 0; b < kBlock; ++b) part[g][a * kBlock + b] = acc[b];
  __syncthreads();
  double s = 0.0;
#pragma unroll
  for (int i = 0; i < kBlock; ++i) s += part[i][threadIdx.x];
  sums[static_cast<int64_t>(blockIdx.x) * kBlockThreads + threadIdx.x] += s;
}

}  // namespace

void xtx_blocks_accumulate(const XtxRows& x, double* sums, StreamHandle stream) {
  check_xtx_rows(x, "xtx_blocks_accumulate");
  if (x.cols % kBlock != 0)
    throw Error("xtx_blocks_accumulate [" + xtx_rows_shape(x) + "]: cols is not a multiple of 16");
  if (x.rows == 0) return;
  const unsigned blocks = static_cast<unsigned>(x.cols / kBlock);
  if (x.f32) xtx_blocks_kernel<<<blocks, kBlockThreads, 0, stream>>>(x.f32, x.rows, x.stride, x.row_weights, sums);
  else xtx_blocks_kernel<<<blocks, kBlockThreads, 0, stream>>>(x.bf16, x.rows, x.stride, x.row_weights, sums);
  check_launch("xtx_blocks_kernel", [&] { return xtx_rows_shape(x); });
}

}  // namespace fp4kit::cuda
