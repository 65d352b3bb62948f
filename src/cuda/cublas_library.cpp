#include "cuda/cublas_library.h"

#include "base/error.h"
#include "cuda/toolkit_library.h"

namespace fp4kit::cuda {

namespace {

// The soname of the cuBLAS the headers belong to, e.g. libcublas.so.13.
std::string cublas_soname() { return "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR); }

CublasLibrary load_cublas() {
  void* h = open_toolkit_library(cublas_soname(), "cuBLAS, needed for GPTQ and XᵀX statistics on the GPU");
  CublasLibrary l{};
  resolve_symbol(h, l.Create, "cublasCreate_v2", cublas_soname());
  resolve_symbol(h, l.Destroy, "cublasDestroy_v2", cublas_soname());
  resolve_symbol(h, l.SetStream, "cublasSetStream_v2", cublas_soname());
  resolve_symbol(h, l.SetMathMode, "cublasSetMathMode", cublas_soname());
  resolve_symbol(h, l.GetStatusName, "cublasGetStatusName", cublas_soname());
  resolve_symbol(h, l.GetStatusString, "cublasGetStatusString", cublas_soname());
  resolve_symbol(h, l.Strsm, "cublasStrsm_v2", cublas_soname());
  resolve_symbol(h, l.Sgemm, "cublasSgemm_v2", cublas_soname());
  resolve_symbol(h, l.Dsyrk, "cublasDsyrk_v2", cublas_soname());
  return l;
}

}  // namespace

const CublasLibrary& cublas() {
  static const CublasLibrary library = load_cublas();  // a failed load throws, and the next call retries
  return library;
}

void check_cublas(cublasStatus_t status, const char* call, const std::string& shape) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw DeviceError(std::string(call) + " [" + shape + "]: " + cublas().GetStatusName(status) + " (" +
                      cublas().GetStatusString(status) + ")");
}

}  // namespace fp4kit::cuda
