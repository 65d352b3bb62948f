#pragma once
// The Hopper (sm_90a) prefill path of the weight GEMMs, behind launch_weight_gemm_prefill on
// devices of compute capability 9.0. Arguments are checked by weight_gemm.cu.
#include "cuda/runtime.h"
#include "cuda/weight_gemm_args.cuh"

namespace fp4kit::cuda {

// 64-row tiles (128 weight columns) while the average group has at most 128 rows, else 128-row
// tiles (256 columns; 128 for FP8 and SwiGLU, 64 for both); dense products without the SwiGLU
// epilogue split K (F32 partials through launch_reduce_split_k) while the tiles fill less than the
// blocks `multiprocessors` can hold.
void launch_weight_gemm_prefill_sm90(const WeightGemmArgs& a, WeightFormat format, bool swiglu, int multiprocessors,
                                     StreamHandle stream);

}  // namespace fp4kit::cuda
