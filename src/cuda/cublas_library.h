#pragma once
// cuBLAS (the classic API: triangular solves and F32 products with accumulation, for GPTQ's factor
// and batch updates; F64 rank-k updates, for XᵀX statistics), opened on first use like cuBLASLt (cublaslt_library.h) and for the same reason:
// linking it would make every process pay its static initializers at start. Internal to src/cuda/
// (it names cuBLAS's types).
#include <cublas_v2.h>

#include <string>

namespace fp4kit::cuda {

// The cuBLAS entry points fp4kit calls, resolved from the shared library.
struct CublasLibrary {
  decltype(&::cublasCreate_v2) Create;
  decltype(&::cublasDestroy_v2) Destroy;
  decltype(&::cublasSetStream_v2) SetStream;
  decltype(&::cublasSetMathMode) SetMathMode;
  decltype(&::cublasGetStatusName) GetStatusName;
  decltype(&::cublasGetStatusString) GetStatusString;
  decltype(&::cublasStrsm_v2) Strsm;
  decltype(&::cublasSgemm_v2) Sgemm;
  decltype(&::cublasDsyrk_v2) Dsyrk;
};

// The library, opened once (thread-safe): by its soname, then in the toolkit's library directory the
// build found. DeviceError naming the library and dlerror()'s reason when it cannot be opened or
// lacks a symbol.
const CublasLibrary& cublas();

// DeviceError "<call> [<shape>]: <status name> (<status text>)" unless `status` is success.
void check_cublas(cublasStatus_t status, const char* call, const std::string& shape);

}  // namespace fp4kit::cuda
