#pragma once
// Row RMS norms and the partial rotary embedding of the DeepSeek V4 forward pass on the GPU, in
// F32 as the CPU engine computes them (engine/ops.h rms_norm, engine/rope.h Rope::apply), which the
// tests compare them with. Sums are taken in another order than on the CPU, so results agree to a
// few ulps, not bit for bit. Device pointers; asynchronous on `stream`. Plain C++ header.
#include <cstdint>

#include "cuda/runtime.h"

namespace fp4kit::cuda {

// out[r] = weight ⊙ x[r] / sqrt(mean(x[r]²) + eps) for `rows` rows of n (sum of squares in F64).
// weight may be null (unweighted); out may alias x. With out_bf16 [rows, n], each result is also
// rounded to BF16 there (as encode_elements would), for a product that reads it.
void rms_norm_rows(const float* x, int64_t rows, int64_t n, const float* weight, float eps, float* out,
                   StreamHandle stream, uint16_t* out_bf16 = nullptr);

// For every row r and head h, rotates the `dim` values at v + r·row_stride + h·head_stride + offset
// in interleaved pairs by positions[r]·inv_freq[i] (inverse: by the negative angle).
// With out16, every value [0, head_width) of each head (the rotated ones and the rest) is also
// written rounded to BF16 (nearest even) at the same place in out16 (the same strides as v): the
// next product's input, without a rounding launch of its own.
struct RopeRows {
  float* v = nullptr;
  int64_t rows = 0, heads = 1, row_stride = 0, head_stride = 0, offset = 0;
  const int64_t* positions = nullptr;  // device [rows]
  const float* inv_freq = nullptr;     // device [dim / 2]
  int64_t dim = 0;
  bool inverse = false;
  uint16_t* out16 = nullptr;
  int64_t head_width = 0;  // with out16: even, offset + dim <= head_width
};
void rope_rows(const RopeRows& r, StreamHandle stream);

// rms_norm_rows in place, then rope_rows of each row's `dim` values at `offset` (one head per row;
// row r at positions[r / rows_per_position]), in one launch: the same bits as the two calls.
struct NormRopeRows {
  float* x = nullptr;  // [rows, n], in place
  int64_t rows = 0, n = 0;
  const float* weight = nullptr;  // [n], or null
  float eps = 0;
  const int64_t* positions = nullptr;  // device [rows / rows_per_position]
  int64_t rows_per_position = 1;
  const float* inv_freq = nullptr;  // device [dim / 2]
  int64_t dim = 0, offset = 0;
};
void rms_norm_rope_rows(const NormRopeRows& r, StreamHandle stream);

}  // namespace fp4kit::cuda
