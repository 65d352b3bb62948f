#pragma once
// NVFP4 activation quantization as a Blackwell W4A4 engine does it at run time with a checkpoint's
// static `input_scale` (scalar reference; the GPU kernels in src/cuda/exact/activation_quantize.cu
// match it byte for byte).
//
// Inputs are BF16 (vLLM and FlashInfer accept F16 too: the same recipe with an F16 amax).
//
// Who calls what (vLLM, ModelOpt NVFP4 checkpoints, vllm/model_executor/layers/quantization/
// modelopt.py and the compressed-tensors W4A4 scheme):
//   input_global_scale     = max(input_scale over fused shards)          (F32)
//   input_global_scale_inv = (1.0 / input_global_scale).to(float32)      -> the quantizer's global scale gs
//   alpha                  = input_global_scale * weight_global_scale   (weight_global_scale = max weight_scale_2)
//   x_fp4, x_sf = scaled_fp4_quant(x, input_global_scale_inv)           (vllm/_custom_ops.py)
//   y = fp4 GEMM(x_fp4, x_sf, w_fp4, w_sf) * alpha
// (compressed-tensors stores input_global_scale = 1/input_scale already: gs = max of it.)
//
// The quantizer, per block of 16 consecutive elements of a row (vLLM csrc/.../fp4/nvfp4_utils.cuh
// `cvt_warp_fp16_to_fp4`, the same recipe as TensorRT-LLM / FlashInfer quantization_utils.cuh
// `cvt_warp_fp16_to_fp4` with E4M3 scales):
//   amax     = max |x| over the 16 BF16 values (__habs2/__hmax2 = max.bf16x2, which returns the
//              non-NaN operand (cuda_bf16.h), so NaNs are ignored unless all 16 are NaN; exact)
//   SFValue  = gs * (amax * rcp(6))
//   SF       = __nv_fp8_e4m3(SFValue): __nv_cvt_float_to_fp8(.., __NV_SATFINITE, __NV_E4M3) =
//              round to nearest even, magnitudes above 448 (and +Inf) -> 448 (0x7E), NaN -> 0x7F
//   outScale = f32(SF) != 0 ? rcp(f32(SF) * rcp(gs)) : 0
//   q_i      = cvt.rn.satfinite.e2m1x2.f32(x_i * outScale), the even element in the low nibble
// vLLM always uses `rcp.approx.ftz.f32` for rcp (there is no exact switch in vLLM).
//
// THIS REFERENCE reproduces that recipe with EXACT reciprocals: rcp(6) = fl(1/6) (0x3E2AAAAB),
// rcp(gs) = fl(1/gs), and the last rcp an IEEE division, all in F32 with round to nearest even and
// no flush to zero. It gives the scales and E2M1 values of vLLM's Python reference `ref_nvfp4_quant`
// (tests/kernels/quantization/nvfp4_utils.py: gs * (vmax * (1/6)), clamp +-448, fp8 cast,
// 1/(scale * (1/gs)), clamp +-6, round), against which vLLM tests its kernel, except where NaNs are
// involved (torch.max propagates them) and in the sign of zero codes (it returns values). How it
// differs from what an engine produces:
//  - vLLM (fast reciprocals): rcp.approx.ftz has up to ~1 ulp error, so SFValue (if rcp.approx(6)
//    != fl(1/6)) and outScale can differ by an ulp or two; a byte then differs only where the value
//    sits on an E4M3 or E2M1 rounding boundary, by one code step. The GPU kernel has a Fast mode
//    with the same rcp.approx.ftz; the GPU tests count the differences.
//  - FlashInfer / TensorRT-LLM built with DISABLE_FP4_QUANT_FAST_MATH (and FlashInfer's
//    TE_EXACT_NVFP4 path) compute SFValue = amax * (gs * fl(1/6)) (another rounding order) and
//    clamp outScale to FLT_MAX; their default build is the fast one above.
//  - TensorRT-LLM / FlashInfer test amax != 0 instead of f32(SF) != 0: for a nonzero block whose
//    SF underflows to 0 they scale by rcp(0) = +Inf (codes +-6, or 0x7 for 0*Inf = NaN) where vLLM
//    and this reference write zeros; both decode to 0 since SF = 0.
//  - No flush to zero here; with --use_fast_math (ftz) a block of BF16 subnormals would get SF 0.
//    It only matters for gs above ~2^100.
//
// The element cast, cvt.rn.satfinite.e2m1x2.f32, follows CUDA's cuda_fp4.hpp
// `__nv_cvt_double_to_fp4` (the software definition of the same conversion): round to nearest even
// on {0, .5, 1, 1.5, 2, 3, 4, 6}; |y| > 6 and +-Inf saturate to +-6; NaN -> +6 (0x7); the sign bit
// is the input's sign bit, so -0.0 and negative values that round to zero give 0x8. The last point
// is the one difference from E2M1::from_float (ModelOpt's cast, -0.0 -> 0x0), hence
// e2m1_from_float_satfinite below. The E4M3 cast is E4M3::from_float_saturate.
//
// Special inputs (what the engine does; the tests pin each case):
//  - zero block: SF 0x00, codes 0x0 (0x8 for -0.0 elements);
//  - NaN elements are ignored by amax and encode as 0x7 (+6 * SF when decoded); an all-NaN block
//    gives SF 0x7F (NaN) and codes 0x7;
//  - +-Inf: amax = Inf -> SF 448 (0x7E); the Inf elements encode as +-6, the others scale by
//    gs/448;
//  - blocks whose gs*amax/6 is above 448 get SF 448 (saturation), at or below 2^-10 SF 0 (all codes
//    zero, signed), in between 2^-10 and 2^-6 E4M3 subnormal scales.
//
// What the W4A4 GEMM then computes (CUTLASS / FlashInfer block-scaled FP4 GEMM): the activation
// value is e2m1 * f32(SF), the weight value e2m1 * f32(weight SF), their products are summed in F32
// and the sum is multiplied by alpha = input_scale * weight_scale_2. So the dequantized activation
// the GEMM "sees" is e2m1 * f32(SF) * input_scale, with input_scale = 1/gs up to rounding; decode
// with multiplier 1 to get e2m1 * f32(SF), which is exact in BF16 (at most 6 significant bits,
// magnitudes in [2^-10, 2688]), and apply input_scale together with weight_scale_2 after the sum.
#include <cstdint>

#include "formats/nvfp4_scale_layout.h"

namespace fp4kit {

// The quantizer's global scale for a ModelOpt input_scale (vLLM: 1.0 / input_scale in F32).
float nvfp4_activation_global_scale(float input_scale);

// cvt.rn.satfinite.e2m1x2.f32 for one value: E2M1 code with the input's sign bit; NaN -> 0x7.
uint8_t e2m1_from_float_satfinite(float y);

// One block of 16 values (BF16 values as F32) with global scale gs: returns the E4M3 scale byte and
// writes the 8 packed bytes (element 2j in the low nibble of byte j).
uint8_t quantize_activation_block(const float* x16, float global_scale, uint8_t* packed8);

// Whole activation x BF16 bits [m, k] (k a multiple of 16, gs finite and > 0, else InputError):
// packed [m, k/2] and scales (nvfp4_scale_bytes(m, k/16, layout) bytes; the swizzled padding is
// written as zero, as the engines write it).
void quantize_activation_ref(const uint16_t* x, int64_t m, int64_t k, float global_scale, Nvfp4ScaleLayout layout,
                             uint8_t* packed, uint8_t* scales);

// Decode: out[i] = (e2m1(q_i) * f32(SF)) * multiplier, rounded to F32 (code 0x8 decodes as +0.0,
// as E2M1::to_float). multiplier 1 gives the exact values e2m1 * SF; pass input_scale for the
// activation as the GEMM scales it (the GEMM applies it after the sum, see above).
void dequantize_activation_ref(const uint8_t* packed, const uint8_t* scales, Nvfp4ScaleLayout layout, int64_t m,
                               int64_t k, float multiplier, float* out);
// The same rounded to BF16 bits (round to nearest even; exact when multiplier is 1).
void dequantize_activation_bf16_ref(const uint8_t* packed, const uint8_t* scales, Nvfp4ScaleLayout layout,
                                    int64_t m, int64_t k, float multiplier, uint16_t* out);

}  // namespace fp4kit
