// GptqDevice's factor: the reversed damped matrix, cuSOLVER's potrf, L⁻¹ by a cuBLAS triangular
// solve, U = J·L⁻¹·J (see gptq.h).
#include <cuda_runtime.h>

#include <climits>
#include <string>
#include <vector>

#include "base/error.h"
#include "cuda/check.cuh"
#include "cuda/cublas_library.h"
#include "cuda/cusolver_library.h"
#include "cuda/elementwise.h"
#include "cuda/gptq_device.cuh"

namespace fp4kit::cuda {

namespace {

// a[i + j·k] (column-major) = A[k−1−j][k−1−i] with A = H[order][order] + diag_add·I, the diagonal
// summed in F64, every value rounded once to F32. For i ≥ j (the lower triangle potrf reads) that is
// the lower triangle of A in processing order, the half the CPU's Cholesky reads. Threads run along
// i, so for the identity order they read H's rows contiguously.
__global__ void reversed_damped_kernel(const double* h, const int32_t* order, int k, double diag_add, float* a) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const int j = blockIdx.y * blockDim.y + threadIdx.y;
  if (i >= k || j >= k) return;
  const int64_t r = order[k - 1 - j], c = order[k - 1 - i];
  const double v = h[r * k + c];
  a[i + static_cast<int64_t>(j) * k] = static_cast<float>(i == j ? v + diag_add : v);
}

__global__ void identity_kernel(float* a, int k) {
  const int64_t n = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t kk = static_cast<int64_t>(k) * k;
  if (n < kk) a[n] = n % (k + 1) == 0 ? 1.0f : 0.0f;
}

// U = J·L⁻¹·J: column-major, U(i, j) = L⁻¹(k−1−i, k−1−j), i.e. the flat array reversed.
__global__ void reverse_kernel(const float* src, int64_t n, float* dst) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) dst[i] = src[n - 1 - i];
}

std::string factor_shape(size_t k) { return "k=" + std::to_string(k); }

}  // namespace

GptqDevice::Impl::Impl() {
  check_cublas(cublas().Create(&blas), "cublasCreate", "GPTQ");
  check_cublas(cublas().SetStream(blas, stream.get()), "cublasSetStream", "GPTQ");
  // F32 products and sums (no TF32 or other reduced-precision modes).
  check_cublas(cublas().SetMathMode(blas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode", "GPTQ");
  check_cusolver(cusolver().Create(&solver), "cusolverDnCreate", "GPTQ");
  check_cusolver(cusolver().SetStream(solver, stream.get()), "cusolverDnSetStream", "GPTQ");
}

GptqDevice::Impl::~Impl() {
  if (solver) cusolver().Destroy(solver);
  if (blas) cublas().Destroy(blas);
}

GptqDevice::GptqDevice() : impl_(std::make_unique<Impl>()) {}
GptqDevice::~GptqDevice() = default;

void GptqDevice::set_matrix(const double* h, size_t k, const size_t* order) {
  Impl& d = *impl_;
  if (k == 0 || k > static_cast<size_t>(INT_MAX / 2) || k * k > static_cast<size_t>(INT_MAX))
    throw InputError("GPTQ on the GPU: k = " + std::to_string(k) + " is out of range (1 to 46340)");
  d.factored = false;
  const size_t kk = k * k;
  reserve(d.h, kk * sizeof(double), "GPTQ XᵀX [" + factor_shape(k) + "]");
  reserve(d.a, kk * sizeof(float), "GPTQ factor [" + factor_shape(k) + "]");
  reserve(d.inverse, kk * sizeof(float), "GPTQ inverse factor [" + factor_shape(k) + "]");
  reserve(d.order, k * sizeof(int32_t), "GPTQ order");
  reserve(d.position, k * sizeof(int32_t), "GPTQ positions");
  reserve(d.status, 16, "GPTQ status");
  std::vector<int32_t> ord(k), pos(k);
  for (size_t i = 0; i < k; ++i) {
    ord[i] = static_cast<int32_t>(order[i]);
    pos[order[i]] = static_cast<int32_t>(i);
  }
  copy_to_device(d.h.data(), h, kk * sizeof(double), d.stream);
  copy_to_device(d.order.data(), ord.data(), k * sizeof(int32_t), d.stream);
  copy_to_device(d.position.data(), pos.data(), k * sizeof(int32_t), d.stream);
  const int n = static_cast<int>(k);
  int lwork = 0;
  check_cusolver(cusolver().SpotrfBufferSize(d.solver, CUBLAS_FILL_MODE_LOWER, n, d.a.data<float>(), n, &lwork),
                 "cusolverDnSpotrf_bufferSize", factor_shape(k));
  reserve(d.work, static_cast<size_t>(std::max(lwork, 1)) * sizeof(float), "GPTQ potrf workspace [" + factor_shape(k) + "]");
  d.work_floats = std::max(lwork, 1);
  d.k = k;
  d.stream.synchronize("GPTQ set_matrix: upload");  // the host vectors go out of scope
}

bool GptqDevice::factor(double diag_add) {
  Impl& d = *impl_;
  if (d.k == 0) throw InputError("GPTQ on the GPU: factor() before set_matrix()");
  d.factored = false;
  const size_t k = d.k;
  const int n = static_cast<int>(k);
  const int64_t kk = static_cast<int64_t>(k * k);
  const dim3 threads(32, 8);
  const dim3 blocks(ceil_div(k, threads.x), ceil_div(k, threads.y));
  reversed_damped_kernel<<<blocks, threads, 0, d.stream.get()>>>(d.h.data<double>(), d.order.data<int32_t>(), n,
                                                                   diag_add, d.a.data<float>());
  check_launch("gptq reversed_damped", [&] { return factor_shape(k); });
  int* info = d.status.data<int>();
  check_cusolver(cusolver().Spotrf(d.solver, CUBLAS_FILL_MODE_LOWER, n, d.a.data<float>(), n, d.work.data<float>(),
                                   d.work_floats, info),
                 "cusolverDnSpotrf", factor_shape(k));
  int info_host = 0;
  copy_to_host(&info_host, info, sizeof info_host, d.stream);
  d.stream.synchronize("GPTQ potrf");
  if (info_host < 0)
    throw DeviceError("cusolverDnSpotrf [" + factor_shape(k) + "]: argument " + std::to_string(-info_host) + " is wrong");
  if (info_host > 0) return false;  // a leading minor is not positive definite
  identity_kernel<<<ceil_div(static_cast<size_t>(kk), 256), 256, 0, d.stream.get()>>>(d.inverse.data<float>(), n);
  check_launch("gptq identity", [&] { return factor_shape(k); });
  const float one = 1.0f;
  check_cublas(cublas().Strsm(d.blas, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT, n, n,
                              &one, d.a.data<float>(), n, d.inverse.data<float>(), n),
               "cublasStrsm (GPTQ inverse factor)", factor_shape(k));
  reverse_kernel<<<ceil_div(static_cast<size_t>(kk), 256), 256, 0, d.stream.get()>>>(d.inverse.data<float>(), kk,
                                                                                       d.a.data<float>());
  check_launch("gptq reverse", [&] { return factor_shape(k); });
  // A tiny pivot can still overflow L⁻¹: such a U is no factor.
  int64_t* first = reinterpret_cast<int64_t*>(d.status.data<char>() + 8);
  const int64_t none = kk;
  copy_to_device(first, &none, sizeof none, d.stream);
  first_nonfinite(d.a.data<float>(), kk, first, d.stream.get());
  int64_t first_host = 0;
  copy_to_host(&first_host, first, sizeof first_host, d.stream);
  d.stream.synchronize("GPTQ factor");
  if (first_host != kk) return false;
  d.factored = true;
  return true;
}

std::vector<float> GptqDevice::u() const {
  const Impl& d = *impl_;
  if (!d.factored) throw InputError("GPTQ on the GPU: u() without a factor");
  const size_t k = d.k;
  std::vector<float> col(k * k), out(k * k, 0.0f);
  copy_to_host(col.data(), d.a.data(), k * k * sizeof(float), d.stream);
  d.stream.synchronize("GPTQ u: download");
  for (size_t j = 0; j < k; ++j)
    for (size_t i = 0; i <= j; ++i) out[i * k + j] = col[i + j * k];
  return out;
}

}  // namespace fp4kit::cuda
