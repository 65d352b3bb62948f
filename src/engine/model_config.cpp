#include "engine/model_config.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "io/strict_json.h"

namespace fp4kit::engine {

namespace {

[[noreturn]] void bad(const std::string& label, const std::string& field, const std::string& why) {
  throw InputError(label + ": config field '" + field + "' " + why);
}

double get_number(const nlohmann::json& j, const char* key, double fallback, const std::string& label) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_number()) bad(label, key, "must be a number, got " + j[key].dump());
  const double v = j[key].get<double>();
  if (!std::isfinite(v)) bad(label, key, "must be finite");
  return v;
}

void require(bool ok, const std::string& label, const std::string& field, const std::string& why) {
  if (!ok) bad(label, field, why);
}

}  // namespace

ModelConfig ModelConfig::from_json(const nlohmann::json& j, const std::string& label) {
  ModelConfig c;
  c.label = label;
  c.base = DeepseekV4Config::from_json(j, label);
  const DeepseekV4Config& b = c.base;
  require(b.vocab_size >= 1, label, "vocab_size", "must be at least 1");
  require(b.hidden_size >= 1, label, "hidden_size", "must be at least 1");
  require(b.num_hidden_layers >= 1, label, "num_hidden_layers", "must be at least 1");
  require(b.num_attention_heads >= 1, label, "num_attention_heads", "must be at least 1");
  require(b.q_lora_rank >= 1, label, "q_lora_rank", "must be at least 1");
  require(b.o_lora_rank >= 1, label, "o_lora_rank", "must be at least 1");
  require(b.n_routed_experts >= 1, label, "n_routed_experts", "must be at least 1");
  require(b.num_experts_per_tok >= 1 && b.num_experts_per_tok <= b.n_routed_experts, label, "num_experts_per_tok",
          "must be between 1 and n_routed_experts (" + std::to_string(b.n_routed_experts) + "), got " +
              std::to_string(b.num_experts_per_tok));
  require(b.moe_intermediate_size >= 1, label, "moe_intermediate_size", "must be at least 1");
  require(b.hc_mult >= 1, label, "hc_mult", "must be at least 1");
  require(b.sliding_window >= 1, label, "sliding_window", "must be at least 1");
  if (j.contains("num_key_value_heads"))
    require(j["num_key_value_heads"] == 1, label, "num_key_value_heads", "must be 1 (one shared KV head), got " +
                                                                             j["num_key_value_heads"].dump());

  // transformers: partial_rotary_factor = qk_rope_head_dim / head_dim, rope dims = int(head_dim * factor).
  c.rope_dim = b.qk_rope_head_dim;
  require(c.rope_dim >= 2 && c.rope_dim % 2 == 0 && c.rope_dim <= b.head_dim, label, "qk_rope_head_dim",
          "must be even, at least 2 and at most head_dim (" + std::to_string(b.head_dim) + ")");

  c.attention.resize(static_cast<size_t>(b.num_hidden_layers));
  c.hash_routed.resize(static_cast<size_t>(b.num_hidden_layers));
  bool any_csa = false;
  for (int64_t i = 0; i < b.num_hidden_layers; ++i) {
    const int64_t r = b.compress_ratios[static_cast<size_t>(i)];
    if (r == 0) c.attention[i] = AttentionKind::Sliding;
    else if (r == 4) c.attention[i] = AttentionKind::Csa, any_csa = true;
    else if (r == 128) c.attention[i] = AttentionKind::Hca;
    else bad(label, "compress_ratios", "entry " + std::to_string(i) + " is " + std::to_string(r) + " (only 0, 4 and 128 exist)");
    c.hash_routed[i] = i < b.num_hash_layers;
  }
  if (any_csa) {
    require(b.index_n_heads >= 1, label, "index_n_heads", "must be at least 1");
    require(b.index_head_dim >= c.rope_dim, label, "index_head_dim", "must be at least qk_rope_head_dim");
    require(b.index_topk >= 1, label, "index_topk", "must be at least 1");
  }

  c.rms_eps = static_cast<float>(get_number(j, "rms_norm_eps", 1e-6, label));
  require(c.rms_eps > 0, label, "rms_norm_eps", "must be positive");
  c.hc_eps = static_cast<float>(get_number(j, "hc_eps", 1e-6, label));
  require(c.hc_eps >= 0, label, "hc_eps", "must not be negative");
  const double iters = get_number(j, "hc_sinkhorn_iters", 20, label);
  require(iters >= 1 && iters <= 1000 && iters == std::floor(iters), label, "hc_sinkhorn_iters", "must be an integer in [1, 1000]");
  c.hc_sinkhorn_iters = static_cast<int64_t>(iters);
  c.rope_theta = static_cast<float>(get_number(j, "rope_theta", 10000, label));
  require(c.rope_theta > 1, label, "rope_theta", "must be greater than 1");
  c.compress_rope_theta = static_cast<float>(get_number(j, "compress_rope_theta", 160000, label));
  require(c.compress_rope_theta > 1, label, "compress_rope_theta", "must be greater than 1");
  c.swiglu_limit = static_cast<float>(get_number(j, "swiglu_limit", 0, label));
  require(c.swiglu_limit >= 0, label, "swiglu_limit", "must not be negative");

  const std::string scoring = j.value("scoring_func", std::string("sqrtsoftplus"));
  require(scoring == "sqrtsoftplus", label, "scoring_func", "must be \"sqrtsoftplus\", got \"" + scoring + "\"");
  const std::string act = j.value("hidden_act", std::string("silu"));
  require(act == "silu", label, "hidden_act", "must be \"silu\", got \"" + act + "\"");

  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const auto& rs = j["rope_scaling"];
    require(rs.is_object(), label, "rope_scaling", "must be an object or null");
    const std::string type = rs.value("type", rs.value("rope_type", std::string("default")));
    if (type == "yarn") {
      c.yarn.enabled = true;
      c.yarn.factor = get_number(rs, "factor", 1.0, label);
      c.yarn.original_max_position = get_number(rs, "original_max_position_embeddings", 0, label);
      c.yarn.beta_fast = get_number(rs, "beta_fast", 32, label);
      c.yarn.beta_slow = get_number(rs, "beta_slow", 1, label);
      require(c.yarn.factor > 0, label, "rope_scaling.factor", "must be positive");
      require(c.yarn.original_max_position > 0, label, "rope_scaling.original_max_position_embeddings", "must be positive");
      require(c.yarn.beta_fast > 0 && c.yarn.beta_slow > 0, label, "rope_scaling.beta_fast", "and beta_slow must be positive");
    } else {
      require(type == "default", label, "rope_scaling.type", "must be \"yarn\" or \"default\", got \"" + type + "\"");
    }
  }
  return c;
}

ModelConfig ModelConfig::load(const std::string& model_dir) {
  const std::string path = (std::filesystem::path(model_dir) / "config.json").string();
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot read the model config");
  std::ostringstream text;
  text << in.rdbuf();
  return from_json(io::parse_strict_json(text.str(), path), path);
}

}  // namespace fp4kit::engine
