#pragma once
// The launchers behind weight_gemm() and grouped_weight_gemm(): one per path. Arguments are
// checked by the caller (weight_gemm.cu); these only size grids and shared memory.
#include <cstdint>

#include "cuda/runtime.h"
#include "cuda/weight_gemm_args.cuh"

namespace fp4kit::cuda {

// Few rows (M <= 16 per group, or slices of 16): each warp streams 8 weight rows through registers.
// `tiles`: blocks along z (1 for a dense product; the most non-empty groups for a grouped one).
// `splits` > 1 (dense only) writes F32 partial sums to a.partial, reduced by reduce_split_k.
void launch_weight_gemm_decode(const WeightGemmArgs& a, WeightFormat format, bool swiglu, int64_t tiles,
                               int64_t splits, StreamHandle stream);
// y = gscale * sum over splits of partial (a dense product's split-K sums).
void launch_reduce_split_k(const WeightGemmArgs& a, int64_t splits, StreamHandle stream);
// Many rows: 128-row tiles through shared memory, the weight decoded to BF16 in shared memory.
// `row_tiles`: an upper bound on the number of 128-row tiles (ceil(rows/128) + groups for grouped).
void launch_weight_gemm_prefill(const WeightGemmArgs& a, WeightFormat format, bool swiglu, int64_t row_tiles,
                                StreamHandle stream);

// Rows of x per decode pass and the K step of one decode iteration per format.
inline constexpr int kDecodeRows = 16;
int64_t decode_k_step(WeightFormat format);
inline constexpr int64_t kPrefillRows = 128;

}  // namespace fp4kit::cuda
