#pragma once
// Greedy decoding. With the cache, the prompt is run once and each new token continues the
// attention caches (sliding window, compressor states, entries); without it, every step reruns the
// whole sequence (the definition the cached loop must reproduce).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "engine/layer_runner.h"

namespace fp4kit::engine {

struct Generation {
  std::vector<int64_t> tokens;     // the new tokens
  std::vector<float> step_logits;  // [tokens, vocab]: the logits each token was chosen from
  double prompt_seconds = 0;       // the first step (the prompt, and the first token)
  double decode_seconds = 0;       // the steps after it (one token each)
  std::vector<double> decode_step_seconds;  // each of those steps
  // The decode steps' time by stage, summed over the steps, for runners that measure it
  // (LayerTiming): device seconds and host seconds per stage, in order of first appearance.
  struct Stage {
    std::string name;
    double device_seconds = 0, host_seconds = 0;
  };
  std::vector<Stage> decode_stages;
  // The decode steps' host time by runner call, summed over the steps: the next token's embedding
  // (embed_next), every layer (run_layer), the head (head_last).
  double decode_embed_seconds = 0, decode_layers_seconds = 0, decode_head_seconds = 0;
};

// Index of the largest logit; the first one on ties (as torch.argmax).
int64_t argmax(const float* logits, int64_t n);

// The end-of-sequence id of a config.json (eos_token_id, or the first of a list), if it names one.
std::optional<int64_t> config_eos_token_id(const nlohmann::json& config);

// Greedy decoding over a layer runner (the CPU engine or the GPU pass): with its attention caches
// (embed_continued / embed_next), or rerunning the whole sequence so far at every step. Stops after
// max_new_tokens, or after emitting `eos` when given.
Generation generate_greedy(LayerRunner& runner, const std::vector<int64_t>& prompt, int64_t max_new_tokens,
                           bool use_cache = true, std::optional<int64_t> eos = std::nullopt);

}  // namespace fp4kit::engine
