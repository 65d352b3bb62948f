#include "cuda/cublas_library.h"

#include "base/error.h"
#include "cuda/toolkit_library.h"

namespace fp4kit::cuda {

namespace {

// The soname of the cuBLAS the headers belong to, e.g. libcublas.so.13.
std::string soname() { return "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR); }

CublasLibrary load() {
  void* h = open_toolkit_library(soname(), "cuBLAS, needed for GPTQ and XᵀX statistics on the GPU");
  CublasLibrary l{};
  resolve_symbol(h, l.Create, "cublasCreate_v2", soname());
  resolve_symbol(h, l.Destroy, "cublasDestroy_v2", soname());
  resolve_symbol(h, l.SetStream, "cublasSetStream_v2", soname());
  resolve_symbol(h, l.SetMathMode, "cublasSetMathMode", soname());
  resolve_symbol(h, l.GetStatusName, "cublasGetStatusName", soname());
  resolve_symbol(h, l.GetStatusString, "cublasGetStatusString", soname());
  resolve_symbol(h, l.Strsm, "cublasStrsm_v2", soname());
  resolve_symbol(h, l.Sgemm, "cublasSgemm_v2", soname());
  resolve_symbol(h, l.Dsyrk, "cublasDsyrk_v2", soname());
  return l;
}

}  // namespace

const CublasLibrary& cublas() {
  static const CublasLibrary library = load();  // a failed load throws, and the next call retries
  return library;
}

void check_cublas(cublasStatus_t status, const char* call, const std::string& shape) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw DeviceError(std::string(call) + " [" + shape + "]: " + cublas().GetStatusName(status) + " (" +
                      cublas().GetStatusString(status) + ")");
}

}  // namespace fp4kit::cuda
