#pragma once
// Where the E4M3 block scales of an NVFP4 matrix [rows, K] sit in memory. Checkpoints store them
// linearly, [rows, K/16] row-major. The Blackwell block-scaled MMA (tcgen05 "scale factor layout
// 4x") reads them swizzled in tiles of 128 rows x 4 scale columns:
//  - rows are padded to a multiple of 128 and scale columns to a multiple of 4, the padding being
//    zero bytes;
//  - the padded [R, C] matrix is viewed as (R/128, 4, 32, C/4, 4) and permuted to
//    (R/128, C/4, 32, 4, 4), i.e. row r = 128*a + 32*b + c and column s = 4*d + e go to
//    (((a*(C/4) + d)*32 + c)*4 + b)*4 + e.
// Sources: vLLM quant_utils/nvfp4_utils `swizzle_blockscale` (reshape(B, M/128, 4, 32, K/4, 4)
// .permute(0, 1, 4, 3, 2, 5)); vLLM csrc nvfp4_utils.cuh `cvt_quant_to_fp4_get_sf_out_offset` and
// TensorRT-LLM `get_sf_out_offset_128x4` (layout [mTile, kTile, 32, 4, 4]). Constexpr so that
// device code can use it too.
#include <cstdint>

namespace fp4kit {

enum class Nvfp4ScaleLayout : uint8_t { Linear, Swizzled128x4 };

constexpr int64_t nvfp4_swizzled_scale_rows(int64_t rows) { return (rows + 127) / 128 * 128; }
constexpr int64_t nvfp4_swizzled_scale_cols(int64_t scale_cols) { return (scale_cols + 3) / 4 * 4; }

// Bytes of the scales of a [rows, scale_cols] scale matrix (scale_cols = K/16) in `layout`.
constexpr int64_t nvfp4_scale_bytes(int64_t rows, int64_t scale_cols, Nvfp4ScaleLayout layout) {
  return layout == Nvfp4ScaleLayout::Linear
             ? rows * scale_cols
             : nvfp4_swizzled_scale_rows(rows) * nvfp4_swizzled_scale_cols(scale_cols);
}

// Byte offset of scale (row, col) in the swizzled layout of a matrix with `scale_cols` (unpadded)
// scale columns. Valid for the padding positions too (row < padded rows, col < padded columns).
constexpr int64_t nvfp4_swizzled_scale_offset(int64_t row, int64_t col, int64_t scale_cols) {
  const int64_t col_tiles = (scale_cols + 3) / 4;
  return ((row / 128) * col_tiles + col / 4) * 512 + (row % 32) * 16 + ((row / 32) % 4) * 4 + col % 4;
}

constexpr int64_t nvfp4_scale_offset(int64_t row, int64_t col, int64_t scale_cols, Nvfp4ScaleLayout layout) {
  return layout == Nvfp4ScaleLayout::Linear ? row * scale_cols + col
                                            : nvfp4_swizzled_scale_offset(row, col, scale_cols);
}

}  // namespace fp4kit
