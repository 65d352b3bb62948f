#pragma once
// How far the logits of a model B are from those of a reference A, position by position:
// KL(softmax(A) || softmax(B)) in nats (computed in double), whether the top-1 tokens agree, and the
// relative logit error ||B - A||_2 / ||A||_2.
#include <cstdint>
#include <vector>

namespace fp4kit::engine {

struct PositionDiff {
  double kl = 0;
  double rel_error = 0;
  int64_t top_a = 0, top_b = 0;
  double lse_a = 0, lse_b = 0;  // log-sum-exp of each row: log p(i) = logit(i) - lse
};

// One position: rows a and b of `vocab` logits.
PositionDiff compare_logit_row(const float* a, const float* b, int64_t vocab);

struct LogitComparison {
  std::vector<PositionDiff> positions;
  double mean_kl = 0, max_kl = 0;
  int64_t max_kl_position = 0;
  double top1_agreement = 0;  // fraction of positions
  double mean_rel_error = 0, max_rel_error = 0;
};

// a, b: [rows, vocab].
LogitComparison compare_logits(const std::vector<float>& a, const std::vector<float>& b, int64_t vocab);

}  // namespace fp4kit::engine
