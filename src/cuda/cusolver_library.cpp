#include "cuda/cusolver_library.h"

#include "base/error.h"
#include "cuda/toolkit_library.h"

namespace fp4kit::cuda {

namespace {

// The soname of the cuSOLVER the headers belong to, e.g. libcusolver.so.12.
std::string cusolver_soname() { return "libcusolver.so." + std::to_string(CUSOLVER_VER_MAJOR); }

CusolverLibrary load_cusolver() {
  void* h = open_toolkit_library(cusolver_soname(), "cuSOLVER, needed for GPTQ on the GPU");
  CusolverLibrary l{};
  resolve_symbol(h, l.Create, "cusolverDnCreate", cusolver_soname());
  resolve_symbol(h, l.Destroy, "cusolverDnDestroy", cusolver_soname());
  resolve_symbol(h, l.SetStream, "cusolverDnSetStream", cusolver_soname());
  resolve_symbol(h, l.SpotrfBufferSize, "cusolverDnSpotrf_bufferSize", cusolver_soname());
  resolve_symbol(h, l.Spotrf, "cusolverDnSpotrf", cusolver_soname());
  return l;
}

// cuSOLVER has no function that names its status codes.
const char* status_name(cusolverStatus_t s) {
  switch (s) {
    case CUSOLVER_STATUS_SUCCESS: return "CUSOLVER_STATUS_SUCCESS";
    case CUSOLVER_STATUS_NOT_INITIALIZED: return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED: return "CUSOLVER_STATUS_ALLOC_FAILED";
    case CUSOLVER_STATUS_INVALID_VALUE: return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH: return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_EXECUTION_FAILED: return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR: return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_NOT_SUPPORTED: return "CUSOLVER_STATUS_NOT_SUPPORTED";
    case CUSOLVER_STATUS_INVALID_WORKSPACE: return "CUSOLVER_STATUS_INVALID_WORKSPACE";
    default: return "cuSOLVER status";
  }
}

}  // namespace

const CusolverLibrary& cusolver() {
  static const CusolverLibrary library = load_cusolver();  // a failed load throws, and the next call retries
  return library;
}

void check_cusolver(cusolverStatus_t status, const char* call, const std::string& shape) {
  if (status != CUSOLVER_STATUS_SUCCESS)
    throw DeviceError(std::string(call) + " [" + shape + "]: " + status_name(status) + " (" +
                      std::to_string(static_cast<int>(status)) + ")");
}

}  // namespace fp4kit::cuda
