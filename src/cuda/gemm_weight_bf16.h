#pragma once
// A weight GEMM operand (cuda/weight_gemm.h) as dense BF16 values, for products that read it through
// cuBLASLt: exact where the stored form decodes to BF16 without rounding — BF16 itself, MXFP4
// (E2M1 x E8M0), FP8 blocks with E8M0 scales, and NVFP4's block values (E2M1 x E4M3) with its F32
// global scale left to the product's alpha (gemm_weight_bf16_alpha), as the weight GEMMs apply it;
// not FP8 blocks with F32 scales. Plain C++ header.
#include <cstdint>

#include "cuda/runtime.h"
#include "cuda/weight_gemm.h"

namespace fp4kit::cuda {

bool decodes_to_bf16_exactly(const GemmWeight& w);

// w [n, k] as BF16: its own bytes (BF16), or decoded into `scratch` (at least n·k BF16 values),
// asynchronously on `stream`; the product with them is scaled by gemm_weight_bf16_alpha(w).
// InputError where the decode is not exact.
const uint16_t* gemm_weight_bf16(const GemmWeight& w, uint16_t* scratch, StreamHandle stream);
float gemm_weight_bf16_alpha(const GemmWeight& w);

}  // namespace fp4kit::cuda
