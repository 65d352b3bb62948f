#include "cuda/cublaslt_library.h"

#include <string>

#include "base/error.h"
#include "cuda/toolkit_library.h"

namespace fp4kit::cuda {

namespace {

// The soname of the cuBLASLt the headers belong to, e.g. libcublasLt.so.13.
std::string soname() { return "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR); }

CublasLtLibrary load() {
  void* h = open_toolkit_library(soname(), "cuBLASLt, needed for the GPU's dense products");
  CublasLtLibrary l{};
  resolve_symbol(h, l.Create, "cublasLtCreate", soname());
  resolve_symbol(h, l.Destroy, "cublasLtDestroy", soname());
  resolve_symbol(h, l.GetStatusName, "cublasLtGetStatusName", soname());
  resolve_symbol(h, l.GetStatusString, "cublasLtGetStatusString", soname());
  resolve_symbol(h, l.Matmul, "cublasLtMatmul", soname());
  resolve_symbol(h, l.MatmulAlgoGetHeuristic, "cublasLtMatmulAlgoGetHeuristic", soname());
  resolve_symbol(h, l.MatmulDescCreate, "cublasLtMatmulDescCreate", soname());
  resolve_symbol(h, l.MatmulDescDestroy, "cublasLtMatmulDescDestroy", soname());
  resolve_symbol(h, l.MatmulDescSetAttribute, "cublasLtMatmulDescSetAttribute", soname());
  resolve_symbol(h, l.MatmulPreferenceCreate, "cublasLtMatmulPreferenceCreate", soname());
  resolve_symbol(h, l.MatmulPreferenceDestroy, "cublasLtMatmulPreferenceDestroy", soname());
  resolve_symbol(h, l.MatmulPreferenceSetAttribute, "cublasLtMatmulPreferenceSetAttribute", soname());
  resolve_symbol(h, l.MatrixLayoutCreate, "cublasLtMatrixLayoutCreate", soname());
  resolve_symbol(h, l.MatrixLayoutDestroy, "cublasLtMatrixLayoutDestroy", soname());
  return l;
}

}  // namespace

const CublasLtLibrary& cublaslt() {
  static const CublasLtLibrary library = load();  // a failed load throws, and the next call retries
  return library;
}

}  // namespace fp4kit::cuda
