#pragma once
// The DeepSeek V4 mixture of experts for one layer: router (sqrt(softplus) scores; top-k of score +
// bias in score layers, the tid2eid table in hash layers; weights = renormalised scores times
// routed_scaling_factor), routed SwiGLU experts with the swiglu_limit clamp (gate <= limit, up in
// [-limit, limit]), and the shared expert (clamped too, as transformers does). Output = routed +
// shared; routed outputs are added in increasing expert id.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/model_config.h"
#include "engine/observer.h"
#include "engine/weight_store.h"

namespace fp4kit::engine {

struct Routing {
  std::vector<int64_t> experts;  // [T, k], each row ascending
  std::vector<float> weights;    // [T, k], with the routed_scaling_factor
};

struct MoeWeights {
  Tensor gate, bias;              // bias: score layers only
  std::vector<int64_t> tid2eid;   // hash layers only: [vocab, k]
  Tensor shared_w1, shared_w3, shared_w2;
  int64_t shared_inter = 0;
};

MoeWeights load_moe_weights(WeightStore& store, const ModelConfig& cfg, int64_t layer);

struct MoeContext {
  const ModelConfig* cfg = nullptr;
  int64_t layer = 0;
  unsigned threads = 1;
  LinearObserver* observer = nullptr;
  bool observe_all_experts = false;
};

// The router's choice from scores [T, E] (after sqrt(softplus)): the tid2eid rows [vocab, k] of ids
// (hash layers), else the top k of score + bias (NaN as -inf, ties to the lower expert); weights the
// chosen scores over their sum (in the order chosen) times `scaling`; each token's experts ascending.
Routing route_scores(const float* score, int64_t T, int64_t E, int64_t k, const float* bias, const int64_t* tid2eid,
                     const int64_t* ids, float scaling);

// x [T, H] (after ffn_norm), ids [T] (hash routing) -> out [T, H]; the routing is returned.
Routing moe_forward(const MoeContext& ctx, WeightStore& store, const MoeWeights& w, const float* x,
                    const int64_t* ids, int64_t T, float* out);

}  // namespace fp4kit::engine
