#pragma once
// A next token drawn by the model where its logits are (SequenceModel::advance_and_draw; the GPU pass
// keeps them on the device): what is asked, with the rules of the server's sampler
// (serve/sampling.h) and the uniform number given by the caller, and what comes back.
#include <cstdint>
#include <vector>

namespace fp4kit::engine {

struct TokenDraw {
  double temperature = 1.0;  // <= 0: greedy (the first largest logit)
  double top_p = 1.0;        // in (0, 1]
  double min_p = 0.0;        // in [0, 1]
  double uniform = 0.5;      // in (0, 1)
  int64_t top_k = 0;         // 0: no limit
  int64_t top_logprobs = 0;  // how many of the most likely tokens to report
  bool logprobs = false;     // the chosen token's logprob (NaN when false and top_logprobs is 0)
};

struct DrawnToken {
  int32_t token = 0;
  double logprob = 0;              // log-softmax of the raw logits at the token
  std::vector<int32_t> top_ids;    // the top_logprobs most likely tokens, most likely first
  std::vector<double> top_logprobs;
};

}  // namespace fp4kit::engine
