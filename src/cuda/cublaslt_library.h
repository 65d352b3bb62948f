#pragma once
// cuBLASLt, opened on first use. Linking libcublasLt makes every process that loads fp4kit pay its
// static initializers (about 0.4 s on each start, whether or not it ever multiplies on the GPU);
// opening it with dlopen the first time a product needs it keeps `fp4kit --help`, the CPU commands
// and the test processes free of that cost. Internal to src/cuda/ (it names cuBLASLt's types).
#include <cublasLt.h>

namespace fp4kit::cuda {

// The cuBLASLt entry points fp4kit calls, resolved from the shared library.
struct CublasLtLibrary {
  decltype(&::cublasLtCreate) Create;
  decltype(&::cublasLtDestroy) Destroy;
  decltype(&::cublasLtGetStatusName) GetStatusName;
  decltype(&::cublasLtGetStatusString) GetStatusString;
  decltype(&::cublasLtMatmul) Matmul;
  decltype(&::cublasLtMatmulAlgoGetHeuristic) MatmulAlgoGetHeuristic;
  decltype(&::cublasLtMatmulDescCreate) MatmulDescCreate;
  decltype(&::cublasLtMatmulDescDestroy) MatmulDescDestroy;
  decltype(&::cublasLtMatmulDescSetAttribute) MatmulDescSetAttribute;
  decltype(&::cublasLtMatmulPreferenceCreate) MatmulPreferenceCreate;
  decltype(&::cublasLtMatmulPreferenceDestroy) MatmulPreferenceDestroy;
  decltype(&::cublasLtMatmulPreferenceSetAttribute) MatmulPreferenceSetAttribute;
  decltype(&::cublasLtMatrixLayoutCreate) MatrixLayoutCreate;
  decltype(&::cublasLtMatrixLayoutDestroy) MatrixLayoutDestroy;
};

// The library, opened once (thread-safe): first by its soname (LD_LIBRARY_PATH, the loader's
// cache), then in the toolkit's library directory the build found. DeviceError naming the library
// and dlerror()'s reason when it cannot be opened or lacks a symbol.
const CublasLtLibrary& cublaslt();

}  // namespace fp4kit::cuda
