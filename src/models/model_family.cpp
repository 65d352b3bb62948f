#include "models/model_family.h"

#include <algorithm>

namespace fp4kit {

namespace {

// One regex per family and role; the module names are matched whole.
struct FamilyPatterns {
  const char* experts;  // routed and MTP experts; V3's first group is the layer number
  const char* linear;
  const char* kept;
  const char* kept_words;
};

const FamilyPatterns& patterns(ModelFamily f) {
  static const FamilyPatterns v4{
      R"(^(layers|mtp)\.\d+\.ffn\.experts\.\d+\.w[123]$)",
      R"(^(layers|mtp)\.\d+\.(attn\.(wq_a|wq_b|wkv|wo_a|wo_b|indexer\.wq_b)|ffn\.shared_experts\.w[123]|e_proj|h_proj)$)",
      R"((^|\.)(embed|head|norm|enorm|hnorm|kv_norm|q_norm|attn_norm|ffn_norm|ape|attn_sink|tid2eid|weights_proj)$)"
      R"(|\.ffn\.gate$|(^|\.)hc_|\.compressor\.)",
      "embeddings, head, norms, router (ffn.gate, bias, tid2eid), mHC, attention sinks, compressor/indexer "
      "projections"};
  // V3's MTP layer keeps eh_proj and its shared head in BF16 (vLLM builds them unquantized); the
  // V3.2 indexer's wk is fused with weights_proj into an unquantized GEMM.
  static const FamilyPatterns v3{
      R"(^model\.layers\.(\d+)\.mlp\.experts\.\d+\.(gate_proj|up_proj|down_proj)$)",
      R"(^model\.layers\.\d+\.(self_attn\.(q_proj|q_a_proj|q_b_proj|kv_a_proj_with_mqa|kv_b_proj|o_proj|indexer\.wq_b))"
      R"(|mlp\.(shared_experts\.)?(gate_proj|up_proj|down_proj))$)",
      R"((^|\.)(embed_tokens|lm_head|[a-z_]*norm|gate|eh_proj|head|wk|weights_proj)$)",
      "embeddings, lm_head, norms, routers (mlp.gate), the MTP block's eh_proj and shared head, the indexer's "
      "wk and weights_proj"};
  static const FamilyPatterns llama{
      R"(^(model\.(language_model\.)?)?layers\.\d+\.(mlp|block_sparse_moe|feed_forward)\.experts\.\d+\.)"
      R"((gate_proj|up_proj|down_proj|w1|w2|w3)$)",
      R"(^(model\.(language_model\.)?)?layers\.\d+\..+$)",
      R"((^|\.)(embed_tokens|lm_head|[a-z_]*norm|gate|router|shared_expert_gate)$)",
      "embeddings, lm_head, norms, routers (mlp.gate, block_sparse_moe.gate, router, shared_expert_gate)"};
  switch (f) {
    case ModelFamily::DeepseekV4: return v4;
    case ModelFamily::DeepseekV3: return v3;
    case ModelFamily::LlamaLike: break;
  }
  return llama;
}

bool has_prefix(const std::vector<std::string>& names, std::string_view prefix) {
  return std::any_of(names.begin(), names.end(), [&](const std::string& n) { return n.starts_with(prefix); });
}

}  // namespace

std::string_view model_family_name(ModelFamily f) {
  switch (f) {
    case ModelFamily::DeepseekV4: return "deepseek-v4";
    case ModelFamily::DeepseekV3: return "deepseek-v3";
    case ModelFamily::LlamaLike: return "llama-like";
  }
  return "?";
}

ModelDescriptor ModelDescriptor::of(ModelFamily family, std::optional<int64_t> mtp_layer) {
  ModelDescriptor d;
  d.family_ = family;
  d.mtp_layer_ = mtp_layer;
  const FamilyPatterns& p = patterns(family);
  d.routed_ = std::regex(p.experts, std::regex::ECMAScript | std::regex::optimize);
  d.linear_ = std::regex(p.linear, std::regex::ECMAScript | std::regex::optimize);
  d.kept_ = std::regex(p.kept, std::regex::ECMAScript | std::regex::optimize);
  return d;
}

ModelDescriptor ModelDescriptor::detect(const nlohmann::json* config, const std::vector<std::string>& tensor_names) {
  if (config && config->is_object() && config->contains("model_type") && config->at("model_type").is_string()) {
    const std::string type = config->at("model_type").get<std::string>();
    if (type == "deepseek_v4") return of(ModelFamily::DeepseekV4);
    if (type == "deepseek_v3" || type == "deepseek_v32" || type == "deepseek_v2" || type == "kimi_k2") {
      std::optional<int64_t> mtp;
      if (config->contains("num_hidden_layers") && config->at("num_hidden_layers").is_number_integer())
        mtp = config->at("num_hidden_layers").get<int64_t>();
      return of(ModelFamily::DeepseekV3, mtp);
    }
    return of(ModelFamily::LlamaLike);
  }
  if (has_prefix(tensor_names, "layers.") || has_prefix(tensor_names, "mtp.")) {
    if (!has_prefix(tensor_names, "layers.") || std::any_of(tensor_names.begin(), tensor_names.end(), [](const std::string& n) {
          return n.find(".ffn.") != std::string::npos || n.find(".attn.") != std::string::npos;
        }))
      return of(ModelFamily::DeepseekV4);
  }
  if (std::any_of(tensor_names.begin(), tensor_names.end(),
                  [](const std::string& n) { return n.find(".kv_a_proj_with_mqa.") != std::string::npos; }))
    return of(ModelFamily::DeepseekV3);
  return of(ModelFamily::LlamaLike);
}

bool ModelDescriptor::is_routed_expert(const std::string& module) const {
  if (family_ == ModelFamily::DeepseekV4) return module.starts_with("layers.") && std::regex_match(module, routed_);
  std::smatch m;
  if (!std::regex_match(module, m, routed_)) return false;
  if (family_ == ModelFamily::DeepseekV3 && mtp_layer_) return std::stoll(m[1].str()) < *mtp_layer_;
  return true;
}

bool ModelDescriptor::is_mtp_expert(const std::string& module) const {
  if (family_ == ModelFamily::DeepseekV4) return module.starts_with("mtp.") && std::regex_match(module, routed_);
  if (family_ != ModelFamily::DeepseekV3 || !mtp_layer_) return false;
  std::smatch m;
  return std::regex_match(module, m, routed_) && std::stoll(m[1].str()) >= *mtp_layer_;
}

bool ModelDescriptor::is_linear(const std::string& module) const {
  return std::regex_match(module, linear_) && !is_always_kept(module);
}

bool ModelDescriptor::is_always_kept(const std::string& module) const { return std::regex_search(module, kept_); }

std::string_view ModelDescriptor::always_kept_description() const { return patterns(family_).kept_words; }

}  // namespace fp4kit
