#pragma once
// What a checkpoint holds, read from its config and shard headers only (never tensor data).
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
  size_t count = 0;
  uint64_t bytes = 0;
};

struct CheckpointSummary {
  std::string dir;
  nlohmann::json config;  // config.json, or null
  size_t shards = 0;
  size_t tensors = 0;
  uint64_t bytes = 0;
  std::map<std::string, uint64_t> bytes_per_dtype;
  std::vector<TensorPatternSummary> patterns;  // sorted by pattern
  std::vector<std::string> anomalies;
};

CheckpointSummary summarize_checkpoint(const std::string& dir);
nlohmann::json to_json(const CheckpointSummary&);

}  // namespace fp4kit
