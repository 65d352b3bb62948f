#include <cuda_runtime.h>

#include <string>

#include "cuda/check.cuh"
#include "cuda/row_norm.cuh"
#include "cuda/v4_norm_rope.h"

namespace fp4kit::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void rms_norm_rows_kernel(const float* x, int64_t n, const float* weight, float eps, float* out, uint16_t* out16) {
  __shared__ double scratch[32];
  const float* row = x + blockIdx.x * n;
  rms_norm_row([row](int64_t i) { return row[i]; }, n, weight, eps, row, out + blockIdx.x * n,
               out16 ? out16 + blockIdx.x * n : nullptr, scratch);
}

__global__ void rope_rows_kernel(RopeRows r) {
  const int64_t half = r.dim / 2;
  const int64_t total = r.rows * r.heads * half;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e % half, rh = e / half, h = rh % r.heads, row = rh / r.heads;
    float* v = r.v + row * r.row_stride + h * r.head_stride + r.offset;
    const float angle = static_cast<float>(r.positions[row]) * r.inv_freq[i];
    const float c = cosf(angle), s = r.inverse ? -sinf(angle) : sinf(angle);
    const float a = v[2 * i], b = v[2 * i + 1];
    v[2 * i] = a * c - b * s;
    v[2 * i + 1] = b * c + a * s;
  }
}

}  // namespace

void rms_norm_rows(const float* x, int64_t rows, int64_t n, const float* weight, float eps, float* out,
                   StreamHandle stream, uint16_t* out_bf16) {
  if (rows <= 0) return;
  if (n <= 0 || !x || !out) throw InputError("rms_norm_rows: bad arguments (rows " + std::to_string(rows) + ", n " + std::to_string(n) + ")");
  rms_norm_rows_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, n, weight, eps, out, out_bf16);
  check_launch("rms_norm_rows", [&] { return "rows=" + std::to_string(rows) + " n=" + std::to_string(n); });
}

void rope_rows(const RopeRows& r, StreamHandle stream) {
  if (r.rows <= 0 || r.heads <= 0 || r.dim <= 0) return;
  if (r.dim % 2 || !r.v || !r.positions || !r.inv_freq)
    throw InputError("rope_rows: bad arguments (dim " + std::to_string(r.dim) + ")");
  const int64_t total = r.rows * r.heads * (r.dim / 2);
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((total + kThreads - 1) / kThreads, 65535));
  rope_rows_kernel<<<blocks, kThreads, 0, stream>>>(r);
  check_launch("rope_rows", [&] {
    return "rows=" + std::to_string(r.rows) + " heads=" + std::to_string(r.heads) + " dim=" + std::to_string(r.dim);
  });
}

}  // namespace fp4kit::cuda
