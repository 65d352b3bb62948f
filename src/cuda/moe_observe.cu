// What a calibration observer needs of the routed experts after a grouped call: per expert, the amax
// of its w1/w3 input (its rows of the sorted x) or of its w2 input (its rows of h), read from the
// workspace's intermediates.
#include <cstdint>
#include <string>

#include "base/error.h"
#include "cuda/abs_max.cuh"
#include "cuda/check.cuh"
#include "cuda/codecs.cuh"
#include "cuda/moe_experts.h"

namespace fp4kit::cuda {
namespace {

constexpr int kObserveThreads = 256;

struct Bf16AsF32 {
  __device__ float operator()(uint16_t v) const { return bf16_bits_to_float(v); }
};

// Block g: out[g] = {max over its rows of row_max, max of |weight of the row's slot · row_max|}.
__global__ void expert_amax_kernel(const float* row_max, const int32_t* offsets, const int32_t* slot_of_row,
                                   const float* slot_weights, float* out) {
  __shared__ float scratch[32];
  const int32_t g = blockIdx.x, begin = offsets[g], end = offsets[g + 1];
  float m = 0.0f, w = 0.0f;
  for (int32_t r = begin + threadIdx.x; r < end; r += blockDim.x) {
    m = max_nan(m, row_max[r]);
    w = max_nan(w, fabsf(slot_weights[slot_of_row[r]] * row_max[r]));
  }
  m = block_max_nan(m, scratch);
  w = block_max_nan(w, scratch);
  if (threadIdx.x == 0) out[2 * g] = m, out[2 * g + 1] = w;
}

}  // namespace

void moe_expert_input_amax(const MoeWorkspace& ws, const MoeRouting& routing, MoeExpertInput input, float* out,
                           float* scratch, StreamHandle stream) {
  const int64_t rows = ws.routed_tokens() * ws.top_k();
  const int64_t cols = input == MoeExpertInput::Gate ? ws.hidden() : ws.inter();
  if (routing.tokens != ws.routed_tokens() || !routing.weights)
    throw InputError("moe_expert_input_amax: the routing is not the one of the workspace's last call");
  if (rows > 0) {
    const uint16_t* x = input == MoeExpertInput::Gate ? ws.sorted_x() : ws.hidden_act();
    row_abs_max_kernel<<<static_cast<unsigned>(rows), kObserveThreads, 0, stream>>>(x, cols, scratch, Bf16AsF32{});
    check_launch("moe_expert_input_amax rows", [&] {
      return "rows=" + std::to_string(rows) + " cols=" + std::to_string(cols);
    });
  }
  expert_amax_kernel<<<static_cast<unsigned>(ws.experts()), kObserveThreads, 0, stream>>>(
      scratch, ws.expert_offsets(), ws.slot_of_row(), routing.weights, out);
  check_launch("moe_expert_input_amax", [&] {
    return "experts=" + std::to_string(ws.experts()) + " rows=" + std::to_string(rows);
  });
}

}  // namespace fp4kit::cuda
