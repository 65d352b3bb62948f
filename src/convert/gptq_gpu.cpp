#include "convert/gptq_gpu.h"

#include "base/error.h"
#include "cuda/device.h"
#include "cuda/gptq.h"

namespace fp4kit {

namespace {

// The device, or InputError with the reason there is none (a build without CUDA, no driver, no GPU).
std::unique_ptr<cuda::GptqDevice> open_device() {
  std::string why;
  if (!cuda::probe(0, &why)) throw InputError("GPTQ on the GPU: " + why);
  return std::make_unique<cuda::GptqDevice>();
}

}  // namespace

GptqGpu::GptqGpu() : device_(open_device()) {}
GptqGpu::~GptqGpu() = default;

GptqFactor GptqGpu::factor(const std::vector<double>& h, size_t k, const GptqOptions& options) {
  GptqPrepared p = gptq_prepare(h, k, options);
  GptqFactor f;
  f.k = k;
  f.order = std::move(p.order);
  if (!p.usable) {
    f.why = std::move(p.why);
    return f;
  }
  device_->set_matrix(h.data(), k, f.order.data());
  const double lambda =
      gptq_damping_search(options.damping, [&](double l) { return device_->factor(l * p.diag_mean); }, f.why);
  if (lambda < 0) return f;
  f.damping = lambda;
  f.usable = true;
  return f;
}

std::vector<double> GptqGpu::factor_u() const {
  const std::vector<float> u = device_->u();
  return std::vector<double>(u.begin(), u.end());
}

GptqRowStats GptqGpu::quantize_rows(FloatSpan src, size_t k, const uint8_t* scales, const Nvfp4Scaling& scaling,
                                    const GptqFactor& factor, size_t block, uint8_t* packed) {
  if (!factor.usable) return nvfp4_gptq_quantize_rows(src, k, scales, scaling, factor, block, packed);
  if (factor.k != k) throw InputError("GPTQ on the GPU: a factor of k = " + std::to_string(factor.k) + " for rows of " +
                                      std::to_string(k) + " values");
  cuda::GptqScaleTables tables;
  for (unsigned s = 0; s < 256; ++s) {
    tables.divisor[s] = nvfp4_quant_divisor(static_cast<uint8_t>(s), scaling);
    tables.multiplier[s] = nvfp4_dequant_multiplier(static_cast<uint8_t>(s), scaling);
  }
  return device_->quantize_rows(src, k, scales, tables, block, packed);
}

}  // namespace fp4kit
