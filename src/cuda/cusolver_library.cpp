#include "cuda/cusolver_library.h"

#include <dlfcn.h>

#include "base/error.h"

namespace fp4kit::cuda {

namespace {

// The soname of the cuSOLVER the headers belong to, e.g. libcusolver.so.12.
std::string soname() { return "libcusolver.so." + std::to_string(CUSOLVER_VER_MAJOR); }

void* open_library() {
  const std::string name = soname();
  void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h) return h;
  const std::string first_error = dlerror();
#ifdef FP4KIT_CUDA_LIBRARY_DIR
  h = dlopen((std::string(FP4KIT_CUDA_LIBRARY_DIR) + "/" + name).c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h) return h;
#endif
  throw DeviceError("cannot open " + name + " (cuSOLVER, needed for GPTQ on the GPU): " + first_error);
}

template <typename F>
void resolve(void* h, F& f, const char* symbol) {
  f = reinterpret_cast<F>(dlsym(h, symbol));
  if (!f) throw DeviceError("cuSOLVER (" + soname() + ") has no " + symbol);
}

CusolverLibrary load() {
  void* h = open_library();  // kept open for the life of the process
  CusolverLibrary l{};
  resolve(h, l.Create, "cusolverDnCreate");
  resolve(h, l.Destroy, "cusolverDnDestroy");
  resolve(h, l.SetStream, "cusolverDnSetStream");
  resolve(h, l.SpotrfBufferSize, "cusolverDnSpotrf_bufferSize");
  resolve(h, l.Spotrf, "cusolverDnSpotrf");
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
  static const CusolverLibrary library = load();  // a failed load throws, and the next call retries
  return library;
}

void check_cusolver(cusolverStatus_t status, const char* call, const std::string& shape) {
  if (status != CUSOLVER_STATUS_SUCCESS)
    throw DeviceError(std::string(call) + " [" + shape + "]: " + status_name(status) + " (" +
                      std::to_string(static_cast<int>(status)) + ")");
}

}  // namespace fp4kit::cuda
