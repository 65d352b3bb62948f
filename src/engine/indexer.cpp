#include "engine/indexer.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/matmul.h"

namespace fp4kit::engine {

IndexerPick indexer_select(const float* q, const float* head_weights, const float* keys, int64_t visible,
                           int64_t top_k, int64_t heads, int64_t head_dim) {
  IndexerPick pick;
  const int64_t keep = std::min(top_k, visible);
  if (keep == visible) {  // every causal entry is chosen: the scores do not matter
    pick.entries.resize(static_cast<size_t>(visible));
    std::iota(pick.entries.begin(), pick.entries.end(), 0);
    return pick;
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  std::vector<float> score(static_cast<size_t>(visible));
  for (int64_t s = 0; s < visible; ++s) {
    float total = 0;
    for (int64_t h = 0; h < heads; ++h) {
      const float qk = dot(q + h * head_dim, keys + s * head_dim, static_cast<size_t>(head_dim));
      total += std::max(qk, 0.0f) * scale * head_weights[h];
    }
    score[s] = std::isnan(total) ? -INFINITY : total;  // keeps the sort well defined
  }
  std::vector<int64_t> order(static_cast<size_t>(visible));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return score[a] > score[b]; });
  pick.boundary_tie = score[order[keep - 1]] == score[order[keep]];
  pick.entries.assign(order.begin(), order.begin() + keep);
  std::sort(pick.entries.begin(), pick.entries.end());
  return pick;
}

}  // namespace fp4kit::engine
