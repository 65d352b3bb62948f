#pragma once
// Cutting a checkpoint's tensors into output shards by size, named and indexed as Hugging Face does
// (model-00001-of-00046.safetensors + model.safetensors.index.json). Deterministic: the same tensors
// and limit always give the same shards, which is what makes resuming after a kill safe.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "io/checkpoint_index.h"
#include "io/tensor_info.h"

namespace fp4kit::io {

struct PlannedShard {
  std::string file;             // model-00001-of-00003.safetensors
  std::vector<size_t> tensors;  // indices into the planned tensor list, in order
  uint64_t bytes = 0;           // tensor data bytes
};

// Greedy in the given order: a shard is closed when the next tensor would take it past
// `max_bytes`; a tensor larger than the limit gets a shard of its own. Empty input gives no shard.
std::vector<PlannedShard> plan_shards(const std::vector<TensorInfo>& tensors, uint64_t max_bytes);

std::string shard_file_name(size_t index, size_t count);  // 0-based index

// weight_map for the plan, with metadata {"total_size": sum of tensor bytes}.
CheckpointIndex index_for(const std::vector<PlannedShard>& shards, const std::vector<TensorInfo>& tensors);

}  // namespace fp4kit::io
