#include "cuda/cublaslt_library.h"

#include <string>

#include "base/error.h"
#include "cuda/toolkit_library.h"

namespace fp4kit::cuda {

namespace {

// The soname of the cuBLASLt the headers belong to, e.g. libcublasLt.so.13.
std::string cublaslt_soname() { return "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR); }

CublasLtLibrary load_cublaslt() {
  void* h = open_toolkit_library(cublaslt_soname(), "cuBLASLt, needed for the GPU's dense products");
  CublasLtLibrary l{};
  resolve_symbol(h, l.Create, "cublasLtCreate", cublaslt_soname());
  resolve_symbol(h, l.Destroy, "cublasLtDestroy", cublaslt_soname());
  resolve_symbol(h, l.GetStatusName, "cublasLtGetStatusName", cublaslt_soname());
  resolve_symbol(h, l.GetStatusString, "cublasLtGetStatusString", cublaslt_soname());
  resolve_symbol(h, l.Matmul, "cublasLtMatmul", cublaslt_soname());
  resolve_symbol(h, l.MatmulAlgoGetHeuristic, "cublasLtMatmulAlgoGetHeuristic", cublaslt_soname());
  resolve_symbol(h, l.MatmulDescCreate, "cublasLtMatmulDescCreate", cublaslt_soname());
  resolve_symbol(h, l.MatmulDescDestroy, "cublasLtMatmulDescDestroy", cublaslt_soname());
  resolve_symbol(h, l.MatmulDescSetAttribute, "cublasLtMatmulDescSetAttribute", cublaslt_soname());
  resolve_symbol(h, l.MatmulPreferenceCreate, "cublasLtMatmulPreferenceCreate", cublaslt_soname());
  resolve_symbol(h, l.MatmulPreferenceDestroy, "cublasLtMatmulPreferenceDestroy", cublaslt_soname());
  resolve_symbol(h, l.MatmulPreferenceSetAttribute, "cublasLtMatmulPreferenceSetAttribute", cublaslt_soname());
  resolve_symbol(h, l.MatrixLayoutCreate, "cublasLtMatrixLayoutCreate", cublaslt_soname());
  resolve_symbol(h, l.MatrixLayoutDestroy, "cublasLtMatrixLayoutDestroy", cublaslt_soname());
  return l;
}

}  // namespace

const CublasLtLibrary& cublaslt() {
  static const CublasLtLibrary library = load_cublaslt();  // a failed load throws, and the next call retries
  return library;
}

}  // namespace fp4kit::cuda
