#include "engine/generate.h"

#include <chrono>

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

namespace {

void add_stages(Generation& g, const LayerTiming& t) {
  auto stage = [&g](const std::string& name) -> Generation::Stage& {
    for (Generation::Stage& s : g.decode_stages)
      if (s.name == name) return s;
    return g.decode_stages.emplace_back(Generation::Stage{name});
  };
  for (const auto& [name, seconds] : t.stage_seconds) stage(name).device_seconds += seconds;
  for (const auto& [name, seconds] : t.host_stage_seconds) stage(name).host_seconds += seconds;
}

}  // namespace

Generation generate_greedy(LayerRunner& runner, const std::vector<int64_t>& prompt, int64_t max_new_tokens,
                           bool use_cache, std::optional<int64_t> eos) {
  if (prompt.empty()) throw InputError("generate: the prompt holds no token ids");
  const int64_t V = runner.config().base.vocab_size, L = runner.config().layers();
  Generation g;
  std::vector<int64_t> sequence = prompt;
  using Clock = std::chrono::steady_clock;
  for (int64_t step = 0; step < max_new_tokens; ++step) {
    const auto start = Clock::now();
    // One runner call; in a decode step its host time goes to `seconds`, its stages to g.
    const auto measured = [&](double& seconds, const auto& call) {
      const auto t0 = Clock::now();
      call();
      if (step == 0) return;
      seconds += std::chrono::duration<double>(Clock::now() - t0).count();
      add_stages(g, runner.last_timing());
    };
    measured(g.decode_embed_seconds, [&] {
      if (!use_cache) runner.embed(sequence, 1);
      else if (step == 0) runner.embed_continued(prompt, 1, static_cast<int64_t>(prompt.size()) + max_new_tokens);
      else runner.embed_next({g.tokens.back()});
    });
    for (int64_t l = 0; l < L; ++l) measured(g.decode_layers_seconds, [&] { runner.run_layer(l); });
    std::vector<float> logits;
    measured(g.decode_head_seconds, [&] { logits = runner.head_last(); });
    const float* last = logits.data();
    const int64_t next = argmax(last, V);
    g.tokens.push_back(next);
    g.step_logits.insert(g.step_logits.end(), last, last + V);
    sequence.push_back(next);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (step == 0) g.prompt_seconds = seconds;
    else g.decode_seconds += seconds, g.decode_step_seconds.push_back(seconds);
    if (eos && next == *eos) break;
  }
  return g;
}

}  // namespace fp4kit::engine
