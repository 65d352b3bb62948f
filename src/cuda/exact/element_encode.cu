// The device element encoders (encoders.cuh, codecs.cuh) over an array, so tests can compare every
// interesting f32 against the CPU codecs.
#include "cuda/codecs.cuh"
#include "cuda/dependent_launch.cuh"
#include "cuda/element_encoders.h"
#include "cuda/exact/encoders.cuh"
#include "cuda/exact/launch.cuh"

namespace fp4kit::cuda {

namespace {

__global__ void encode_elements_kernel(const float* __restrict__ in, size_t n, ElementEncoding encoding,
                                       uint16_t* __restrict__ out) {
  wait_for_previous_grid();  // launched dependent: nothing read before this
  allow_next_grid();  // the next product may launch now (cuda/dependent_launch.cuh)
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float x = in[i];
    uint32_t r = 0;
    switch (encoding) {
      case ElementEncoding::E4M3: r = float_to_e4m3(x); break;
      case ElementEncoding::E4M3Saturate: r = float_to_e4m3_saturate(x); break;
      case ElementEncoding::E2M1: r = float_to_e2m1(x); break;
      case ElementEncoding::F16: r = float_to_f16_bits(x); break;
      case ElementEncoding::BF16: r = float_to_bf16_bits(x); break;
    }
    out[i] = static_cast<uint16_t>(r);
  }
}

}  // namespace

void encode_elements(const float* in, size_t n, ElementEncoding encoding, uint16_t* out, StreamHandle stream) {
  constexpr const char* kKernel = "encode_elements";
  const std::string shape = "n=" + std::to_string(n);
  if (n == 0) return;
  require_pointer(in, "in", kKernel, shape);
  require_pointer(out, "out", kKernel, shape);
  check(launch_dependent(encode_elements_kernel, dim3(grid_blocks(n, 256)), dim3(256), 0, stream, in, n, encoding, out),
        "encode_elements launch");
  check_launch(kKernel, shape);
}

}  // namespace fp4kit::cuda
