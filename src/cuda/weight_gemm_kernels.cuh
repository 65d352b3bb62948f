#pragma once
// The launchers behind weight_gemm() and grouped_weight_gemm(): one per path. Arguments are
// checked by the caller (weight_gemm.cu); these only size grids and shared memory.
#include <cstdint>

#include "cuda/runtime.h"
#include "cuda/weight_gemm_args.cuh"

namespace fp4kit::cuda {

// Few rows (16 at a time): blocks of 128 weight rows (64 with SwiGLU) stream the weight through
// shared memory; `tiles`: blocks along z (1 for a dense product; the most non-empty groups for a
// grouped one). When the blocks alone would not fill the GPU, a cluster of blocks splits K and
// adds its partial sums on chip.
void launch_weight_gemm_decode(const WeightGemmArgs& a, WeightFormat format, bool swiglu, int64_t tiles,
                               StreamHandle stream);
// Dense products of at most 16 rows with FP4 weights (NVFP4, MXFP4) and K a multiple of 128: the
// weight streams from global memory into registers, 16 weight rows per warp. Weight codes must be
// 16-byte aligned and NVFP4 scales 2-byte aligned.
bool fp4_decode_applies(const WeightGemmArgs& a, WeightFormat format);
void launch_weight_gemm_fp4_decode(const WeightGemmArgs& a, WeightFormat format, StreamHandle stream);
// The same kernel for the products of a weight set (a.set, a.set_y; a.n the largest N; at most 8
// rows), one grid layer per product.
void launch_weight_gemm_fp4_decode_set(const WeightGemmArgs& a, WeightFormat format, int64_t products, StreamHandle stream);
// The same kernel for a dense gate and up product of at most 8 rows with the clamped SwiGLU epilogue
// (a.weight the gate, a.up_weight the up matrix, of one format and shape).
void launch_weight_gemm_fp4_decode_swiglu(const WeightGemmArgs& a, WeightFormat format, StreamHandle stream);
// Grouped FP4 products (NVFP4, MXFP4) with K a multiple of 128 whose non-empty groups average at
// most kGroupTileRows rows (rows <= kGroupTileRows * busy_groups; NVFP4 also at most 16 rows in all,
// where it measured faster than the ring kernel): the register-streaming kernel,
// one grid layer per tile of at most kGroupTileRows rows of one group (`tiles`: a bound on their
// count), with the SwiGLU epilogue where `swiglu`. Every group's weight codes must be 16-byte
// aligned and its NVFP4 scales 2-byte aligned.
inline constexpr int64_t kGroupTileRows = 8;
bool fp4_grouped_decode_applies(WeightFormat format, int64_t rows, int64_t busy_groups, int64_t k);
void launch_weight_gemm_fp4_grouped_decode(const WeightGemmArgs& a, WeightFormat format, bool swiglu, int64_t tiles,
                                           StreamHandle stream);
// y = gscale * sum over splits of partial (a dense product's split-K sums).
void launch_reduce_split_k(const WeightGemmArgs& a, int64_t splits, StreamHandle stream);
// Many rows: 128-row tiles through shared memory, the weight decoded to BF16 in shared memory.
// `row_tiles`: an upper bound on the number of 128-row tiles (ceil(rows/128) + groups for grouped).
void launch_weight_gemm_prefill(const WeightGemmArgs& a, WeightFormat format, bool swiglu, int64_t row_tiles,
                                StreamHandle stream);

// The decode path takes dense products with at most this many rows, and grouped ones whose
// non-empty groups average at most this many.
inline constexpr int kDecodeRows = 16;
inline constexpr int64_t kPrefillRows = 128;

}  // namespace fp4kit::cuda
