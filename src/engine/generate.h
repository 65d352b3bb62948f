#pragma once
// Greedy decoding. With the cache, the prompt is run once and each new token continues the
// attention caches (sliding window, compressor states, entries); without it, every step reruns the
// whole sequence (the definition the cached loop must reproduce).
#include <cstdint>
#include <optional>
#include <vector>

#include "engine/engine.h"

namespace fp4kit::engine {

struct Generation {
  std::vector<int64_t> tokens;     // the new tokens
  std::vector<float> step_logits;  // [tokens, vocab]: the logits each token was chosen from
};

// Index of the largest logit; the first one on ties (as torch.argmax).
int64_t argmax(const float* logits, int64_t n);

// Stops after max_new_tokens, or after emitting `eos` when given.
Generation generate_greedy(Engine& engine, const std::vector<int64_t>& prompt, int64_t max_new_tokens,
                           bool use_cache = true, std::optional<int64_t> eos = std::nullopt);

}  // namespace fp4kit::engine
