#pragma once
// What a checkpoint holds, read from its config, index and shard headers only (never tensor data),
// so that it takes seconds even on an 865 GB model.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace fp4kit {

struct TensorPatternSummary {
  std::string pattern;  // layers.{0..3}.attn.wq_a.weight
  std::string dtype;
  std::vector<int64_t> shape;
  std::string role;     // models/deepseek_v4.h role name
  std::string storage;  // fp8-block128/e8m0, mxfp4/e8m0x32, scale, plain
  size_t count = 0;
  uint64_t bytes = 0;
};

struct CheckpointSummary {
  std::string dir;
  nlohmann::json config;        // config.json, or null
  std::string architecture;     // architectures[0] / model_type
  nlohmann::json key_config;    // the config values that shape the tensors
  size_t shards = 0;
  size_t tensors = 0;
  uint64_t bytes = 0;
  std::map<std::string, uint64_t> bytes_per_dtype;
  std::map<std::string, uint64_t> bytes_per_role;
  std::map<std::string, size_t> tensors_per_role;
  std::map<std::string, size_t> quantized_weights;  // storage -> count
  std::map<std::string, size_t> counts;             // routed_experts, shared_experts, routers, ...
  std::vector<TensorPatternSummary> patterns;       // sorted by pattern
  std::vector<std::string> anomalies;
  double seconds = 0;
};

// Never throws for problems inside the checkpoint (they become anomalies); InputError only when
// `dir` holds no checkpoint at all.
CheckpointSummary summarize_checkpoint(const std::string& dir);
nlohmann::json to_json(const CheckpointSummary&);

}  // namespace fp4kit
