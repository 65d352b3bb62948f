// The CPU-only build: the weight GEMMs exist only with CUDA.
#include "base/error.h"
#include "cuda/weight_gemm.h"

namespace fp4kit::cuda {

void weight_gemm(const uint16_t*, int64_t, const GemmWeight&, void*, GemmOutput, StreamHandle) {
  throw InputError("weight_gemm: this fp4kit was built without CUDA");
}

bool batched_weight_gemm_takes(WeightFormat, int64_t, int64_t, int64_t) { return false; }

void batched_weight_gemm(const BatchedGemm&, StreamHandle) {
  throw InputError("batched_weight_gemm: this fp4kit was built without CUDA");
}

bool weight_gemm_swiglu_takes(const GemmWeight&, const GemmWeight&, int64_t) { return false; }

void weight_gemm_swiglu(const uint16_t*, int64_t, const GemmWeight&, const GemmWeight&, float, void*, GemmOutput,
                        StreamHandle) {
  throw InputError("weight_gemm_swiglu: this fp4kit was built without CUDA");
}

void grouped_weight_gemm(const GroupedGemm&, StreamHandle) {
  throw InputError("grouped_weight_gemm: this fp4kit was built without CUDA");
}

}  // namespace fp4kit::cuda
