#include "cuda/xtx_full.h"

#include <algorithm>
#include <climits>
#include <string>

#include "cuda/check.cuh"
#include "cuda/cublas_library.h"

namespace fp4kit::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ double widen(float v) { return static_cast<double>(v); }
__device__ __forceinline__ double widen(uint16_t bf16) {
  return static_cast<double>(__uint_as_float(static_cast<uint32_t>(bf16) << 16));
}

// out [n, cols] F64 = rows first .. first+n-1 of x, each times its weight.
template <class T>
__global__ void rows_to_f64_kernel(const T* x, int64_t stride, int64_t cols, const float* weights, int64_t first,
                                   int64_t n, double* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n * cols) return;
  const int64_t r = first + i / cols, c = i % cols;
  double v = widen(x[r * stride + c]);
  if (weights) v = static_cast<double>(weights[r]) * v;
  out[i] = v;
}

__global__ void symmetric_f32_kernel(const double* sums, int64_t k, int64_t total, float* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int64_t kk = k * k, g = i / kk, a = i % kk / k, b = i % k;
  const int64_t lo = a < b ? a : b, hi = a < b ? b : a;
  out[i] = static_cast<float>(sums[g * kk + lo + hi * k]);
}

std::string shape(const XtxRows& x, int64_t groups, int64_t k) {
  return xtx_rows_shape(x) + " groups=" + std::to_string(groups) + " k=" + std::to_string(k);
}

}  // namespace

struct XtxFullWorkspace::Impl {
  cublasHandle_t blas = nullptr;
  int64_t max_rows = 0;
  DeviceBuffer scratch;  // F64 [rows of a product, cols]
  ~Impl() {
    if (blas) cublas().Destroy(blas);
  }
};

XtxFullWorkspace::XtxFullWorkspace(int64_t max_rows) : impl_(std::make_unique<Impl>()) {
  impl_->max_rows = max_rows;
  check_cublas(cublas().Create(&impl_->blas), "cublasCreate", "XtX");
  // Plain F64 products and sums (no emulated or reduced-precision modes).
  check_cublas(cublas().SetMathMode(impl_->blas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode", "XtX");
}

XtxFullWorkspace::~XtxFullWorkspace() = default;

void XtxFullWorkspace::accumulate(const XtxRows& x, int64_t groups, int64_t k, double* sums, StreamHandle stream) {
  check_xtx_rows(x, "XtxFullWorkspace::accumulate");
  if (groups < 1 || k < 1 || groups * k != x.cols || k > INT_MAX || x.cols > INT_MAX)
    throw Error("XtxFullWorkspace::accumulate [" + shape(x, groups, k) + "]: cols is not groups·k");
  if (x.rows == 0) return;
  Impl& d = *impl_;
  int64_t per = static_cast<int64_t>(kXtxFullScratchBytes / sizeof(double)) / x.cols;
  if (d.max_rows > 0) per = std::min(per, d.max_rows);
  per = std::clamp<int64_t>(per, 1, std::min<int64_t>(x.rows, INT_MAX));
  const size_t bytes = static_cast<size_t>(per * x.cols) * sizeof(double);
  if (d.scratch.bytes() < bytes) {
    d.scratch = DeviceBuffer();
    d.scratch = DeviceBuffer(bytes, "XtX rows in F64 [" + std::to_string(per) + ", " + std::to_string(x.cols) + "]");
  }
  check_cublas(cublas().SetStream(d.blas, stream), "cublasSetStream", shape(x, groups, k));
  // The handle goes back to the default stream when this call ends, so that it never names a stream
  // its caller has destroyed since (the products queued on `stream` stay ordered there).
  struct DefaultStream {
    cublasHandle_t blas;
    ~DefaultStream() { cublas().SetStream(blas, nullptr); }
  } restore{d.blas};
  const double one = 1.0;
  for (int64_t first = 0; first < x.rows; first += per) {
    const int64_t n = std::min(per, x.rows - first);
    const unsigned grid = ceil_div(static_cast<size_t>(n * x.cols), kThreads);
    double* rows = d.scratch.data<double>();
    if (x.f32) rows_to_f64_kernel<<<grid, kThreads, 0, stream>>>(x.f32, x.stride, x.cols, x.row_weights, first, n, rows);
    else rows_to_f64_kernel<<<grid, kThreads, 0, stream>>>(x.bf16, x.stride, x.cols, x.row_weights, first, n, rows);
    check_launch("rows_to_f64_kernel", [&] {
      return shape(x, groups, k) + " first=" + std::to_string(first) + " n=" + std::to_string(n);
    });
    // Column-major, the rows [n, cols] are Xᵀ [cols, n] with leading dimension cols; group g's
    // columns are its k rows from g·k, and C = Xᵀ·X over them is its k×k block of XᵀX.
    for (int64_t g = 0; g < groups; ++g)
      check_cublas(cublas().Dsyrk(d.blas, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, static_cast<int>(k), static_cast<int>(n),
                                  &one, rows + g * k, static_cast<int>(x.cols), &one, sums + g * k * k,
                                  static_cast<int>(k)),
                   "cublasDsyrk", shape(x, groups, k) + " g=" + std::to_string(g) + " n=" + std::to_string(n));
  }
}

void xtx_full_symmetric_f32(const double* sums, int64_t groups, int64_t k, float* out, StreamHandle stream) {
  const int64_t total = groups * k * k;
  if (total <= 0) return;
  symmetric_f32_kernel<<<ceil_div(static_cast<size_t>(total), kThreads), kThreads, 0, stream>>>(sums, k, total, out);
  check_launch("symmetric_f32_kernel", [&] { return "groups=" + std::to_string(groups) + " k=" + std::to_string(k); });
}

}  // namespace fp4kit::cuda
