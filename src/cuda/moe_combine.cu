// Stage 4 of the routed experts: out[t] = Σ_j weight[t, j] · y[row of (t, j)] in increasing expert id,
// each product and each sum rounded to F32 in that order, as the CPU engine adds them; then + add[t]
// where given (the shared expert's output: the engine's routed + shared).
#include <cstdint>
#include <string>

#include "cuda/check.cuh"
#include "cuda/codecs.cuh"
#include "cuda/dependent_launch.cuh"
#include "cuda/moe_experts.h"

namespace fp4kit::cuda {
namespace {

constexpr int kCombineThreads = 256;

// Block (t, c) writes columns [c·256, c·256 + 256) of token t. Rows of the sorted order are ordered by
// (expert, slot), so visiting a token's rows in increasing row index visits its experts in increasing
// id, ties in slot order.
template <bool kBf16Out>
__global__ void combine_kernel(const float* __restrict__ expert_out, const int32_t* __restrict__ row_of_slot,
                               const float* __restrict__ weights, int32_t top_k, int64_t hidden,
                               const float* __restrict__ add, void* out) {
  wait_for_previous_grid();  // launched dependent: nothing read before this
  allow_next_grid();  // the next product may launch now (cuda/dependent_launch.cuh)
  __shared__ int32_t rows[kMaxMoeTopK];
  __shared__ float w[kMaxMoeTopK];
  const int64_t t = blockIdx.x;
  if (threadIdx.x == 0) {
    for (int32_t j = 0; j < top_k; ++j) {
      const int32_t r = row_of_slot[t * top_k + j];
      const float wj = weights[t * top_k + j];
      int32_t i = j;
      for (; i > 0 && rows[i - 1] > r; --i) {
        rows[i] = rows[i - 1];
        w[i] = w[i - 1];
      }
      rows[i] = r;
      w[i] = wj;
    }
  }
  __syncthreads();
  const int64_t c = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (c >= hidden) return;
  float acc = 0.0f;
  for (int32_t j = 0; j < top_k; ++j) acc = __fadd_rn(acc, __fmul_rn(expert_out[rows[j] * hidden + c], w[j]));
  if (add) acc = __fadd_rn(acc, add[t * hidden + c]);
  if constexpr (kBf16Out)
    static_cast<uint16_t*>(out)[t * hidden + c] = float_to_bf16_bits(acc);
  else
    static_cast<float*>(out)[t * hidden + c] = acc;
}

}  // namespace

void moe_combine(const MoeRouting& r, const MoeWorkspace& ws, void* out, GemmOutput out_type, StreamHandle stream,
                 const float* add) {
  const auto shape = [&] {
    return "T=" + std::to_string(r.tokens) + " k=" + std::to_string(r.top_k) + " H=" + std::to_string(ws.hidden());
  };
  if (r.tokens != ws.routed_tokens() || r.top_k != ws.top_k())
    throw InputError("moe_combine [" + shape() + "]: the workspace holds the rows of T=" +
                     std::to_string(ws.routed_tokens()) + " k=" + std::to_string(ws.top_k()) +
                     " (route the same tokens first)");
  if (r.tokens == 0) return;
  if (r.weights == nullptr || out == nullptr)
    throw InputError("moe_combine [" + shape() + "]: the routing weights or the output are null");
  const dim3 grid(static_cast<unsigned>(r.tokens), ceil_div(ws.hidden(), kCombineThreads));
  check(launch_dependent(out_type == GemmOutput::Bf16 ? combine_kernel<true> : combine_kernel<false>, grid,
                         dim3(kCombineThreads), 0, stream, ws.expert_out(), ws.row_of_slot(), r.weights,
                         static_cast<int32_t>(r.top_k), ws.hidden(), add, out),
        "combine_kernel launch");
  check_launch("combine_kernel", shape);
}

}  // namespace fp4kit::cuda
