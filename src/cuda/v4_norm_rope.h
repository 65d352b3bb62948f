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
struct RopeRows {
  float* v = nullptr;
  int64_t rows = 0, heads = 1, row_stride = 0, head_stride = 0, offset = 0;
  const int64_t* positions = nullptr;  // device [rows]
  const float* inv_freq = nullptr;     // device [dim / 2]
  int64_t dim = 0;
  bool inverse = false;
};
void rope_rows(const RopeRows& r, StreamHandle stream);

}  // namespace fp4kit::cuda
