#pragma once
// A step of whole 128-row blocks of an FP8-block weight, read from the source and dequantized to
// BF16 with DeepSeek's formula, as both dequant and convert (for FP8 weights that stay outside
// DeepSeek V4's layout) write it. The step is dequantized as a tensor of its own whose scales
// start at its first block row; each thread reads its piece of rows and dequantizes it.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "convert/source_checkpoint.h"
#include "formats/fp8_block.h"

namespace fp4kit {

// Rows [r0, r0 + n) of `weight` ([rows, cols] F8_E4M3; r0 a multiple of 128) into `out` (n * cols
// BF16). `scales` holds the whole tensor's scales; `input` is scratch, resized as needed.
void dequantize_fp8_block_rows(const SourceTensor& weight, std::span<const std::byte> scales, Fp8ScaleKind kind,
                               size_t r0, size_t n, std::vector<uint8_t>& input, uint16_t* out, unsigned threads);

}  // namespace fp4kit
