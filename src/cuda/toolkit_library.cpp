#include "cuda/toolkit_library.h"

namespace fp4kit::cuda {

void* open_toolkit_library(const std::string& soname, const std::string& purpose) {
  void* h = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h) return h;
  const std::string first_error = dlerror();
#ifdef FP4KIT_CUDA_LIBRARY_DIR
  h = dlopen((std::string(FP4KIT_CUDA_LIBRARY_DIR) + "/" + soname).c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h) return h;
#endif
  throw DeviceError("cannot open " + soname + " (" + purpose + "): " + first_error);
}

}  // namespace fp4kit::cuda
