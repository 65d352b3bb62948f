#include "cuda/w4a4_emulation.h"

#include <cmath>
#include <string>

#include "base/error.h"

namespace fp4kit::cuda {

size_t w4a4_workspace_bytes(int64_t m, int64_t k) {
  return m > 0 && k > 0 ? static_cast<size_t>(m) * static_cast<size_t>(k) * sizeof(uint16_t) : 0;
}

void w4a4_gemm(const uint16_t* x, int64_t m, const GemmWeight& w, float input_scale, void* y, GemmOutput out,
               void* workspace, size_t workspace_bytes, StreamHandle stream, ActivationQuantMath math) {
  const std::string shape = "M=" + std::to_string(m) + " N=" + std::to_string(w.n) + " K=" + std::to_string(w.k);
  if (w.format != WeightFormat::Nvfp4) throw InputError("w4a4_gemm [" + shape + "]: the weight must be NVFP4");
  if (!std::isfinite(input_scale) || !(input_scale > 0.0f))
    throw InputError("w4a4_gemm [" + shape + "]: input_scale must be finite and > 0, got " + std::to_string(input_scale));
  if (m < 0) throw InputError("w4a4_gemm [" + shape + "]: M < 0");
  if (m == 0) return;
  if (workspace == nullptr || workspace_bytes < w4a4_workspace_bytes(m, w.k))
    throw InputError("w4a4_gemm [" + shape + "]: the workspace needs " + std::to_string(w4a4_workspace_bytes(m, w.k)) +
                     " bytes, got " + std::to_string(workspace_bytes));
  // vLLM: input_global_scale_inv = (1.0 / input_scale) in F32; alpha = input_scale * weight_scale_2.
  const float global_scale = 1.0f / input_scale;
  auto* xq = static_cast<uint16_t*>(workspace);
  fake_quantize_activation(x, m, w.k, global_scale, 1.0f, xq, stream, math);
  GemmWeight scaled = w;
  scaled.global_scale = input_scale * w.global_scale;
  weight_gemm(xq, m, scaled, y, out, stream);
}

}  // namespace fp4kit::cuda
