#pragma once
// A weight GEMM operand (cuda/weight_gemm.h) as dense BF16 values, for products that read it through
// cuBLASLt: exact where the stored form decodes to BF16 without rounding — BF16 itself, MXFP4
// (E2M1 x E8M0) and FP8 blocks with E8M0 scales; not NVFP4 (its F32 global scale) nor FP8 blocks
// with F32 scales. Plain C++ header.
#include <cstdint>

#include "cuda/runtime.h"
#include "cuda/weight_gemm.h"

namespace fp4kit::cuda {

bool decodes_to_bf16_exactly(const GemmWeight& w);

// w [n, k] as BF16: its own bytes (BF16), or decoded into `scratch` (at least n·k BF16 values),
// asynchronously on `stream`. InputError where the decode is not exact.
const uint16_t* gemm_weight_bf16(const GemmWeight& w, uint16_t* scratch, StreamHandle stream);

}  // namespace fp4kit::cuda
