#pragma once
// The summary statistics of llama.cpp's `llama-perplexity --kl-divergence` over scored positions
// (docs/eval.md gives every formula). Conventions, as llama.cpp's tools/perplexity/perplexity.cpp:
//   mean ± error      error = sqrt((E[x^2] - E[x]^2) / (n - 1)), the standard error of the mean
//   PPL = exp(mean nll), its error PPL * error(nll); Cor(ln PPL) = cov / (error_q * error_base) with
//   cov = (E[ab] - E[a]E[b]) / (n - 1); ln ratio error sqrt(e_q^2 + e_base^2 - 2 cov)
//   percentile(f)     sorted values v, x = f*(n-1), linear between v[floor x] and v[floor x + 1]
//   median            the mean of the two middle values for even n (= percentile(0.5))
//   RMS Δp = sqrt(mean Δp^2), error 0.5 / RMS * error(Δp^2); top-1 error sqrt(p(1-p)/(n-1))
// Unlike llama.cpp, errors are given from n = 2 on (llama.cpp prints 0 below 11 positions) and the
// percentiles for any n >= 1 (llama.cpp prints none below 100); with n = 1 every error is 0.
#include <cstdint>
#include <span>
#include <vector>

#include "eval/position_score.h"

namespace fp4kit::eval {

struct MeanError {
  double mean = 0, error = 0;
};

// The fractions reported for KLD and Δp, highest first.
inline constexpr double kKldPercentiles[] = {0.999, 0.99, 0.95, 0.90, 0.5, 0.10, 0.05, 0.01, 0.001};
inline constexpr double kPDiffPercentiles[] = {0.999, 0.99, 0.95, 0.90, 0.75, 0.5, 0.25, 0.10, 0.05, 0.01, 0.001};

struct Percentile {
  double fraction = 0, value = 0;
};

struct KlStatistics {
  int64_t positions = 0;
  MeanError ppl_q, ppl_base, ln_ppl_ratio, ppl_ratio, ppl_diff;
  double cor_ln_ppl = 0;  // 0 when either nll is constant
  MeanError kld;
  double kld_min = 0, kld_max = 0, kld_median = 0;
  std::vector<Percentile> kld_percentiles;  // kKldPercentiles
  MeanError p_diff;
  double p_diff_min = 0, p_diff_max = 0, p_diff_median = 0;
  std::vector<Percentile> p_diff_percentiles;  // kPDiffPercentiles
  MeanError p_diff_rms;
  MeanError top1;  // fraction of positions whose argmax tokens agree
  int64_t top1_agree = 0;
};

// InputError when `scores` is empty (too little data to score a single position).
KlStatistics summarize(std::span<const PositionScore> scores);

// The convention above over `sorted` (ascending, not empty).
double percentile(std::span<const double> sorted, double fraction);

}  // namespace fp4kit::eval
