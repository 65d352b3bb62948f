#include "cuda/cublas_library.h"

#include <dlfcn.h>

#include "base/error.h"

namespace fp4kit::cuda {

namespace {

// The soname of the cuBLAS the headers belong to, e.g. libcublas.so.13.
std::string soname() { return "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR); }

void* open_library() {
  const std::string name = soname();
  void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h) return h;
  const std::string first_error = dlerror();
#ifdef FP4KIT_CUDA_LIBRARY_DIR
  h = dlopen((std::string(FP4KIT_CUDA_LIBRARY_DIR) + "/" + name).c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h) return h;
#endif
  throw DeviceError("cannot open " + name + " (cuBLAS, needed for GPTQ on the GPU): " + first_error);
}

template <typename F>
void resolve(void* h, F& f, const char* symbol) {
  f = reinterpret_cast<F>(dlsym(h, symbol));
  if (!f) throw DeviceError("cuBLAS (" + soname() + ") has no " + symbol);
}

CublasLibrary load() {
  void* h = open_library();  // kept open for the life of the process
  CublasLibrary l{};
  resolve(h, l.Create, "cublasCreate_v2");
  resolve(h, l.Destroy, "cublasDestroy_v2");
  resolve(h, l.SetStream, "cublasSetStream_v2");
  resolve(h, l.SetMathMode, "cublasSetMathMode");
  resolve(h, l.GetStatusName, "cublasGetStatusName");
  resolve(h, l.GetStatusString, "cublasGetStatusString");
  resolve(h, l.Strsm, "cublasStrsm_v2");
  resolve(h, l.Sgemm, "cublasSgemm_v2");
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
