#pragma once
// The next token of each row of logits, drawn on the device, so that a decode step's logits
// (129280 floats a sequence for V4) need not go to the host. The rules are the server's CPU sampler
// (serve/sampling.h, the reference): greedy is the first largest logit; a row whose every token is
// a candidate (no top_k, top_p or min_p) walks the tokens in id order; otherwise candidates
// ordered by logit, largest first, ties by id (-0 as +0), top_k, probabilities in double, their
// integer weights and exact running sums, top_p, min_p, the draw. The order is CUB's stable radix
// sort of the same keys; the sums are integers, the same in any order. Only exp is not the C
// library's (CUDA's may differ in the last bit, moving a weight by one unit of 2^-F): a draw can
// differ only where the uniform number falls within a few such units of a boundary.
// Plain C++ header: no CUDA headers.
#include <cstdint>
#include <vector>

#include "cuda/runtime.h"

namespace fp4kit::cuda {

struct TokenDrawRow {
  double temperature = 1.0;  // <= 0: greedy
  double top_p = 1.0;
  double min_p = 0.0;
  double uniform = 0.5;  // in (0, 1): serve::sampling_uniform(seed, step)
  int64_t top_k = 0;     // 0: no limit
  int32_t top_logprobs = 0;
  bool logprobs = false;  // the chosen token's logprob (NaN when false and top_logprobs is 0)
};

struct TokenDrawResult {
  int32_t token = 0;
  double logprob = 0;  // log-softmax of the raw logits at the token (NaN unless asked)
  std::vector<int32_t> top_ids;  // the top_logprobs most likely, most likely first
  std::vector<double> top_logprobs;
  int64_t first_non_finite = -1;  // the smallest id whose logit is NaN or infinite (then nothing else is set)
};

// logits: device [rows.size(), vocab] F32. Synchronizes `stream` (the results are on the host).
std::vector<TokenDrawResult> draw_tokens(const float* logits, int64_t vocab, const std::vector<TokenDrawRow>& rows,
                                         StreamHandle stream);

}  // namespace fp4kit::cuda
