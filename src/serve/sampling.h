#pragma once
// Choosing the next token from a row of logits, as the OpenAI API describes the knobs:
//   temperature 0   greedy: the first largest logit (exactly engine::argmax, so that the server's
//                   greedy output equals `fp4kit generate`)
//   temperature T   logits / T, then top_k (0: all), softmax, top_p (smallest set of the most likely
//                   tokens whose probability sums to at least top_p), min_p (drop tokens below
//                   min_p * the largest probability), renormalize, draw.
// The draw uses word `step` of a counter-based stream keyed by the seed (synth::CounterRng): the
// same seed gives the same tokens whatever else the server runs, and on any platform with IEEE
// doubles. With top_k, top_p or min_p, candidates are ordered by probability, ties by token id,
// before the draw; without them every token is a candidate and the walk is in id order (the same
// distribution, and no sort of the vocabulary).
// Exactly: with candidates c_0.. (logits descending, ties by id; k of them), p_i = exp(l_i/T -
// l_0/T) in double and w_i = floor(p_i * 2^F) as integers (F = sampling_fraction_bits(k), so that
// their sum fits 62 bits; a NaN p_i as 0), S_j = w_0 + .. + w_j: top_p keeps the first j + 1 with
// S_j * 2^63 >= floor(top_p * 2^63) * S_(k-1); min_p keeps those with p_i >= min_p; the token is
// the first kept c_j with S_j > floor(floor(u * 2^54) * S_(n-1) / 2^54), u the uniform number.
// Without top_k (or top_k >= vocab), with top_p = 1 and min_p = 0, c_i is token i instead (l_0
// above still the largest logit), and where every weight is 0 the token is the first largest logit.
// Integer sums are the same in any order of addition, which lets the GPU draw (cuda/token_draw.h)
// give these tokens too; probabilities below 2^-F of the largest are 0.
// Logprobs are those of the model's own distribution (log-softmax of the raw logits), as vLLM
// reports them by default; computed only when asked for (an exp over the whole vocabulary).
#include <cstdint>
#include <vector>

#include "engine/token_draw.h"

namespace fp4kit::serve {

struct SamplingParams {
  double temperature = 1.0;
  double top_p = 1.0;
  int64_t top_k = 0;       // 0: no limit
  double min_p = 0.0;
  uint64_t seed = 0;
  int64_t top_logprobs = 0;  // how many alternatives to report with each token
  bool logprobs = true;      // the chosen token's logprob (NaN in SampledToken when false and top_logprobs is 0)
};

struct TokenLogprob {
  int32_t token = 0;
  double logprob = 0;
};

struct SampledToken {
  int32_t token = 0;
  double logprob = 0;                // of the chosen token
  std::vector<TokenLogprob> top;     // the top_logprobs most likely tokens, most likely first
};

// `logits`: one row of `vocab` finite values. `step`: the index of this token in the request's
// output (selects the random word).
SampledToken sample_token(const float* logits, int64_t vocab, const SamplingParams& params, uint64_t step);
// The same with the uniform number given (engine/token_draw.h): what sample_token computes once it
// has drawn it, and the reference of a model that draws its own tokens (cuda/token_draw.h).
SampledToken draw_token(const float* logits, int64_t vocab, const engine::TokenDraw& draw);

// F above for k candidates: 62 minus the bits of k.
int sampling_fraction_bits(int64_t candidates);

// The random number of draw `step` for `seed`, uniform in (0, 1).
double sampling_uniform(uint64_t seed, uint64_t step);

// The same draw asked of a model that draws its tokens where its logits are
// (engine::SequenceModel::advance_and_draw), and what it gives as a SampledToken.
engine::TokenDraw token_draw(const SamplingParams& params, uint64_t step);
SampledToken sampled_token(engine::DrawnToken drawn);

}  // namespace fp4kit::serve
