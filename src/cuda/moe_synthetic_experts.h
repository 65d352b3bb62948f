#pragma once
// Routed-expert weights with made-up contents on the device, to time whole layers at the real shapes
// (a DeepSeek V4-Pro layer: 384 experts, H=7168, I=3072, k=6) without reading or quantizing a
// checkpoint. Every byte decodes to a finite value (no NaN scales), but the values mean nothing.
// Plain C++ header: no CUDA headers.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "cuda/moe_experts.h"
#include "cuda/runtime.h"
#include "cuda/weight_gemm.h"

namespace fp4kit::cuda {

class SyntheticExperts {
 public:
  SyntheticExperts(int32_t experts, int64_t hidden, int64_t inter, WeightFormat format, uint64_t seed = 1);
  MoeExperts view() const { return table_->view(); }
  // Bytes of one expert's w1, w3 and w2, data and scales: what a call reads per active expert.
  size_t bytes_per_expert() const { return bytes_per_expert_; }

 private:
  DeviceBuffer bytes_;  // every matrix of every expert, data then scales, each 256-byte aligned
  size_t bytes_per_expert_ = 0;
  std::unique_ptr<MoeExpertTable> table_;
};

struct MoeTiming {
  double ms_per_call = 0;        // mean over the timed calls, launched one by one on a stream
  double ms_per_call_graph = -1; // the same replayed as one CUDA graph; -1 when capture failed
  int64_t active_experts = 0;    // distinct experts the routing touches
  double active_weight_bytes = 0;  // their weight bytes: what one call must read at least once
};

// Times moe_routed_experts_async for `tokens` BF16 tokens, each routed to `top_k` distinct experts
// drawn uniformly (seeded), output BF16, after a few warm-up calls. Allocates only before timing.
MoeTiming time_routed_experts(const SyntheticExperts& experts, int64_t tokens, int64_t top_k, float swiglu_limit,
                              int iterations, uint64_t seed = 1);

}  // namespace fp4kit::cuda
