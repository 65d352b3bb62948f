#include "eval/position_score.h"

#include <cmath>

#include "base/error.h"
#include "engine/logit_compare.h"

namespace fp4kit::eval {

void require_finite_logits(std::span<const float> logits, int64_t seq, int64_t vocab, const std::string& model) {
  for (size_t i = 0; i < logits.size(); ++i)
    if (!std::isfinite(logits[i])) {
      const int64_t row = static_cast<int64_t>(i) / vocab;
      throw InputError(model + ": logit of token " + std::to_string(static_cast<int64_t>(i) % vocab) + " at sequence " +
                       std::to_string(row / seq) + ", position " + std::to_string(row % seq) + " is " +
                       (std::isnan(logits[i]) ? "NaN" : "infinite") + ": no statistic is computed from it");
    }
}

std::vector<PositionScore> score_positions(std::span<const float> base, std::span<const float> q,
                                           std::span<const int64_t> ids, int64_t batch, int64_t vocab) {
  const int64_t tokens = static_cast<int64_t>(ids.size());
  if (batch <= 0 || tokens % batch != 0 || vocab <= 0 || base.size() != static_cast<size_t>(tokens * vocab) ||
      q.size() != base.size())
    throw Error("score_positions: logits and ids differ in shape");
  const int64_t seq = tokens / batch;
  require_finite_logits(base, seq, vocab, "base model");
  require_finite_logits(q, seq, vocab, "quantized model");
  std::vector<PositionScore> out;
  out.reserve(static_cast<size_t>(batch * (seq > 0 ? seq - 1 : 0)));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t p = 0; p + 1 < seq; ++p) {
      const int64_t row = b * seq + p;
      const float* lb = &base[static_cast<size_t>(row * vocab)];
      const float* lq = &q[static_cast<size_t>(row * vocab)];
      const engine::PositionDiff d = engine::compare_logit_row(lb, lq, vocab);
      const int64_t next = ids[static_cast<size_t>(row + 1)];
      PositionScore s;
      s.sequence = b;
      s.position = p;
      s.kld = d.kl;
      s.nll_base = d.lse_a - static_cast<double>(lb[next]);
      s.nll_q = d.lse_b - static_cast<double>(lq[next]);
      s.p_diff = std::exp(-s.nll_q) - std::exp(-s.nll_base);
      s.same_top = d.top_a == d.top_b;
      out.push_back(s);
    }
  return out;
}

}  // namespace fp4kit::eval
