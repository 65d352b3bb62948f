#include <cuda_runtime.h>

#include <string>

#include "cuda/check.cuh"
#include "cuda/codecs.cuh"
#include "cuda/dependent_launch.cuh"
#include "cuda/row_norm.cuh"
#include "cuda/v4_norm_rope.h"

namespace fp4kit::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void rms_norm_rows_kernel(const float* x, int64_t n, const float* weight, float eps, float* out, uint16_t* out16) {
  wait_for_previous_grid();  // launched dependent: nothing read before this
  allow_next_grid();  // the next product may launch now (cuda/dependent_launch.cuh)
  __shared__ double scratch[32];
  const float* row = x + blockIdx.x * n;
  rms_norm_row([row](int64_t i) { return row[i]; }, n, weight, eps, row, out + blockIdx.x * n,
               out16 ? out16 + blockIdx.x * n : nullptr, scratch);
}

// Pair i of v rotated by position · inv_freq[i] (inverse: the negative angle).
__device__ __forceinline__ void rotate_pair(float* v, int64_t i, int64_t position, const float* inv_freq, bool inverse) {
  const float angle = static_cast<float>(position) * inv_freq[i];
  const float c = cosf(angle), s = inverse ? -sinf(angle) : sinf(angle);
  const float a = v[2 * i], b = v[2 * i + 1];
  v[2 * i] = a * c - b * s;
  v[2 * i + 1] = b * c + a * s;
}

__global__ void rope_rows_kernel(RopeRows r) {
  wait_for_previous_grid();  // launched dependent: nothing read before this
  allow_next_grid();  // the next product may launch now (cuda/dependent_launch.cuh)
  const int64_t half = r.dim / 2;
  const int64_t total = r.rows * r.heads * half;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e % half, rh = e / half, h = rh % r.heads, row = rh / r.heads;
    rotate_pair(r.v + row * r.row_stride + h * r.head_stride + r.offset, i, r.positions[row], r.inv_freq, r.inverse);
  }
}

// Every pair of each head's head_width values: the rope slice's pairs rotated as rope_rows_kernel
// rotates them, every value also rounded to BF16 into out16.
__global__ void rope_rows_bf16_kernel(RopeRows r) {
  wait_for_previous_grid();  // launched dependent: nothing read before this
  allow_next_grid();  // the next product may launch now (cuda/dependent_launch.cuh)
  const int64_t half = r.head_width / 2, first = r.offset / 2;
  const int64_t total = r.rows * r.heads * half;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t p = e % half, rh = e / half, h = rh % r.heads, row = rh / r.heads;
    const int64_t at = row * r.row_stride + h * r.head_stride;
    float* v = r.v + at;
    if (p >= first && p < first + r.dim / 2) rotate_pair(v + r.offset, p - first, r.positions[row], r.inv_freq, r.inverse);
    r.out16[at + 2 * p] = float_to_bf16_bits(v[2 * p]);
    r.out16[at + 2 * p + 1] = float_to_bf16_bits(v[2 * p + 1]);
  }
}

// One block per row: the norm (rms_norm_row, as rms_norm_rows_kernel), then the rotation of the
// row's rope slice (rotate_pair, as rope_rows_kernel) once the block's stores are visible to it.
__global__ void rms_norm_rope_rows_kernel(NormRopeRows r) {
  wait_for_previous_grid();  // launched dependent: nothing read before this
  allow_next_grid();  // the next product may launch now (cuda/dependent_launch.cuh)
  __shared__ double scratch[32];
  float* row = r.x + blockIdx.x * r.n;
  rms_norm_row([row](int64_t i) { return row[i]; }, r.n, r.weight, r.eps, row, row, nullptr, scratch);
  __syncthreads();
  const int64_t position = r.positions[blockIdx.x / r.rows_per_position];
  for (int64_t i = threadIdx.x; i < r.dim / 2; i += blockDim.x) rotate_pair(row + r.offset, i, position, r.inv_freq, false);
}

}  // namespace

void rms_norm_rows(const float* x, int64_t rows, int64_t n, const float* weight, float eps, float* out,
                   StreamHandle stream, uint16_t* out_bf16) {
  if (rows <= 0) return;
  if (n <= 0 || !x || !out) throw InputError("rms_norm_rows: bad arguments (rows " + std::to_string(rows) + ", n " + std::to_string(n) + ")");
  check(launch_dependent(rms_norm_rows_kernel, dim3(static_cast<unsigned>(rows)), dim3(kThreads), 0, stream, x, n, weight, eps,
                         out, out_bf16),
        "rms_norm_rows launch");
  check_launch("rms_norm_rows", [&] { return "rows=" + std::to_string(rows) + " n=" + std::to_string(n); });
}

void rms_norm_rope_rows(const NormRopeRows& r, StreamHandle stream) {
  if (r.rows <= 0) return;
  if (r.n <= 0 || !r.x || !r.positions || !r.inv_freq || r.rows_per_position < 1 || r.dim < 0 || r.dim % 2 ||
      r.offset < 0 || r.offset + r.dim > r.n)
    throw InputError("rms_norm_rope_rows: bad arguments (rows " + std::to_string(r.rows) + ", n " + std::to_string(r.n) +
                     ", rope dim " + std::to_string(r.dim) + " at " + std::to_string(r.offset) + ")");
  check(launch_dependent(rms_norm_rope_rows_kernel, dim3(static_cast<unsigned>(r.rows)), dim3(kThreads), 0, stream, r),
        "rms_norm_rope_rows launch");
  check_launch("rms_norm_rope_rows", [&] { return "rows=" + std::to_string(r.rows) + " n=" + std::to_string(r.n); });
}

void rope_rows(const RopeRows& r, StreamHandle stream) {
  if (r.rows <= 0 || r.heads <= 0 || r.dim <= 0) return;
  if (r.dim % 2 || !r.v || !r.positions || !r.inv_freq)
    throw InputError("rope_rows: bad arguments (dim " + std::to_string(r.dim) + ")");
  if (r.out16 && (r.head_width % 2 || r.offset % 2 || r.offset + r.dim > r.head_width))
    throw InputError("rope_rows: bad arguments (BF16 copy of " + std::to_string(r.head_width) + " values a head, rope dim " +
                     std::to_string(r.dim) + " at " + std::to_string(r.offset) + ")");
  const int64_t total = r.rows * r.heads * ((r.out16 ? r.head_width : r.dim) / 2);
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((total + kThreads - 1) / kThreads, 65535));
  check(launch_dependent(r.out16 ? rope_rows_bf16_kernel : rope_rows_kernel, dim3(blocks), dim3(kThreads), 0, stream, r),
        "rope_rows launch");
  check_launch("rope_rows", [&] {
    return "rows=" + std::to_string(r.rows) + " heads=" + std::to_string(r.heads) + " dim=" + std::to_string(r.dim);
  });
}

}  // namespace fp4kit::cuda
