#pragma once
// Everything the forward pass needs from config.json, validated: DeepseekV4Config plus the fields
// that only the arithmetic uses (norm epsilons, rope bases and YaRN, clamp limit), folded the way
// transformers' DeepseekV4Config folds the legacy keys (compress_ratios -> layer types,
// num_hash_layers -> hash-routed layers).
#include <cstdint>
#include <string>
#include <vector>

#include "models/deepseek_v4.h"

namespace fp4kit::engine {

enum class AttentionKind : uint8_t { Sliding, Csa, Hca };  // compress ratio 0, 4, 128

struct YarnParams {
  bool enabled = false;
  double factor = 1.0;
  double original_max_position = 0.0;
  double beta_fast = 32.0, beta_slow = 1.0;
};

struct ModelConfig {
  DeepseekV4Config base;
  std::vector<AttentionKind> attention;  // one per decoder layer
  std::vector<bool> hash_routed;         // one per decoder layer: tid2eid routing
  int64_t rope_dim = 64;                 // last rope_dim dims of a head / indexer vector are rotated
  float rms_eps = 1e-6f;
  float hc_eps = 1e-6f;
  int64_t hc_sinkhorn_iters = 20;
  float rope_theta = 10000.0f;
  float compress_rope_theta = 160000.0f;
  YarnParams yarn;                       // applies to the compress rope only
  float swiglu_limit = 10.0f;            // 0: no clamp
  std::string label;                     // the config file, for messages

  int64_t layers() const { return base.num_hidden_layers; }
  int64_t hidden() const { return base.hidden_size; }
  int64_t hc() const { return base.hc_mult; }
  static int64_t ratio(AttentionKind k) { return k == AttentionKind::Csa ? 4 : k == AttentionKind::Hca ? 128 : 0; }

  // InputError naming `label` and the field for a missing field or a value out of range.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& label);
  // <dir>/config.json.
  static ModelConfig load(const std::string& model_dir);
};

}  // namespace fp4kit::engine
