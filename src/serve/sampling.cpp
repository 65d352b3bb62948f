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

__extension__ typedef unsigned __int128 U128;

// sums[i] = w_0 + .. + w_i for i < n, w_i = floor(prob(i) * 2^bits) (a NaN probability, l/T
// overflowing, as 0): exact, so any order of addition gives them.
template <class Prob>
void fill_running_sums(size_t n, int bits, Prob prob, std::vector<uint64_t>& sums) {
  sums.resize(n);
  uint64_t sum = 0;
  for (size_t i = 0; i < n; ++i) {
    const double w = prob(i);
    sums[i] = sum += w > 0.0 ? static_cast<uint64_t>(std::ldexp(w, bits)) : 0;
  }
}

// The draw among the first n: the first i with sums[i] > floor(floor(u * 2^54) * sums[n - 1] / 2^54),
// or n where every weight is 0.
size_t first_past_draw(const std::vector<uint64_t>& sums, size_t n, double uniform) {
  const uint64_t target = static_cast<uint64_t>(
      (static_cast<U128>(static_cast<uint64_t>(std::ldexp(uniform, 54))) * sums[n - 1]) >> 54);
  return static_cast<size_t>(std::upper_bound(sums.begin(), sums.begin() + static_cast<ptrdiff_t>(n), target) - sums.begin());
}

// With every token a candidate (no top_k, top_p or min_p) the order of the walk does not change
// the distribution: tokens in id order, with no sort.
int32_t draw_in_id_order(const float* logits, int64_t vocab, const engine::TokenDraw& p) {
  const int64_t first = engine::argmax(logits, vocab);
  const double top = static_cast<double>(logits[first]) / p.temperature;
  thread_local std::vector<uint64_t> sums;  // reused from token to token
  fill_running_sums(static_cast<size_t>(vocab), sampling_fraction_bits(vocab),
                    [&](size_t i) { return std::exp(static_cast<double>(logits[i]) / p.temperature - top); }, sums);
  const size_t at = first_past_draw(sums, sums.size(), p.uniform);
  return static_cast<int32_t>(at < sums.size() ? static_cast<int64_t>(at) : first);  // past the end: every weight 0
}

int32_t draw(const float* logits, int64_t vocab, const engine::TokenDraw& p) {
  const int64_t k = p.top_k > 0 ? std::min(p.top_k, vocab) : vocab;
  if (k == vocab && p.top_p >= 1.0 && p.min_p <= 0.0) return draw_in_id_order(logits, vocab, p);
  // This thread's buffers, reused from token to token (megabytes at V4's vocabulary).
  thread_local std::vector<int32_t> ids;
  thread_local std::vector<uint64_t> sums;
  order_by_logit(logits, vocab, k, ids);
  const double top = static_cast<double>(logits[ids[0]]) / p.temperature;
  const auto prob = [&](size_t i) { return std::exp(static_cast<double>(logits[ids[i]]) / p.temperature - top); };
  fill_running_sums(ids.size(), sampling_fraction_bits(k), prob, sums);
  size_t n = ids.size();
  if (p.top_p < 1.0) {
    const U128 threshold = static_cast<U128>(static_cast<uint64_t>(std::ldexp(p.top_p, 63))) * sums.back();
    for (size_t i = 0; i < n; ++i)
      if ((static_cast<U128>(sums[i]) << 63) >= threshold) {
        n = i + 1;
        break;
      }
  }
  if (p.min_p > 0.0) {
    // prob(0) is 1, the largest.
    size_t m = 1;
    while (m < n && prob(m) >= p.min_p) ++m;
    n = m;
  }
  return ids[std::min(first_past_draw(sums, n, p.uniform), n - 1)];  // past the end only when every weight is 0
}

}  // namespace

int sampling_fraction_bits(int64_t candidates) {
  int width = 0;
  while (width < 63 && (uint64_t{1} << width) <= static_cast<uint64_t>(candidates)) ++width;
  return 62 - width;
}

double sampling_uniform(uint64_t seed, uint64_t step) {
  const synth::CounterRng rng = synth::CounterRng{seed}.child("sampling");
  // 53 random bits, (2k+1) * 2^-54: never 0 or 1.
  return static_cast<double>(2 * (rng.bits(step) >> 11) + 1) * 0x1p-54;
}

engine::TokenDraw token_draw(const SamplingParams& p, uint64_t step) {
  engine::TokenDraw d;
  d.temperature = p.temperature, d.top_p = p.top_p, d.min_p = p.min_p, d.top_k = p.top_k;
  d.uniform = p.temperature > 0.0 ? sampling_uniform(p.seed, step) : 0.5;
  d.top_logprobs = p.top_logprobs, d.logprobs = p.logprobs;
  return d;
}

SampledToken sampled_token(engine::DrawnToken drawn) {
  SampledToken out;
  out.token = drawn.token;
  out.logprob = drawn.logprob;
  for (size_t i = 0; i < drawn.top_ids.size() && i < drawn.top_logprobs.size(); ++i)
    out.top.push_back({drawn.top_ids[i], drawn.top_logprobs[i]});
  return out;
}

SampledToken draw_token(const float* logits, int64_t vocab, const engine::TokenDraw& p) {
  SampledToken out;
  out.token = p.temperature <= 0.0 ? static_cast<int32_t>(engine::argmax(logits, vocab)) : draw(logits, vocab, p);
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

SampledToken sample_token(const float* logits, int64_t vocab, const SamplingParams& p, uint64_t step) {
  return draw_token(logits, vocab, token_draw(p, step));
}

}  // namespace fp4kit::serve
