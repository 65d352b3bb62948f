#include "eval/kl_statistics.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"

namespace fp4kit::eval {

namespace {

struct Sums {
  double sum = 0, sum2 = 0;
  void add(double x) { sum += x, sum2 += x * x; }
};

MeanError mean_and_error(double sum, double sum2, int64_t n) {
  MeanError r;
  r.mean = sum / static_cast<double>(n);
  const double var = sum2 / static_cast<double>(n) - r.mean * r.mean;
  r.error = n > 1 && var > 0 ? std::sqrt(var / static_cast<double>(n - 1)) : 0.0;
  return r;
}

std::vector<Percentile> percentiles(std::vector<double>& values, std::span<const double> fractions) {
  std::sort(values.begin(), values.end());
  std::vector<Percentile> out;
  for (double f : fractions) out.push_back({f, percentile(values, f)});
  return out;
}

}  // namespace

double percentile(std::span<const double> sorted, double fraction) {
  if (sorted.empty()) throw Error("percentile of no values");
  if (fraction <= 0) return sorted.front();
  if (fraction >= 1) return sorted.back();
  const double x = fraction * static_cast<double>(sorted.size() - 1);
  const size_t i = static_cast<size_t>(x);
  const double t = x - static_cast<double>(i);
  return (1 - t) * sorted[i] + t * sorted[std::min(i + 1, sorted.size() - 1)];
}

KlStatistics summarize(std::span<const PositionScore> scores) {
  if (scores.empty()) throw InputError("eval: no position to score (every sequence needs at least 2 tokens)");
  const int64_t n = static_cast<int64_t>(scores.size());
  Sums nll_q, nll_base, kld, p_diff, p_diff2;
  double nll_cross = 0;
  KlStatistics s;
  s.positions = n;
  std::vector<double> klds, p_diffs;
  klds.reserve(scores.size());
  p_diffs.reserve(scores.size());
  for (const PositionScore& p : scores) {
    nll_q.add(p.nll_q);
    nll_base.add(p.nll_base);
    nll_cross += p.nll_q * p.nll_base;
    kld.add(p.kld);
    p_diff.add(p.p_diff);
    p_diff2.add(p.p_diff * p.p_diff);
    s.top1_agree += p.same_top;
    klds.push_back(p.kld);
    p_diffs.push_back(p.p_diff);
  }
  const MeanError ln_q = mean_and_error(nll_q.sum, nll_q.sum2, n);
  const MeanError ln_base = mean_and_error(nll_base.sum, nll_base.sum2, n);
  const double cov =
      n > 1 ? (nll_cross / static_cast<double>(n) - ln_q.mean * ln_base.mean) / static_cast<double>(n - 1) : 0.0;
  s.ppl_q = {std::exp(ln_q.mean), std::exp(ln_q.mean) * ln_q.error};
  s.ppl_base = {std::exp(ln_base.mean), std::exp(ln_base.mean) * ln_base.error};
  s.cor_ln_ppl = ln_q.error > 0 && ln_base.error > 0 ? cov / (ln_q.error * ln_base.error) : 0.0;
  const double ratio_var = ln_q.error * ln_q.error + ln_base.error * ln_base.error - 2 * cov;
  s.ln_ppl_ratio = {ln_q.mean - ln_base.mean, ratio_var > 0 ? std::sqrt(ratio_var) : 0.0};
  s.ppl_ratio = {std::exp(s.ln_ppl_ratio.mean), std::exp(s.ln_ppl_ratio.mean) * s.ln_ppl_ratio.error};
  const double diff_var =
      s.ppl_q.error * s.ppl_q.error + s.ppl_base.error * s.ppl_base.error - 2 * s.ppl_q.mean * s.ppl_base.mean * cov;
  s.ppl_diff = {s.ppl_q.mean - s.ppl_base.mean, diff_var > 0 ? std::sqrt(diff_var) : 0.0};

  s.kld = mean_and_error(kld.sum, kld.sum2, n);
  s.kld_percentiles = percentiles(klds, kKldPercentiles);
  s.kld_min = klds.front(), s.kld_max = klds.back(), s.kld_median = percentile(klds, 0.5);

  s.p_diff = mean_and_error(p_diff.sum, p_diff.sum2, n);
  s.p_diff_percentiles = percentiles(p_diffs, kPDiffPercentiles);
  s.p_diff_min = p_diffs.front(), s.p_diff_max = p_diffs.back(), s.p_diff_median = percentile(p_diffs, 0.5);
  const MeanError mse = mean_and_error(p_diff2.sum, p_diff2.sum2, n);
  const double rms = std::sqrt(mse.mean);
  s.p_diff_rms = {rms, rms > 0 ? 0.5 / rms * mse.error : 0.0};

  const double top = static_cast<double>(s.top1_agree) / static_cast<double>(n);
  s.top1 = {top, n > 1 ? std::sqrt(top * (1 - top) / static_cast<double>(n - 1)) : 0.0};
  return s;
}

}  // namespace fp4kit::eval
