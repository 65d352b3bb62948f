#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "cuda/abs_max.cuh"
#include "cuda/block_reduce.cuh"
#include "cuda/check.cuh"
#include "cuda/elementwise.h"

namespace fp4kit::cuda {
namespace {

constexpr int kElementwiseThreads = 256;

unsigned blocks_for(int64_t n) { return ceil_div(static_cast<size_t>(n), kElementwiseThreads); }

__global__ void gather_rows_kernel(const float* src, const int32_t* rows, int64_t n, int64_t w, float* dst) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= n * w) return;
  dst[e] = src[static_cast<int64_t>(rows[e / w]) * w + e % w];
}

__global__ void repeat_rows_kernel(const float* src, int64_t n, int64_t w, int64_t times, float* dst) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= n * times * w) return;
  dst[e] = src[e / (times * w) * w + e % w];
}

__global__ void scatter_add_rows_kernel(float* dst, const float* src, const int32_t* rows, const float* weights, int64_t n,
                                        int64_t w) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= n * w) return;
  const int64_t i = e / w;
  dst[static_cast<int64_t>(rows[i]) * w + e % w] += src[e] * weights[i];
}

__global__ void add_kernel(const float* a, const float* b, int64_t n, float* out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = a[i] + b[i];
}

__global__ void widen_kernel(const uint16_t* src, bool bf16, int64_t n, float* out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  out[i] = bf16 ? __uint_as_float(static_cast<uint32_t>(src[i]) << 16) : __half2float(__ushort_as_half(src[i]));
}

__global__ void gather_widen_kernel(const uint16_t* src, bool bf16, const int32_t* rows, int64_t n, int64_t w, float* dst) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= n * w) return;
  const uint16_t v = src[static_cast<int64_t>(rows[e / w]) * w + e % w];
  dst[e] = bf16 ? __uint_as_float(static_cast<uint32_t>(v) << 16) : __half2float(__ushort_as_half(v));
}

__global__ void amax_of_rows_kernel(const float* row_max, const float* weights, int64_t rows, float* out) {
  __shared__ float scratch[32];
  float m = 0.0f, w = 0.0f;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    m = max_nan(m, row_max[r]);
    w = max_nan(w, weights ? fabsf(weights[r] * row_max[r]) : row_max[r]);
  }
  m = block_max_nan(m, scratch);
  w = block_max_nan(w, scratch);
  if (threadIdx.x == 0) out[0] = m, out[1] = w;
}

__global__ void first_nonfinite_kernel(const float* x, int64_t n, unsigned long long* first) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n && !isfinite(x[i])) atomicMin(first, static_cast<unsigned long long>(i));
}

}  // namespace

void gather_rows(const float* src, const int32_t* rows, int64_t n, int64_t w, float* dst, StreamHandle stream) {
  if (n <= 0 || w <= 0) return;
  gather_rows_kernel<<<blocks_for(n * w), kElementwiseThreads, 0, stream>>>(src, rows, n, w, dst);
  check_launch("gather_rows", [&] { return "n=" + std::to_string(n) + " w=" + std::to_string(w); });
}

void repeat_rows(const float* src, int64_t n, int64_t w, int64_t times, float* dst, StreamHandle stream) {
  if (n <= 0 || w <= 0 || times <= 0) return;
  repeat_rows_kernel<<<blocks_for(n * times * w), kElementwiseThreads, 0, stream>>>(src, n, w, times, dst);
  check_launch("repeat_rows", [&] {
    return "n=" + std::to_string(n) + " w=" + std::to_string(w) + " times=" + std::to_string(times);
  });
}

void scatter_add_rows(float* dst, const float* src, const int32_t* rows, const float* weights, int64_t n, int64_t w,
                      StreamHandle stream) {
  if (n <= 0 || w <= 0) return;
  scatter_add_rows_kernel<<<blocks_for(n * w), kElementwiseThreads, 0, stream>>>(dst, src, rows, weights, n, w);
  check_launch("scatter_add_rows", [&] { return "n=" + std::to_string(n) + " w=" + std::to_string(w); });
}

void add_f32(const float* a, const float* b, int64_t n, float* out, StreamHandle stream) {
  if (n <= 0) return;
  add_kernel<<<blocks_for(n), kElementwiseThreads, 0, stream>>>(a, b, n, out);
  check_launch("add_f32", [&] { return "n=" + std::to_string(n); });
}

void widen_to_f32(const void* src, DType dtype, int64_t n, float* out, StreamHandle stream) {
  if (n <= 0) return;
  if (dtype == DType::F32) {
    check(cudaMemcpyAsync(out, src, static_cast<size_t>(n) * 4, cudaMemcpyDeviceToDevice, stream), "widen_to_f32: copy");
    return;
  }
  if (dtype != DType::BF16 && dtype != DType::F16)
    throw InputError(std::string("widen_to_f32: ") + std::string(dtype_name(dtype)) + " is not a float dtype");
  widen_kernel<<<blocks_for(n), kElementwiseThreads, 0, stream>>>(static_cast<const uint16_t*>(src), dtype == DType::BF16, n, out);
  check_launch("widen_to_f32", [&] { return "n=" + std::to_string(n); });
}

void gather_rows_widened(const void* src, DType dtype, const int32_t* rows, int64_t n, int64_t w, float* dst,
                         StreamHandle stream) {
  if (n <= 0 || w <= 0) return;
  if (dtype == DType::F32) return gather_rows(static_cast<const float*>(src), rows, n, w, dst, stream);
  if (dtype != DType::BF16 && dtype != DType::F16)
    throw InputError(std::string("gather_rows_widened: ") + std::string(dtype_name(dtype)) + " is not a float dtype");
  gather_widen_kernel<<<blocks_for(n * w), kElementwiseThreads, 0, stream>>>(static_cast<const uint16_t*>(src), dtype == DType::BF16,
                                                                   rows, n, w, dst);
  check_launch("gather_rows_widened", [&] { return "n=" + std::to_string(n) + " w=" + std::to_string(w); });
}

void linear_amax(const float* x, int64_t rows, int64_t cols, const float* row_weights, float* out, float* scratch,
                 StreamHandle stream) {
  if (rows <= 0 || cols <= 0) {
    check(cudaMemsetAsync(out, 0, 2 * sizeof(float), stream), "linear_amax: zero");
    return;
  }
  row_abs_max_kernel<<<static_cast<unsigned>(rows), kElementwiseThreads, 0, stream>>>(x, cols, scratch);
  check_launch("linear_amax rows", [&] { return "rows=" + std::to_string(rows) + " cols=" + std::to_string(cols); });
  amax_of_rows_kernel<<<1, kElementwiseThreads, 0, stream>>>(scratch, row_weights, rows, out);
  check_launch("linear_amax", [&] { return "rows=" + std::to_string(rows); });
}

void first_nonfinite(const float* x, int64_t n, int64_t* first, StreamHandle stream) {
  if (n <= 0) return;
  first_nonfinite_kernel<<<blocks_for(n), kElementwiseThreads, 0, stream>>>(x, n, reinterpret_cast<unsigned long long*>(first));
  check_launch("first_nonfinite", [&] { return "n=" + std::to_string(n); });
}

}  // namespace fp4kit::cuda
