#pragma once
// cuSOLVER's dense Cholesky (GPTQ's factor on the GPU), opened on first use like cuBLAS
// (cublas_library.h): libcusolver needs libcublas and libcublasLt, whose static initializers every
// process would otherwise pay at start. Internal to src/cuda/ (it names cuSOLVER's types).
#include <cusolverDn.h>

#include <string>

namespace fp4kit::cuda {

// The cuSOLVER entry points fp4kit calls, resolved from the shared library.
struct CusolverLibrary {
  decltype(&::cusolverDnCreate) Create;
  decltype(&::cusolverDnDestroy) Destroy;
  decltype(&::cusolverDnSetStream) SetStream;
  decltype(&::cusolverDnSpotrf_bufferSize) SpotrfBufferSize;
  decltype(&::cusolverDnSpotrf) Spotrf;
};

// The library, opened once (thread-safe): by its soname, then in the toolkit's library directory the
// build found. DeviceError naming the library and dlerror()'s reason when it cannot be opened or
// lacks a symbol.
const CusolverLibrary& cusolver();

// DeviceError "<call> [<shape>]: <status name>" unless `status` is success.
void check_cusolver(cusolverStatus_t status, const char* call, const std::string& shape);

}  // namespace fp4kit::cuda
