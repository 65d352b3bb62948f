// The CPU-only build: no CUDA compiler was found when fp4kit was configured.
#include "base/error.h"
#include "gpu_engine/gpu_forward.h"

namespace fp4kit::gpu_engine {

struct GpuForward::Impl {};

GpuForward::GpuForward(const std::string&) {
  throw InputError("--device cuda: this fp4kit was built without CUDA (no nvcc at configure time)");
}
GpuForward::~GpuForward() = default;
const engine::ModelConfig& GpuForward::config() const {
  throw InputError("--device cuda: this fp4kit was built without CUDA");
}
std::vector<float> GpuForward::forward(const std::vector<int64_t>&, int64_t, std::vector<double>*) {
  throw InputError("--device cuda: this fp4kit was built without CUDA");
}

}  // namespace fp4kit::gpu_engine
