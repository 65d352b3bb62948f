#include "engine/generate.h"

#include "base/error.h"

namespace fp4kit::engine {

int64_t argmax(const float* logits, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

std::optional<int64_t> config_eos_token_id(const nlohmann::json& config) {
  if (!config.contains("eos_token_id")) return std::nullopt;
  const auto& e = config["eos_token_id"];
  if (e.is_number_integer()) return e.get<int64_t>();
  if (e.is_array() && !e.empty() && e[0].is_number_integer()) return e[0].get<int64_t>();
  return std::nullopt;
}

Generation generate_greedy(Engine& engine, const std::vector<int64_t>& prompt, int64_t max_new_tokens, bool use_cache,
                           std::optional<int64_t> eos) {
  if (prompt.empty()) throw InputError("generate: the prompt holds no token ids");
  const int64_t V = engine.config().base.vocab_size, L = engine.config().layers();
  Generation g;
  std::vector<int64_t> sequence = prompt;
  ForwardState state;
  for (int64_t step = 0; step < max_new_tokens; ++step) {
    if (use_cache) {
      if (step == 0) state = engine.embed(prompt, 1);
      else engine.embed_next(state, {g.tokens.back()});
    } else {
      state = engine.embed(sequence, 1);
    }
    for (int64_t l = 0; l < L; ++l) engine.run_layer(l, state);
    const std::vector<float> logits = engine.head(state, /*last_only=*/true);
    const int64_t next = argmax(logits.data(), V);
    g.tokens.push_back(next);
    g.step_logits.insert(g.step_logits.end(), logits.begin(), logits.end());
    sequence.push_back(next);
    if (eos && next == *eos) break;
  }
  return g;
}

Generation generate_greedy_rerun(LayerRunner& runner, const std::vector<int64_t>& prompt, int64_t max_new_tokens,
                                 std::optional<int64_t> eos) {
  if (prompt.empty()) throw InputError("generate: the prompt holds no token ids");
  const int64_t V = runner.config().base.vocab_size, L = runner.config().layers();
  Generation g;
  std::vector<int64_t> sequence = prompt;
  for (int64_t step = 0; step < max_new_tokens; ++step) {
    runner.embed(sequence, 1);
    for (int64_t l = 0; l < L; ++l) runner.run_layer(l);
    const std::vector<float> logits = runner.head();
    const float* last = logits.data() + (static_cast<int64_t>(sequence.size()) - 1) * V;
    const int64_t next = argmax(last, V);
    g.tokens.push_back(next);
    g.step_logits.insert(g.step_logits.end(), last, last + V);
    sequence.push_back(next);
    if (eos && next == *eos) break;
  }
  return g;
}

}  // namespace fp4kit::engine
