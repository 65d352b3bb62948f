#pragma once
// NVFP4: E2M1 elements in blocks of 16 along the last dimension, one E4M3 scale per block and one
// f32 scale per tensor. Two producers define the arithmetic, and their bytes differ:
//  - ModelOpt: weight_scale_2 = amax/2688 (a multiplier); zero blocks get scale 1.0; block scales
//    clamped to [2^-9, 448]. The CPU computes amax/2688 as a true division, CUDA as amax*fl(1/2688).
//  - compressed-tensors: weight_global_scale = 2688/amax (a divisor) computed in the weight dtype
//    as a reciprocal-multiply; group amax/6 rounded to the weight dtype; zero scales become 0.125.
// Layout: packed [N, K/2] (even index in the low nibble), scales [N, K/16] row-major, so a tensor
// is handled as a flat run of 16-element blocks.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "formats/dtype.h"
#include "formats/float_span.h"
#include "formats/isa.h"

namespace fp4kit {

inline constexpr size_t kNvfp4BlockSize = 16;
inline constexpr float kNvfp4ScaleDenominator = 6.0f * 448.0f;  // E2M1 max x E4M3 max = 2688

enum class Nvfp4Numerics : uint8_t { ModelOpt, ModelOptCuda, CompressedTensors };

std::string_view numerics_name(Nvfp4Numerics);
std::optional<Nvfp4Numerics> numerics_from_name(std::string_view);

// Everything the per-block arithmetic needs besides the data.
struct Nvfp4Scaling {
  Nvfp4Numerics numerics = Nvfp4Numerics::ModelOpt;
  float global = 1.0f;          // ModelOpt: weight_scale_2; compressed-tensors: weight_global_scale
  DType source = DType::BF16;   // compressed-tensors rounds group amax/6 to the weight dtype
};

// The per-tensor scale from the tensor's (or fused group's) amax.
float nvfp4_global_scale(float amax, Nvfp4Numerics, DType source);
inline Nvfp4Scaling nvfp4_scaling(float amax, Nvfp4Numerics numerics, DType source) {
  return Nvfp4Scaling{numerics, nvfp4_global_scale(amax, numerics, source), source};
}

// ModelOpt's per-block scale: s = amax/(6*wsf2); optionally 0 -> 1.0; clamp [2^-9, 448]; E4M3.
uint8_t modelopt_block_scale(float block_amax, float weight_scale_2, bool zero_block_to_one = true);
// The E4M3 block scale byte for a block whose max |x| is `block_amax`.
uint8_t nvfp4_block_scale(float block_amax, const Nvfp4Scaling&);
// Whether nvfp4_block_scale gives this amax the zero block's byte by its zero rule (ModelOpt:
// amax / (6 * weight_scale_2) is 0; compressed-tensors: the E4M3 scale rounds to 0); beyond that
// prefix of amax the byte is a monotone function of amax.
bool nvfp4_block_scale_zero_rule(float block_amax, const Nvfp4Scaling&);
// What elements of a block are divided by before the E2M1 cast.
float nvfp4_quant_divisor(uint8_t scale_byte, const Nvfp4Scaling&);
// What decoded E2M1 values of a block are multiplied by.
float nvfp4_dequant_multiplier(uint8_t scale_byte, const Nvfp4Scaling&);

// Kernel set of one ISA. `n` (= src.size) must be a multiple of 16; outputs hold n/2 packed bytes
// and n/16 scale bytes. All ISAs produce identical bytes.
struct Nvfp4Kernels {
  // max |x| over the span; NaN if any element is NaN (as torch's amax).
  float (*amax)(FloatSpan src);
  void (*quantize)(FloatSpan src, const Nvfp4Scaling&, uint8_t* packed, uint8_t* scales);
  // Quantize with block scales already chosen (e.g. by the lossless MXFP4 cast).
  void (*quantize_with_scales)(FloatSpan src, const uint8_t* scales, const Nvfp4Scaling&,
                               uint8_t* packed);
  // ModelOpt: LUT[q] * f32(s)*wsf2 ; compressed-tensors: LUT[q] * (f32(s)/gs).
  void (*dequantize)(const uint8_t* packed, const uint8_t* scales, size_t n, const Nvfp4Scaling&,
                     float* out);
};

const Nvfp4Kernels& nvfp4_kernels(Isa isa = preferred_isa());

namespace nvfp4_ref {
float amax(FloatSpan src);
void quantize(FloatSpan src, const Nvfp4Scaling&, uint8_t* packed, uint8_t* scales);
void quantize_with_scales(FloatSpan src, const uint8_t* scales, const Nvfp4Scaling&, uint8_t* packed);
void dequantize(const uint8_t* packed, const uint8_t* scales, size_t n, const Nvfp4Scaling&, float* out);
}  // namespace nvfp4_ref

namespace nvfp4_simd {
// The vector kernels for `isa` (nvfp4_simd.cpp), nullptr where none were compiled.
const Nvfp4Kernels* kernels(Isa isa);
}  // namespace nvfp4_simd

}  // namespace fp4kit
