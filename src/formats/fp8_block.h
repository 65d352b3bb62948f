#pragma once
// FP8 E4M3 weights with one scale per 128x128 block, as DeepSeek ships its FP8 layers:
//  - V3: `weight_scale_inv` F32 [ceil(N/128), ceil(K/128)], a multiplier despite its name;
//  - V4: `.scale` F8_E8M0 of the same shape (a power of two).
// Edge blocks are ragged: they cover only the rows and columns the weight has.
#include <cstddef>
#include <cstdint>

#include "formats/float_span.h"
#include "formats/isa.h"

namespace fp4kit {

inline constexpr size_t kFp8BlockSize = 128;

enum class Fp8ScaleKind : uint8_t { F32, E8M0 };

constexpr size_t fp8_scale_dim(size_t n) { return (n + kFp8BlockSize - 1) / kFp8BlockSize; }

struct Fp8BlockShape {
  size_t rows = 0, cols = 0;
  Fp8ScaleKind scale_kind = Fp8ScaleKind::E8M0;
  size_t scale_rows() const { return fp8_scale_dim(rows); }
  size_t scale_cols() const { return fp8_scale_dim(cols); }
};

// Rows [row_begin, row_end) of the official dequant f32(e4m3) * scale, in f32 or rounded to BF16
// (round to nearest even). `out` points at the first output row. Rows are independent, so callers
// split work by rows.
struct Fp8BlockKernels {
  void (*dequantize_f32)(const uint8_t* weight, const void* scales, const Fp8BlockShape&,
                         size_t row_begin, size_t row_end, float* out);
  void (*dequantize_bf16)(const uint8_t* weight, const void* scales, const Fp8BlockShape&,
                          size_t row_begin, size_t row_end, uint16_t* out);
  // See fp8_block_ref::quantize; the whole tensor (src.size == rows*cols).
  void (*quantize)(FloatSpan src, const Fp8BlockShape&, uint8_t* weight, void* scales);
};
const Fp8BlockKernels& fp8_block_kernels(Isa isa = preferred_isa());

namespace fp8_block_ref {
void dequantize_f32(const uint8_t* weight, const void* scales, const Fp8BlockShape&, size_t row_begin,
                    size_t row_end, float* out);
void dequantize_bf16(const uint8_t* weight, const void* scales, const Fp8BlockShape&, size_t row_begin,
                     size_t row_end, uint16_t* out);
// Block quantization as DeepSeek's act_quant does it: E8M0 scale s = 2^ceil(log2(max(amax,1e-4)/448))
// (exact ceil), F32 scale s = max(amax,1e-4)/448; q = E4M3(x/s) saturated to +-448. NaN elements
// do not count towards amax (and encode as NaN); an infinite amax gives the largest scale.
void quantize(FloatSpan src, const Fp8BlockShape&, uint8_t* weight, void* scales);
// The pieces of quantize that fast paths share: block (br, bc)'s amax, and its scale, stored in
// the shape's scale format at (br, bc) and returned as f32.
float block_amax(FloatSpan src, const Fp8BlockShape&, size_t br, size_t bc);
float store_block_scale(float amax, const Fp8BlockShape&, void* scales, size_t br, size_t bc);
// The scale of block (br, bc) as f32, read from either scale format.
float load_block_scale(const void* scales, const Fp8BlockShape&, size_t br, size_t bc);
}  // namespace fp8_block_ref

namespace fp8_block_simd {
// The vector kernels for `isa` (fp8_block_simd.cpp), nullptr where none were compiled.
const Fp8BlockKernels* kernels(Isa isa);
}  // namespace fp8_block_simd

// DeepSeek V4's official FP4 -> FP8 repack (convert.py cast_e2m1fn_to_e4m3fn): per 128x128 block
// sb = max(2^(e-127))/64, q = E4M3(FP4_TABLE[q]*2^(e-127)/sb), scale byte clamp(log2(sb)+127, 0, 254).
// Lossy where a 32-group's exponent is far below its block's largest one; the byte-0 clamp makes
// blocks whose largest exponent byte is below 6 come out 2^(6-max) too large, as the original does.
void mxfp4_to_fp8_block(const uint8_t* packed, const uint8_t* mx_scales, size_t rows, size_t cols,
                        uint8_t* weight, uint8_t* e8m0_scales);

}  // namespace fp4kit
