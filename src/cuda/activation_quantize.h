#pragma once
// NVFP4 activation quantization on the GPU, as a Blackwell W4A4 engine does it with a checkpoint's
// static input_scale (vLLM scaled_fp4_quant). The recipe, its sources and how the exact variant
// differs from the engines' fast one are in formats/nvfp4_activation.h; the Exact kernels match
// that CPU reference byte for byte. Runs on any GPU (the E2M1 cast is done in software, so sm_90
// works). Plain C++ header: no CUDA headers.
#include <cstddef>
#include <cstdint>

#include "cuda/runtime.h"
#include "formats/nvfp4_scale_layout.h"

namespace fp4kit::cuda {

enum class ActivationQuantMath : uint8_t {
  Exact,  // IEEE reciprocals: byte for byte quantize_activation_ref (formats/nvfp4_activation.h)
  Fast,   // vLLM's cvt_warp_fp16_to_fp4 term for term: rcp.approx.ftz, the hardware E4M3 cast, and
          // on Blackwell (sm_100a and family) the cvt.rn.satfinite.e2m1x2 instruction itself
};

// x BF16 [m, k] row-major (k a multiple of 16, x 16-byte aligned) -> packed U8 [m, k/2] (8-byte
// aligned; even element in the low nibble) and E4M3 scales, nvfp4_scale_bytes(m, k/16, layout)
// bytes. Swizzled128x4 also writes the padding (rows up to a multiple of 128, scale columns up to a
// multiple of 4) as zero bytes. global_scale = 1/input_scale, finite and > 0. m = 0 does nothing.
void quantize_activation(const uint16_t* x, int64_t m, int64_t k, float global_scale, Nvfp4ScaleLayout layout,
                         uint8_t* packed, uint8_t* scales, StreamHandle stream,
                         ActivationQuantMath math = ActivationQuantMath::Exact);

// out BF16 [m, k] = bf16((e2m1 * f32(SF)) * multiplier), as dequantize_activation_bf16_ref: exact
// with multiplier 1 (code 0x8 decodes as +0.0; a NaN scale gives 0x7FC0).
void dequantize_activation(const uint8_t* packed, const uint8_t* scales, Nvfp4ScaleLayout layout, int64_t m,
                           int64_t k, float multiplier, uint16_t* out, StreamHandle stream);

// Quantize then decode in one pass, without the packed intermediate: out BF16 [m, k] =
// bf16((e2m1 * f32(SF)) * multiplier), the same bits as quantize_activation followed by
// dequantize_activation. With multiplier 1 these are the activation values a W4A4 GEMM multiplies
// (before alpha), exactly.
void fake_quantize_activation(const uint16_t* x, int64_t m, int64_t k, float global_scale, float multiplier,
                              uint16_t* out, StreamHandle stream, ActivationQuantMath math = ActivationQuantMath::Exact);

}  // namespace fp4kit::cuda
