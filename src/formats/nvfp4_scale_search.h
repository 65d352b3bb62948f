#pragma once
// How NVFP4 block scales are chosen. Max: the block's amax (ModelOpt's default, formats/nvfp4.h).
// Mse and FourOverSix: searched per block as ModelOpt's weight MSE calibration searches them
// (formats/nvfp4_mse_sweep.h, formats/nvfp4_four_over_six.h), then exported as ModelOpt exports a
// static NVFP4 quantizer: the searched block amax becomes the E4M3 scale
//   e4m3(clamp((block_amax/6 * fp8_max) / (global_amax/6), 2^-9, 448)),  0 -> 1.0 before that,
// weight_scale_2 = global_amax / (6 * fp8_max), fp8_max 448 (256 for four-over-six), and the
// elements x / (f32(scale) * weight_scale_2) to E2M1 as in every ModelOpt export. The divisions by
// Python constants follow the numerics: a true division for ModelOpt (CPU), a multiply by the f32
// reciprocal for ModelOpt-CUDA. Only the ModelOpt numerics have searched scales.
// docs/scale-search.md describes all of it with the sources.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "formats/float_span.h"
#include "formats/nvfp4.h"

namespace fp4kit {

// Hessian: the mse sweep with each block's error weighted by the 16×16 block of XᵀX of its input
// channels (formats/nvfp4_hessian_sweep.h); it needs those statistics, so only
// nvfp4_hessian_quantize_ref and its fast paths (nvfp4_hessian_kernels) compute it, and the functions
// below that take no statistics refuse it.
enum class Nvfp4ScaleMethod : uint8_t { Max, Mse, FourOverSix, Hessian };

std::string_view scale_method_name(Nvfp4ScaleMethod);  // "max", "mse", "four-over-six", "hessian"
std::optional<Nvfp4ScaleMethod> scale_method_from_name(std::string_view);
// "max, mse, four-over-six, hessian": for messages.
std::string scale_method_names();

// The E4M3 value the block scales are normalised to: 448 (also hessian's), or 256 for four-over-six.
float scale_method_fp8_max(Nvfp4ScaleMethod);

// Whether the method can write scales in these numerics (max: all; searched: ModelOpt's).
bool scale_method_supports(Nvfp4ScaleMethod, Nvfp4Numerics);

// The per-tensor constants of a searched quantization.
struct Nvfp4SearchScaling {
  Nvfp4ScaleMethod method = Nvfp4ScaleMethod::Mse;
  Nvfp4Numerics numerics = Nvfp4Numerics::ModelOpt;  // ModelOpt or ModelOptCuda
  float global_amax = 0.0f;                          // the tensor's (or its fused group's) amax
  float weight_scale_2 = 0.0f;                       // global_amax / (6 * fp8_max)
  DType source = DType::BF16;                        // the weight's dtype (the sweep kernel's layout)
};
Nvfp4SearchScaling nvfp4_search_scaling(float global_amax, Nvfp4ScaleMethod, Nvfp4Numerics, DType source);

// weight_scale_2 of a method: global_amax / (6 * fp8_max) with the numerics' division; for Max the
// numerics' own global scale (nvfp4_global_scale).
float nvfp4_method_global_scale(float global_amax, Nvfp4ScaleMethod, Nvfp4Numerics, DType source);

// Error for Hessian, which the functions without statistics cannot compute.
void require_no_statistics(Nvfp4ScaleMethod);

// ModelOpt's export of a static quantizer's block amax to its E4M3 block scale byte.
uint8_t modelopt_static_block_scale(float block_amax, float global_amax, float fp8_max, bool cuda);

// The scalar reference. Whole blocks: `src.size` a multiple of 16; `packed` gets n/2 bytes,
// `scales` n/16. With `full_sweep`, mse tries all 126 candidates of every block (ModelOpt's sweep);
// otherwise only the proven window. The bytes are the same either way.
void nvfp4_search_quantize(FloatSpan src, const Nvfp4SearchScaling&, uint8_t* packed, uint8_t* scales,
                           bool full_sweep = false);

// The searched block amax of each block (what ModelOpt's calibrator keeps), for reports and tests.
void nvfp4_search_block_amax(FloatSpan src, const Nvfp4SearchScaling&, float* block_amax, bool full_sweep = false);

// Kernel set of one ISA, with the arguments of the functions above (mse through the window). All
// ISAs produce the reference's bytes.
struct Nvfp4SearchKernels {
  void (*block_amax)(FloatSpan src, const Nvfp4SearchScaling&, float* block_amax);
  void (*quantize)(FloatSpan src, const Nvfp4SearchScaling&, uint8_t* packed, uint8_t* scales);
};

const Nvfp4SearchKernels& nvfp4_search_kernels(Isa isa = preferred_isa());

namespace nvfp4_search_simd {
// The vector kernels for `isa` (nvfp4_scale_search_simd.cpp), nullptr where none were compiled.
const Nvfp4SearchKernels* kernels(Isa isa);
}  // namespace nvfp4_search_simd

}  // namespace fp4kit
