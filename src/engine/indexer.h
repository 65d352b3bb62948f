#pragma once
// The lightning indexer of CSA layers: which compressed entries a query attends to.
// score(s) = sum_h w_h * ReLU(q_h . k_s) * head_dim^-1/2 over the indexer heads (w_h already holds
// the n_heads^-1/2 factor); the query keeps the min(top_k, visible) best of its `visible` causal
// entries. Equal scores are taken in increasing entry order (torch.topk leaves that open; the
// fixture has no tie at the boundary, and boundary_ties reports any).
#include <cstdint>
#include <vector>

namespace fp4kit::engine {

struct IndexerPick {
  std::vector<int64_t> entries;  // chosen entry indices, ascending
  bool boundary_tie = false;     // the last chosen and the first rejected entry score the same
};

IndexerPick indexer_select(const float* q, const float* head_weights, const float* keys, int64_t visible,
                           int64_t top_k, int64_t heads, int64_t head_dim);

}  // namespace fp4kit::engine
