#pragma once
// Whole-tensor NVFP4 quantization on many threads, with the fast kernels. The work is cut into
// fixed pieces of blocks, so the bytes never depend on the thread count.
#include <cstdint>
#include <vector>

#include "formats/float_span.h"
#include "formats/nvfp4.h"
#include "formats/nvfp4_hessian_sweep.h"
#include "formats/nvfp4_scale_search.h"

namespace fp4kit {

struct Nvfp4Tensor {
  std::vector<uint8_t> packed;  // n/2 bytes
  std::vector<uint8_t> scales;  // n/16 E4M3 bytes
  float global = 0.0f;          // weight_scale_2 (ModelOpt) or weight_global_scale (compressed-tensors)
};

// max |x|, NaN if any element is NaN.
float parallel_amax(FloatSpan src, unsigned threads, Isa isa = preferred_isa());

// src.size must be a multiple of 16.
Nvfp4Tensor quantize_nvfp4(FloatSpan src, const Nvfp4Scaling& scaling, unsigned threads,
                           Isa isa = preferred_isa());

// Searched block scales (mse, four-over-six); `global` is the scaling's weight_scale_2.
Nvfp4Tensor quantize_nvfp4_searched(FloatSpan src, const Nvfp4SearchScaling& scaling, unsigned threads,
                                    Isa isa = preferred_isa());

// Hessian block scales of a row-major [rows, cols] tensor: `weights` holds one prepared XᵀX block
// per 16 input channels (of each row group, as `layout` says). Adds the block counts to `stats`.
Nvfp4Tensor quantize_nvfp4_hessian(FloatSpan src, const std::vector<HessianBlockWeight>& weights, const HessianLayout& layout,
                                   const Nvfp4SearchScaling& scaling, unsigned threads, Nvfp4HessianStats& stats,
                                   Isa isa = preferred_isa());

}  // namespace fp4kit
