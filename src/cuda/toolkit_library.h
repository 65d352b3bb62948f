#pragma once
// Opening a CUDA toolkit library (cuBLASLt, cuBLAS, cuSOLVER) with dlopen on first use rather than
// linking it: linking would cost every process the libraries' static initializers at start, GPU
// or not. Plain C++ header.
#include <dlfcn.h>

#include <string>

#include "base/error.h"

namespace fp4kit::cuda {

// The library by its soname, then in the toolkit's library directory the build found. The handle
// stays open for the life of the process. DeviceError naming the library, `purpose` and dlerror()'s
// reason when it cannot be opened.
void* open_toolkit_library(const std::string& soname, const std::string& purpose);

// `f` = the symbol's address; DeviceError naming the library and the symbol when it is missing.
template <typename F>
void resolve_symbol(void* library, F& f, const char* symbol, const std::string& soname) {
  f = reinterpret_cast<F>(dlsym(library, symbol));
  if (!f) throw DeviceError(soname + " has no " + symbol);
}

}  // namespace fp4kit::cuda
