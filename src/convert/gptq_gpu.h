#pragma once
// GPTQ on the GPU with the CPU path's decisions (formats/nvfp4_gptq.h): the same checks of H and
// reasons, the same processing order and damping schedule (gptq_prepare, gptq_damping_search), the
// same block scales and rounding rule (the divisors and multipliers of nvfp4_quant_divisor and
// nvfp4_dequant_multiplier, computed here on the CPU); the arithmetic in F32 on the device
// (cuda/gptq.h). The codes are therefore close to the CPU path's, not identical: different
// precision and summation order move values that lie near a rounding boundary, and GPTQ carries
// each changed rounding on to the later columns (tests/cuda/gptq_test.cpp states the bounds).
// Where the GPU path decides differently from the CPU: a damping succeeds when F32 potrf finds the
// damped matrix positive definite and U is finite (the CPU: both of its F64 Cholesky factorizations
// succeed), and a --gptq-block above 128 columns runs in batches of 128 (the same sums in exact
// arithmetic, grouped differently).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "formats/float_span.h"
#include "formats/nvfp4.h"
#include "formats/nvfp4_gptq.h"

namespace fp4kit {

namespace cuda {
class GptqDevice;
}

class GptqGpu {
 public:
  // On CUDA device 0 (the one --device cuda means). InputError with the reason where there is no
  // GPU or the build has no CUDA; DeviceError when the device, cuBLAS or cuSOLVER fail.
  GptqGpu();
  ~GptqGpu();
  GptqGpu(const GptqGpu&) = delete;
  GptqGpu& operator=(const GptqGpu&) = delete;

  // gptq_factor on the GPU. The result has k, order, damping, usable and why as gptq_factor sets
  // them; its u stays empty: U stays on the device for quantize_rows (factor_u() copies it out).
  GptqFactor factor(const std::vector<double>& h, size_t k, const GptqOptions& options);

  // U of the last usable factor() as GptqFactor::u holds it (k×k, row-major, processing order).
  std::vector<double> factor_u() const;

  // nvfp4_gptq_quantize_rows with the last factor() (`factor` is what it returned): the same
  // arguments and meaning. A factor that is not usable gives the CPU path's plain rounding.
  GptqRowStats quantize_rows(FloatSpan src, size_t k, const uint8_t* scales, const Nvfp4Scaling& scaling,
                             const GptqFactor& factor, size_t block, uint8_t* packed);

 private:
  std::unique_ptr<cuda::GptqDevice> device_;
};

}  // namespace fp4kit
