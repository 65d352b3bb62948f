// The CPU-only build: no CUDA compiler was found when fp4kit was configured.
#include "cuda/device.h"

namespace fp4kit::cuda {

bool compiled() { return false; }
std::string compiled_archs() { return ""; }

std::optional<DeviceInfo> probe(int, std::string* why_not) {
  if (why_not)
    *why_not = "this fp4kit was built without CUDA (no nvcc at configure time; install the CUDA toolkit and "
               "reconfigure with -DFP4KIT_CUDA=ON)";
  return std::nullopt;
}

}  // namespace fp4kit::cuda
