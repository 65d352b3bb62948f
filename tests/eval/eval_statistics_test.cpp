// The statistics of `fp4kit eval` recomputed here, independently and in double, from the logits that
// `fp4kit run --out` writes for the same token ids through each model, with the conventions of
// llama.cpp's llama-perplexity --kl-divergence (docs/eval.md), and compared to eval's JSON report.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "eval_test_util.h"

namespace fp4kit::testing {
namespace {

std::vector<float> run_logits(const std::string& model, const std::string& tag) {
  const std::string out = fresh_temp_dir(tag) + "/logits.safetensors";
  const CommandResult r = run_fp4kit("run " + model + " --ids-file " + eval_ids() + " --out " + out + " --top 1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const io::SafetensorsFile f = io::SafetensorsFile::open(out);
  const io::TensorInfo& t = f.at("logits");
  EXPECT_EQ(t.shape, (std::vector<int64_t>{4, 96, 1024}));
  std::vector<float> v(static_cast<size_t>(t.numel()));
  f.read(t, std::as_writable_bytes(std::span<float>(v)));
  return v;
}

// log softmax of one row, the plain way.
std::vector<double> log_probs(const float* row, int vocab) {
  double m = row[0];
  for (int i = 1; i < vocab; ++i) m = std::max(m, double(row[i]));
  double z = 0;
  for (int i = 0; i < vocab; ++i) z += std::exp(double(row[i]) - m);
  std::vector<double> lp(vocab);
  for (int i = 0; i < vocab; ++i) lp[i] = double(row[i]) - m - std::log(z);
  return lp;
}

double mean(const std::vector<double>& x) { return std::accumulate(x.begin(), x.end(), 0.0) / double(x.size()); }
// Standard error of the mean: sample variance / n, as sqrt((E[x^2] - E[x]^2)/(n-1)).
double sem(const std::vector<double>& x) {
  const double m = mean(x);
  double s = 0;
  for (double v : x) s += (v - m) * (v - m);
  return std::sqrt(s / double(x.size()) / double(x.size() - 1));
}
double cov_of_means(const std::vector<double>& a, const std::vector<double>& b) {
  const double ma = mean(a), mb = mean(b);
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (a[i] - ma) * (b[i] - mb);
  return s / double(a.size()) / double(a.size() - 1);
}
// Linear interpolation between closest ranks: x = f*(n-1).
double pct(std::vector<double> x, double f) {
  std::sort(x.begin(), x.end());
  const double pos = f * double(x.size() - 1);
  const size_t lo = size_t(std::floor(pos));
  const size_t hi = std::min(lo + 1, x.size() - 1);
  return x[lo] + (pos - double(lo)) * (x[hi] - x[lo]);
}

void expect_close(const nlohmann::json& got, double want, const char* what) {
  ASSERT_TRUE(got.is_number()) << what;
  const double g = got.get<double>();
  EXPECT_TRUE(std::fabs(g - want) <= 1e-9 * std::max(1.0, std::fabs(want)))
      << what << ": eval " << g << ", here " << want;
}

TEST(EvalStatistics, EqualAnIndependentComputationFromRunLogits) {
  const std::string q = converted_tiny(modelopt_args());  // requantized experts: KLD > 0
  const EvalRun e = run_eval(q, tiny(), "--max-kld 1 --min-top1 0 --no-attribution", full_data());
  ASSERT_EQ(e.command.exit_code, 0) << e.command.output;
  const std::vector<float> lb = run_logits(tiny(), "eval-stat-base"), lq = run_logits(q, "eval-stat-q");
  const std::vector<int64_t> tok = eval_token_ids();
  const int V = 1024, B = 4, S = 96;
  std::vector<double> kld, nll_b, nll_q, dp;
  int agree = 0;
  for (int b = 0; b < B; ++b)
    for (int p = 0; p + 1 < S; ++p) {
      const size_t row = size_t(b * S + p);
      const auto pb = log_probs(&lb[row * V], V), pq = log_probs(&lq[row * V], V);
      double k = 0;
      for (int i = 0; i < V; ++i) k += std::exp(pb[i]) * (pb[i] - pq[i]);
      kld.push_back(k);
      const int64_t next = tok[row + 1];
      nll_b.push_back(-pb[next]);
      nll_q.push_back(-pq[next]);
      dp.push_back(std::exp(pq[next]) - std::exp(pb[next]));
      agree +=
          std::max_element(pb.begin(), pb.end()) - pb.begin() == std::max_element(pq.begin(), pq.end()) - pq.begin();
    }
  const double n = double(kld.size());
  const nlohmann::json& s = e.report["statistics"];
  ASSERT_EQ(s["positions"], kld.size());
  ASSERT_GT(mean(kld), 1e-7) << "the requantized model must differ from its source for this test to mean anything";

  const double ppl_q = std::exp(mean(nll_q)), ppl_b = std::exp(mean(nll_b));
  expect_close(s["ppl_q"]["value"], ppl_q, "PPL(Q)");
  expect_close(s["ppl_q"]["error"], ppl_q * sem(nll_q), "PPL(Q) error");
  expect_close(s["ppl_base"]["value"], ppl_b, "PPL(base)");
  expect_close(s["ppl_base"]["error"], ppl_b * sem(nll_b), "PPL(base) error");
  const double cov = cov_of_means(nll_q, nll_b);
  expect_close(s["cor_ln_ppl"], cov / (sem(nll_q) * sem(nll_b)), "Cor(ln PPL)");
  const double lr_err = std::sqrt(sem(nll_q) * sem(nll_q) + sem(nll_b) * sem(nll_b) - 2 * cov);
  expect_close(s["ln_ppl_ratio"]["value"], mean(nll_q) - mean(nll_b), "ln ratio");
  expect_close(s["ln_ppl_ratio"]["error"], lr_err, "ln ratio error");
  expect_close(s["ppl_ratio"]["value"], ppl_q / ppl_b, "PPL ratio");
  expect_close(s["ppl_ratio"]["error"], ppl_q / ppl_b * lr_err, "PPL ratio error");

  expect_close(s["kld"]["mean"], mean(kld), "mean KLD");
  expect_close(s["kld"]["error"], sem(kld), "KLD error");
  expect_close(s["kld"]["max"], *std::max_element(kld.begin(), kld.end()), "max KLD");
  expect_close(s["kld"]["min"], *std::min_element(kld.begin(), kld.end()), "min KLD");
  expect_close(s["kld"]["median"], pct(kld, 0.5), "median KLD");
  const double kf[] = {0.999, 0.99, 0.95, 0.90, 0.5, 0.10, 0.05, 0.01, 0.001};
  ASSERT_EQ(s["kld"]["percentiles"].size(), std::size(kf));
  for (size_t i = 0; i < std::size(kf); ++i) {
    EXPECT_EQ(s["kld"]["percentiles"][i]["fraction"].get<double>(), kf[i]);
    expect_close(s["kld"]["percentiles"][i]["value"], pct(kld, kf[i]), "KLD percentile");
  }
  expect_close(s["p_diff"]["mean"], mean(dp), "mean dp");
  expect_close(s["p_diff"]["error"], sem(dp), "dp error");
  expect_close(s["p_diff"]["median"], pct(dp, 0.5), "median dp");
  for (const auto& p : s["p_diff"]["percentiles"])
    expect_close(p["value"], pct(dp, p["fraction"].get<double>()), "dp percentile");
  std::vector<double> dp2;
  for (double d : dp) dp2.push_back(d * d);
  const double rms = std::sqrt(mean(dp2));
  expect_close(s["p_diff"]["rms"]["value"], rms, "RMS dp");
  expect_close(s["p_diff"]["rms"]["error"], 0.5 / rms * sem(dp2), "RMS dp error");
  const double top = agree / n;
  expect_close(s["top1"]["value"], top, "top-1");
  expect_close(s["top1"]["error"], std::sqrt(top * (1 - top) / (n - 1)), "top-1 error");
  // The per-position values too.
  ASSERT_EQ(e.report["positions"]["kld"].size(), kld.size());
  for (size_t i = 0; i < kld.size(); ++i) expect_close(e.report["positions"]["kld"][i], kld[i], "position KLD");
}

}  // namespace
}  // namespace fp4kit::testing
