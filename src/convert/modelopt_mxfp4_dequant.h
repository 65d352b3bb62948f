#pragma once
// ModelOpt's MXFP4 dequant (MXFP4QTensor) as its DeepSeek V4 exporter uses it before
// requantizing: E2M1 value x 2^(e-127) rounded to BF16, with code 0x8 as -0.0 (DeepSeek's own
// table gives +0.0). Exact: every product fits in BF16.
#include <cstddef>
#include <cstdint>

namespace fp4kit {

// `n` elements (a multiple of 32) from packed n/2 bytes and n/32 E8M0 scales.
void modelopt_mxfp4_dequantize_bf16(const uint8_t* packed, const uint8_t* scales, size_t n, uint16_t* out);

}  // namespace fp4kit
