#include "cuda/cublaslt_library.h"

#include <dlfcn.h>

#include <string>

#include "base/error.h"

namespace fp4kit::cuda {

namespace {

// The soname of the cuBLASLt the headers belong to, e.g. libcublasLt.so.13.
std::string soname() { return "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR); }

void* open_library() {
  const std::string name = soname();
  void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h) return h;
  const std::string first_error = dlerror();
#ifdef FP4KIT_CUDA_LIBRARY_DIR
  h = dlopen((std::string(FP4KIT_CUDA_LIBRARY_DIR) + "/" + name).c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h) return h;
#endif
  throw DeviceError("cannot open " + name + " (cuBLASLt, needed for the GPU's dense products): " + first_error);
}

template <typename F>
void resolve(void* h, F& f, const char* symbol) {
  f = reinterpret_cast<F>(dlsym(h, symbol));
  if (!f) throw DeviceError("cuBLASLt (" + soname() + ") has no " + symbol);
}

CublasLtLibrary load() {
  void* h = open_library();  // kept open for the life of the process
  CublasLtLibrary l{};
  resolve(h, l.Create, "cublasLtCreate");
  resolve(h, l.Destroy, "cublasLtDestroy");
  resolve(h, l.GetStatusName, "cublasLtGetStatusName");
  resolve(h, l.GetStatusString, "cublasLtGetStatusString");
  resolve(h, l.Matmul, "cublasLtMatmul");
  resolve(h, l.MatmulAlgoGetHeuristic, "cublasLtMatmulAlgoGetHeuristic");
  resolve(h, l.MatmulDescCreate, "cublasLtMatmulDescCreate");
  resolve(h, l.MatmulDescDestroy, "cublasLtMatmulDescDestroy");
  resolve(h, l.MatmulDescSetAttribute, "cublasLtMatmulDescSetAttribute");
  resolve(h, l.MatmulPreferenceCreate, "cublasLtMatmulPreferenceCreate");
  resolve(h, l.MatmulPreferenceDestroy, "cublasLtMatmulPreferenceDestroy");
  resolve(h, l.MatmulPreferenceSetAttribute, "cublasLtMatmulPreferenceSetAttribute");
  resolve(h, l.MatrixLayoutCreate, "cublasLtMatrixLayoutCreate");
  resolve(h, l.MatrixLayoutDestroy, "cublasLtMatrixLayoutDestroy");
  return l;
}

}  // namespace

const CublasLtLibrary& cublaslt() {
  static const CublasLtLibrary library = load();  // a failed load throws, and the next call retries
  return library;
}

}  // namespace fp4kit::cuda
