// The CPU-only build: no CUDA compiler was found when fp4kit was configured.
#include "base/error.h"
#include "cuda/nvfp4_from_host.h"

namespace fp4kit::cuda {

namespace {
[[noreturn]] void unavailable() {
  throw InputError("--device cuda: this fp4kit was built without CUDA (no nvcc at configure time)");
}
}  // namespace

float nvfp4_amax_from_host(FloatSpan) { unavailable(); }
void nvfp4_quantize_from_host(FloatSpan, const Nvfp4Scaling&, uint8_t*, uint8_t*) { unavailable(); }

}  // namespace fp4kit::cuda
