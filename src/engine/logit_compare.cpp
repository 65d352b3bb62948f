#include "engine/logit_compare.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "engine/generate.h"

namespace fp4kit::engine {

namespace {

// log-sum-exp of a row, in double.
double log_sum_exp(const float* x, int64_t n) {
  double mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, static_cast<double>(x[i]));
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(static_cast<double>(x[i]) - mx);
  return mx + std::log(s);
}

}  // namespace

PositionDiff compare_logit_row(const float* pa, const float* pb, int64_t vocab) {
  PositionDiff d;
  d.lse_a = log_sum_exp(pa, vocab);
  d.lse_b = log_sum_exp(pb, vocab);
  double kl = 0, diff2 = 0, norm2 = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    const double la = pa[i] - d.lse_a, lb = pb[i] - d.lse_b;
    kl += std::exp(la) * (la - lb);
    diff2 += (static_cast<double>(pb[i]) - pa[i]) * (static_cast<double>(pb[i]) - pa[i]);
    norm2 += static_cast<double>(pa[i]) * pa[i];
  }
  d.kl = std::max(kl, 0.0);  // rounding can leave a tiny negative value for identical rows
  d.rel_error = norm2 > 0 ? std::sqrt(diff2 / norm2) : std::sqrt(diff2);
  d.top_a = argmax(pa, vocab);
  d.top_b = argmax(pb, vocab);
  return d;
}

LogitComparison compare_logits(const std::vector<float>& a, const std::vector<float>& b, int64_t vocab) {
  if (a.size() != b.size() || vocab <= 0 || a.size() % static_cast<size_t>(vocab) != 0)
    throw InputError("compare: the two logit sets differ in shape");
  const int64_t rows = static_cast<int64_t>(a.size()) / vocab;
  LogitComparison c;
  c.positions.resize(static_cast<size_t>(rows));
  int64_t agree = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const PositionDiff& d = c.positions[r] = compare_logit_row(&a[r * vocab], &b[r * vocab], vocab);
    agree += d.top_a == d.top_b;
    c.mean_kl += d.kl;
    c.mean_rel_error += d.rel_error;
    // A NaN row is the worst row: it takes the maximum and keeps it (std::max would drop it).
    if (r == 0 || (!std::isnan(c.max_kl) && (std::isnan(d.kl) || d.kl > c.max_kl))) c.max_kl = d.kl, c.max_kl_position = r;
    if (std::isnan(d.rel_error) || std::isnan(c.max_rel_error)) c.max_rel_error = NAN;
    else c.max_rel_error = std::max(c.max_rel_error, d.rel_error);
  }
  if (rows > 0) {
    c.mean_kl /= static_cast<double>(rows);
    c.mean_rel_error /= static_cast<double>(rows);
    c.top1_agreement = static_cast<double>(agree) / static_cast<double>(rows);
  }
  return c;
}

}  // namespace fp4kit::engine
