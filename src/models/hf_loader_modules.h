#pragma once
// Building the modules an engine's model creates from a Hugging Face config.json (the families'
// tables, engine_contracts_*.cpp). Every size is checked (an integer, within the bound a real model
// stays under) so that a malformed or hostile config is an error naming the field, never a model of
// billions of tensors.
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/engine_contract.h"

namespace fp4kit {

// config[key] as a size in [0, most]; `fallback` when the key is absent or null. Throws
// std::runtime_error naming the field otherwise.
inline int64_t config_size(const nlohmann::json& config, const char* key, std::optional<int64_t> fallback, int64_t most) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) {
    if (fallback) return *fallback;
    throw std::runtime_error(std::string("config.json has no '") + key + "'");
  }
  if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > most)
    throw std::runtime_error(std::string("config.json '") + key + "' is " + it->dump() + ", not an integer in [0, " +
                             std::to_string(most) + "]");
  return it->get<int64_t>();
}

// Bounds that hold for every released model by orders of magnitude.
inline constexpr int64_t kMostLayers = 1'000, kMostExperts = 10'000, kMostWidth = 1'000'000, kMostExpertModules = 200'000;

// The pieces Hugging Face decoders share, appended in the loaders' order.
class ModuleList {
 public:
  void linear(std::string name, int64_t n, int64_t k) { modules_.push_back({std::move(name), true, {n, k}}); }
  void plain(std::string name, std::vector<int64_t> shape) { modules_.push_back({std::move(name), false, std::move(shape)}); }
  // model.embed_tokens, model.norm and lm_head (absent when tied to the embeddings).
  void model_ends(int64_t vocab, int64_t hidden, bool tied) {
    plain("model.embed_tokens.weight", {vocab, hidden});
    plain("model.norm.weight", {hidden});
    if (!tied) linear("lm_head", vocab, hidden);
  }
  void layer_norms(const std::string& layer, int64_t hidden) {
    plain(layer + "input_layernorm.weight", {hidden});
    plain(layer + "post_attention_layernorm.weight", {hidden});
  }
  // gate_proj / up_proj [inter, hidden] and down_proj [hidden, inter] under `prefix` ("...mlp.").
  void gated_mlp(const std::string& prefix, int64_t inter, int64_t hidden) {
    linear(prefix + "gate_proj", inter, hidden);
    linear(prefix + "up_proj", inter, hidden);
    linear(prefix + "down_proj", hidden, inter);
  }
  // The router's weight and every routed expert under `mlp` ("model.layers.N.mlp.").
  void routed_experts(const std::string& mlp, int64_t experts, int64_t inter, int64_t hidden) {
    plain(mlp + "gate.weight", {experts, hidden});
    for (int64_t e = 0; e < experts; ++e) gated_mlp(mlp + "experts." + std::to_string(e) + ".", inter, hidden);
  }
  std::vector<LoaderModule> take() { return std::move(modules_); }

 private:
  std::vector<LoaderModule> modules_;
};

// Throws when layers x experts would build more expert modules than any checkpoint holds.
inline void check_expert_count(int64_t layers, int64_t experts) {
  if (layers * experts > kMostExpertModules)
    throw std::runtime_error("config.json describes " + std::to_string(layers) + " layers of " + std::to_string(experts) +
                             " experts, beyond any checkpoint");
}

}  // namespace fp4kit
