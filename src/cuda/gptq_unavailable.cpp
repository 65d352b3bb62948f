// The CPU-only build: GPTQ on the GPU exists only with CUDA.
#include "base/error.h"
#include "cuda/gptq.h"

namespace fp4kit::cuda {

struct GptqDevice::Impl {};

GptqDevice::GptqDevice() {
  throw InputError("--device cuda: this fp4kit was built without CUDA (no nvcc at configure time)");
}
GptqDevice::~GptqDevice() = default;
void GptqDevice::set_matrix(const double*, size_t, const size_t*) {}
bool GptqDevice::factor(double) { return false; }
std::vector<float> GptqDevice::u() const { return {}; }
GptqRowStats GptqDevice::quantize_rows(FloatSpan, size_t, const uint8_t*, const GptqScaleTables&, size_t, uint8_t*) {
  return {};
}

}  // namespace fp4kit::cuda
