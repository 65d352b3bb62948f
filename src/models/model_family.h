#pragma once
// Which model family a checkpoint belongs to, and what that means for conversion, as data: which
// weights are routed experts, which sit in the multi-token-prediction block, which are GEMM weights
// a recipe may quantize, and which are never quantized (embeddings, heads, norms, routers...).
//  - DeepSeek V4: DeepSeek's own names (`layers.N.ffn.experts.E.w1`, `mtp.N.`), as released.
//  - DeepSeek V3 / V3.2 (and V2, Kimi K2): Hugging Face names (`model.layers.N.mlp.experts.E.gate_proj`,
//    `self_attn.q_a_proj`), the MTP block stored as `model.layers.<num_hidden_layers>`.
//  - Llama-like: any other Hugging Face decoder (`model.layers.N.self_attn.q_proj`, `mlp.gate_proj`),
//    dense or MoE (Qwen-MoE `mlp.experts.E.gate_proj` with router `mlp.gate`, Mixtral
//    `block_sparse_moe.experts.E.w1` with router `block_sparse_moe.gate`).
// Nothing here reads tensor data.
#include <cstdint>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace fp4kit {

enum class ModelFamily : uint8_t { DeepseekV4, DeepseekV3, LlamaLike };
std::string_view model_family_name(ModelFamily);  // "deepseek-v4", "deepseek-v3", "llama-like"

class ModelDescriptor {
 public:
  // From config.json's model_type when there is one (deepseek_v4; deepseek_v3, deepseek_v32,
  // deepseek_v2, kimi_k2; anything else is llama-like), else from the tensor names (DeepSeek's own
  // `layers.`/`mtp.` prefixes: V4; `kv_a_proj_with_mqa`: V3; else llama-like). `config` may be null.
  static ModelDescriptor detect(const nlohmann::json* config, const std::vector<std::string>& tensor_names);
  static ModelDescriptor of(ModelFamily family, std::optional<int64_t> mtp_layer = std::nullopt);

  ModelFamily family() const { return family_; }
  std::string_view name() const { return model_family_name(family_); }

  // By module name (a weight's name without ".weight").
  bool is_routed_expert(const std::string& module) const;  // not counting the MTP block's
  bool is_mtp_expert(const std::string& module) const;     // an expert of the MTP block
  // A GEMM weight that `--recipe all-linear` converts even when the source stores it unscaled
  // (BF16/F16/F32): attention and MLP projections, shared experts.
  bool is_linear(const std::string& module) const;
  // Never quantized, whatever the recipe: embeddings, heads, norms, routers, and the family's
  // other small or precision-critical projections.
  bool is_always_kept(const std::string& module) const;
  // What the always-kept list holds, in words, for messages.
  std::string_view always_kept_description() const;

 private:
  ModelFamily family_ = ModelFamily::DeepseekV4;
  std::optional<int64_t> mtp_layer_;  // V3: the MTP block's decoder index (num_hidden_layers)
  std::regex routed_, linear_, kept_;
};

}  // namespace fp4kit
