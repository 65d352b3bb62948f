#include "cuda/gemm_weight_bf16.h"

#include "base/error.h"
#include "cuda/weight_codecs.h"

namespace fp4kit::cuda {

bool decodes_to_bf16_exactly(const GemmWeight& w) {
  return w.format == WeightFormat::Bf16 || w.format == WeightFormat::Mxfp4 || w.format == WeightFormat::Nvfp4 ||
         (w.format == WeightFormat::Fp8Block && !w.fp8_scales_f32);
}

float gemm_weight_bf16_alpha(const GemmWeight& w) { return w.format == WeightFormat::Nvfp4 ? w.global_scale : 1.0f; }

const uint16_t* gemm_weight_bf16(const GemmWeight& w, uint16_t* scratch, StreamHandle stream) {
  if (!decodes_to_bf16_exactly(w))
    throw InputError("gemm_weight_bf16: a weight [" + std::to_string(w.n) + ", " + std::to_string(w.k) +
                     "] whose stored form does not decode to BF16 exactly");
  if (w.format == WeightFormat::Bf16) return static_cast<const uint16_t*>(w.data);
  const size_t n = static_cast<size_t>(w.n) * static_cast<size_t>(w.k);
  if (w.format == WeightFormat::Nvfp4) {
    nvfp4_block_values_bf16(static_cast<const uint8_t*>(w.data), static_cast<const uint8_t*>(w.scales), n, scratch, stream);
  } else if (w.format == WeightFormat::Mxfp4) {
    mxfp4_dequantize_bf16(static_cast<const uint8_t*>(w.data), static_cast<const uint8_t*>(w.scales), n, scratch, stream);
  } else {
    const Fp8BlockShape fs{static_cast<size_t>(w.n), static_cast<size_t>(w.k), Fp8ScaleKind::E8M0};
    fp8_block_dequantize_bf16(static_cast<const uint8_t*>(w.data), w.scales, fs, 0, fs.rows, scratch, stream);
  }
  return scratch;
}

}  // namespace fp4kit::cuda
