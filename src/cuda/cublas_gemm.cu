#include <cublasLt.h>

#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "base/error.h"
#include "cuda/check.cuh"
#include "cuda/cublas_gemm.h"
#include "cuda/cublaslt_library.h"

namespace fp4kit::cuda {

namespace {

// `shape` returns the product's text, made only for an error (a product is queued every few
// microseconds in a decode step).
template <class Shape>
void check_lt(cublasStatus_t status, const char* call, const Shape& shape) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw DeviceError(std::string(call) + " [" + shape() + "]: " + cublaslt().GetStatusName(status) + " (" +
                      cublaslt().GetStatusString(status) + ")");
}

// The largest power of two (at most 256) that divides the address: cuBLASLt's heuristic assumes
// 256-byte aligned operands unless told otherwise, and an algorithm chosen for aligned operands may
// not run on rows that start inside a buffer.
uint32_t alignment(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align != 0) align /= 2;
  return align;
}

std::string shape_text(int64_t m, int64_t n, int64_t k, GemmOutput out) {
  return "bf16_gemm M=" + std::to_string(m) + " N=" + std::to_string(n) + " K=" + std::to_string(k) +
         (out == GemmOutput::F32 ? " out=F32" : " out=BF16");
}

}  // namespace

// Row-major y[M, N] = x[M, K]·W[N, K]ᵀ is, read column-major, yᵀ[N, M] = W·xᵀ: A = W seen as a
// column-major K×N matrix (ld K) transposed, B = x seen as column-major K×M (ld K), D = yᵀ (ld N).
// This "TN" layout is the one cuBLAS serves best.
struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (d) cublaslt().MatrixLayoutDestroy(d);
    if (b) cublaslt().MatrixLayoutDestroy(b);
    if (a) cublaslt().MatrixLayoutDestroy(a);
    if (desc) cublaslt().MatmulDescDestroy(desc);
  }
};

struct PlanKey {
  int64_t m, n, k;
  GemmOutput out;
  uint32_t align_x, align_w, align_y;
  bool f32_operands = false;     // F32 x and W (full F32 products) instead of BF16
  int64_t ldx = 0, ldy = 0;      // row strides of x and y (0: dense)
  auto operator<=>(const PlanKey&) const = default;
};

struct CublasGemm::Impl {
  cublasLtHandle_t handle = nullptr;
  DeviceBuffer workspace;
  CublasGemm::Bf16Partials partials = CublasGemm::Bf16Partials::F32Only;
  mutable std::mutex mu;
  std::map<PlanKey, std::unique_ptr<Plan>> plans;

  template <class Shape>
  const Plan& plan(const PlanKey& key, const Shape& shape) {
    std::lock_guard lock(mu);
    auto it = plans.find(key);
    if (it != plans.end()) return *it->second;
    auto p = std::make_unique<Plan>();
    const auto m = static_cast<uint64_t>(key.m), n = static_cast<uint64_t>(key.n), k = static_cast<uint64_t>(key.k);
    const cudaDataType_t out_type = key.out == GemmOutput::F32 ? CUDA_R_32F : CUDA_R_16BF;
    const cudaDataType_t in_type = key.f32_operands ? CUDA_R_32F : CUDA_R_16BF;
    const int64_t ldx = key.ldx ? key.ldx : key.k, ldy = key.ldy ? key.ldy : key.n;
    check_lt(cublaslt().MatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate", shape);
    const cublasOperation_t transpose = CUBLAS_OP_T, plain = CUBLAS_OP_N;
    check_lt(cublaslt().MatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose)),
             "cublasLtMatmulDescSetAttribute(TRANSA)", shape);
    check_lt(cublaslt().MatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &plain, sizeof(plain)),
             "cublasLtMatmulDescSetAttribute(TRANSB)", shape);
    check_lt(cublaslt().MatrixLayoutCreate(&p->a, in_type, k, n, key.k), "cublasLtMatrixLayoutCreate(W)", shape);
    check_lt(cublaslt().MatrixLayoutCreate(&p->b, in_type, k, m, ldx), "cublasLtMatrixLayoutCreate(x)", shape);
    check_lt(cublaslt().MatrixLayoutCreate(&p->d, out_type, n, m, ldy), "cublasLtMatrixLayoutCreate(y)", shape);

    cublasLtMatmulPreference_t pref = nullptr;
    check_lt(cublaslt().MatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate", shape);
    struct PrefGuard {
      cublasLtMatmulPreference_t p;
      ~PrefGuard() { cublaslt().MatmulPreferenceDestroy(p); }
    } guard{pref};
    const uint64_t ws = workspace.bytes();
    check_lt(cublaslt().MatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
             "cublasLtMatmulPreferenceSetAttribute(workspace)", shape);
    // A BF16 output keeps the contract "one rounding of the F32 sum": split-K partial sums stay in
    // F32 (in the workspace), never in the output type. F32 outputs may use any scheme.
    if (key.out == GemmOutput::Bf16 && partials == CublasGemm::Bf16Partials::F32Only) {
      const uint32_t schemes = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
      check_lt(cublaslt().MatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &schemes, sizeof(schemes)),
               "cublasLtMatmulPreferenceSetAttribute(reduction scheme)", shape);
    }
    const std::tuple<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligns[] = {
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_w},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_x},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_y},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_y}};
    for (const auto& [attr, value] : aligns)
      check_lt(cublaslt().MatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value)),
               "cublasLtMatmulPreferenceSetAttribute(alignment)", shape);
    cublasLtMatmulHeuristicResult_t results[8] = {};
    int found = 0;
    check_lt(cublaslt().MatmulAlgoGetHeuristic(handle, p->desc, p->a, p->b, p->d, p->d, pref, 8, results, &found),
             "cublasLtMatmulAlgoGetHeuristic", shape);
    int chosen = -1;
    for (int i = 0; i < found && chosen < 0; ++i)
      if (results[i].state == CUBLAS_STATUS_SUCCESS && results[i].workspaceSize <= ws) chosen = i;
    if (chosen < 0)
      throw DeviceError("cublasLtMatmulAlgoGetHeuristic [" + shape() + "]: no algorithm for this problem (" +
                        std::to_string(found) + " candidates)");
    p->algo = results[chosen].algo;
    p->workspace = results[chosen].workspaceSize;
    return *plans.emplace(key, std::move(p)).first->second;
  }
};

CublasGemm::CublasGemm(size_t workspace_bytes, Bf16Partials partials) : impl_(std::make_unique<Impl>()) {
  impl_->partials = partials;
  check_lt(cublaslt().Create(&impl_->handle), "cublasLtCreate", [] { return std::string("handle"); });
  try {
    impl_->workspace = DeviceBuffer(workspace_bytes, "cuBLASLt workspace");
  } catch (...) {
    cublaslt().Destroy(impl_->handle);
    throw;
  }
}

CublasGemm::~CublasGemm() {
  impl_->plans.clear();
  if (impl_->handle) cublaslt().Destroy(impl_->handle);
}

size_t CublasGemm::cached_plans() const {
  std::lock_guard lock(impl_->mu);
  return impl_->plans.size();
}

void CublasGemm::bf16_gemm(const uint16_t* x, const uint16_t* w, void* y, GemmOutput out, int64_t m, int64_t n,
                           int64_t k, StreamHandle stream, float alpha) {
  const auto shape = [&] { return shape_text(m, n, k, out); };
  if (m < 0 || n <= 0 || k <= 0) throw InputError(shape() + ": M must be >= 0, N and K positive");
  if (out != GemmOutput::F32 && out != GemmOutput::Bf16) throw InputError(shape() + ": unknown output type");
  if (m == 0) return;
  if (!x || !w || !y) throw InputError(shape() + ": null x, W or y");
  const PlanKey key{m, n, k, out, alignment(x), alignment(w), alignment(y)};
  const Plan& p = impl_->plan(key, shape);
  const float beta = 0.0f;
  check_lt(cublaslt().Matmul(impl_->handle, p.desc, &alpha, w, p.a, x, p.b, &beta, y, p.d, y, p.d, &p.algo,
                          impl_->workspace.data(), p.workspace, stream),
           "cublasLtMatmul", shape);
}

void CublasGemm::f32_gemm(const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, int64_t m, int64_t n,
                          int64_t k, StreamHandle stream) {
  const auto shape = [&] {
    return "f32_gemm M=" + std::to_string(m) + " N=" + std::to_string(n) + " K=" + std::to_string(k) +
           " ldx=" + std::to_string(ldx) + " ldy=" + std::to_string(ldy);
  };
  if (m < 0 || n <= 0 || k <= 0 || ldx < k || ldy < n)
    throw InputError(shape() + ": M must be >= 0, N and K positive, ldx >= K, ldy >= N");
  if (m == 0) return;
  if (!x || !w || !y) throw InputError(shape() + ": null x, W or y");
  PlanKey key{m, n, k, GemmOutput::F32, alignment(x), alignment(w), alignment(y)};
  key.f32_operands = true;
  key.ldx = ldx;
  key.ldy = ldy;
  const Plan& p = impl_->plan(key, shape);
  const float alpha = 1.0f, beta = 0.0f;
  check_lt(cublaslt().Matmul(impl_->handle, p.desc, &alpha, w, p.a, x, p.b, &beta, y, p.d, y, p.d, &p.algo,
                          impl_->workspace.data(), p.workspace, stream),
           "cublasLtMatmul", shape);
}

}  // namespace fp4kit::cuda
