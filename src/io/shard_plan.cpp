#include "io/shard_plan.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <string>

#include "base/error.h"

namespace fp4kit::io {

std::vector<PlannedShard> plan_shards(const std::vector<TensorInfo>& tensors, uint64_t max_bytes) {
  std::vector<PlannedShard> shards;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t n = tensors[i].nbytes();
    if (shards.empty() || (shards.back().bytes > 0 && shards.back().bytes + n > max_bytes)) shards.emplace_back();
    shards.back().tensors.push_back(i);
    shards.back().bytes += n;
  }
  for (size_t s = 0; s < shards.size(); ++s) shards[s].file = shard_file_name(s, shards.size());
  return shards;
}

std::string shard_file_name(size_t index, size_t count) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", index + 1, count);
  return buf;
}

CheckpointIndex index_for(const std::vector<PlannedShard>& shards, const std::vector<TensorInfo>& tensors) {
  CheckpointIndex index;
  uint64_t total = 0;
  for (const auto& s : shards)
    for (size_t i : s.tensors) {
      index.weight_map[tensors[i].name] = s.file;
      total += tensors[i].nbytes();
    }
  index.metadata = {{"total_size", total}};
  return index;
}

}  // namespace fp4kit::io
