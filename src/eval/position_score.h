#pragma once
// One scored position of `eval`: the base model's and the quantized model's prediction of the next
// token, compared as llama.cpp's `llama-perplexity --kl-divergence` compares them.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace fp4kit::eval {

struct PositionScore {
  int64_t sequence = 0, position = 0;  // the logits of token `position` predict token position+1
  double kld = 0;                      // KL(P_base || P_q) in nats, over the whole vocabulary
  double nll_base = 0, nll_q = 0;      // -ln p(next token)
  double p_diff = 0;                   // p_q(next token) - p_base(next token)
  bool same_top = false;               // the two argmax tokens agree
};

// Scores positions 0..seq-2 of every sequence (the last token has no next token). base and q:
// [batch*seq, vocab] logits; ids: [batch*seq]. A non-finite logit is an InputError naming the model
// ("base model" or "quantized model"), the sequence and the position; every score is computed in double.
std::vector<PositionScore> score_positions(std::span<const float> base, std::span<const float> q,
                                           std::span<const int64_t> ids, int64_t batch, int64_t vocab);

// The first non-finite value of `logits` [rows, vocab] as an InputError naming `model`, the sequence and
// position of its row (rows of `seq` tokens) and the token; nothing when all are finite.
void require_finite_logits(std::span<const float> logits, int64_t seq, int64_t vocab, const std::string& model);

}  // namespace fp4kit::eval
