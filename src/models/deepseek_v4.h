#pragma once
// DeepSeek V4 as data: its config, and every tensor its official checkpoint holds (name, dtype,
// shape, role, storage format), derived from the config alone. Used to inspect, synthesize and
// plan conversions; nothing here reads tensor data.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "formats/dtype.h"

namespace fp4kit {

struct DeepseekV4Config {
  int64_t vocab_size = 129280;
  int64_t hidden_size = 4096;
  int64_t num_hidden_layers = 43;
  int64_t num_attention_heads = 64;
  int64_t head_dim = 512;
  int64_t qk_rope_head_dim = 64;
  int64_t q_lora_rank = 1024;
  int64_t o_groups = 8;
  int64_t o_lora_rank = 1024;
  int64_t n_routed_experts = 256;
  int64_t num_experts_per_tok = 6;
  int64_t n_shared_experts = 1;
  int64_t moe_intermediate_size = 2048;
  int64_t index_n_heads = 64;
  int64_t index_head_dim = 128;
  int64_t index_topk = 512;
  int64_t num_hash_layers = 3;
  int64_t num_nextn_predict_layers = 1;
  int64_t hc_mult = 4;
  int64_t sliding_window = 128;
  double routed_scaling_factor = 1.5;
  std::vector<int64_t> compress_ratios;  // num_hidden_layers + MTP entries
  std::string expert_dtype = "fp4";      // "fp4" (MXFP4 experts) or "fp8" (128x128 blocks)
  nlohmann::json raw;                     // the config.json this came from (or the preset's)

  // InputError naming `label` (the file) and the field when a required field is missing or wrong.
  static DeepseekV4Config from_json(const nlohmann::json& j, const std::string& label);
  // A config.json in the official release's format.
  nlohmann::json to_json() const;
  // Compression ratio of decoder layer `layer`, or of MTP block `mtp` (layer = num_hidden_layers + mtp).
  int64_t compress_ratio(int64_t layer) const;
};

// "v4-flash", "v4-pro", "tiny" (the dsv4-tiny fixture's dimensions), with "key=value,..." overrides
// for layers, experts, hidden... e.g. "v4-pro:layers=1,experts=384". nullopt for an unknown name;
// InputError for a bad override.
std::optional<DeepseekV4Config> deepseek_v4_preset(std::string_view spec);
std::vector<std::string> deepseek_v4_preset_names();

enum class TensorRole : uint8_t {
  Embedding, Head, Norm, HyperConnection, AttentionProjection, AttentionSink, CompressorProjection,
  CompressorApe, IndexerProjection, IndexerWeightsProj, Router, RouterBias, HashTable, RoutedExpert,
  SharedExpert, MtpProjection, Unknown,
};
std::string_view role_name(TensorRole);

// How a weight is stored: plain, FP8 128x128 blocks with an E8M0 (V4) or F32 (V3) scale, MXFP4, or
// NVFP4 (E4M3 per 16 + an F32 per-tensor scale, ModelOpt or compressed-tensors names).
enum class Storage : uint8_t { Plain, Fp8BlockE8M0, Fp8BlockF32, Mxfp4, Nvfp4 };
std::string_view storage_name(Storage);

struct TensorSpec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  TensorRole role;
  Storage storage = Storage::Plain;  // for a weight with a scale sibling
  bool is_scale = false;             // a `.scale` tensor (its weight is `name` minus ".scale" + ".weight")
};

// Every tensor of the official layout, in checkpoint order (top-level embed first, then each layer,
// then the MTP blocks, then the top-level tail).
std::vector<TensorSpec> deepseek_v4_tensors(const DeepseekV4Config&);

// The role of a tensor from its name alone (works on any V4-style checkpoint).
TensorRole deepseek_v4_role(std::string_view name);

}  // namespace fp4kit
