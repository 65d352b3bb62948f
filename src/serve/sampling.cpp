#include "serve/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/generate.h"
#include "serve/logit_order.h"
#include "synth/random.h"

namespace fp4kit::serve {

namespace {

// log of the softmax's normalizer of the raw logits, in double: a token's logprob is its logit minus it.
double log_normalizer(const float* logits, int64_t vocab) {
  const float m = *std::max_element(logits, logits + vocab);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - m);
  return m + std::log(sum);
}

int32_t draw(const float* logits, int64_t vocab, const SamplingParams& p, uint64_t step) {
  const int64_t k = p.top_k > 0 ? std::min(p.top_k, vocab) : vocab;
  // This thread's buffers, reused from token to token (megabytes at V4's vocabulary).
  thread_local std::vector<int32_t> ids;
  thread_local std::vector<double> prob;
  order_by_logit(logits, vocab, k, ids);
  prob.resize(ids.size());
  const double top = static_cast<double>(logits[ids[0]]) / p.temperature;
  double sum = 0;
  for (size_t i = 0; i < ids.size(); ++i) sum += prob[i] = std::exp(static_cast<double>(logits[ids[i]]) / p.temperature - top);
  size_t n = ids.size();
  if (p.top_p < 1.0) {
    double acc = 0;
    for (size_t i = 0; i < n; ++i) {
      acc += prob[i] / sum;
      if (acc >= p.top_p) {
        n = i + 1;
        break;
      }
    }
  }
  if (p.min_p > 0.0) {
    // prob[0] is the largest (before normalization; the ratio is what matters).
    size_t m = 1;
    while (m < n && prob[m] >= p.min_p * prob[0]) ++m;
    n = m;
  }
  double kept = 0;
  for (size_t i = 0; i < n; ++i) kept += prob[i];
  const double target = sampling_uniform(p.seed, step) * kept;
  double acc = 0;
  for (size_t i = 0; i < n; ++i) {
    acc += prob[i];
    if (target < acc) return ids[i];
  }
  return ids[n - 1];  // rounding left the target at the very end
}

}  // namespace

double sampling_uniform(uint64_t seed, uint64_t step) {
  const synth::CounterRng rng = synth::CounterRng{seed}.child("sampling");
  // 53 random bits, (2k+1) * 2^-54: never 0 or 1.
  return static_cast<double>(2 * (rng.bits(step) >> 11) + 1) * 0x1p-54;
}

SampledToken sample_token(const float* logits, int64_t vocab, const SamplingParams& p, uint64_t step) {
  SampledToken out;
  out.token = p.temperature <= 0.0 ? static_cast<int32_t>(engine::argmax(logits, vocab)) : draw(logits, vocab, p, step);
  if (!p.logprobs && p.top_logprobs == 0) {
    out.logprob = std::numeric_limits<double>::quiet_NaN();
    return out;
  }
  const double log_z = log_normalizer(logits, vocab);
  out.logprob = static_cast<double>(logits[out.token]) - log_z;
  if (p.top_logprobs > 0)
    for (int32_t id : order_by_logit(logits, vocab, p.top_logprobs))
      out.top.push_back({id, static_cast<double>(logits[id]) - log_z});
  return out;
}

}  // namespace fp4kit::serve
