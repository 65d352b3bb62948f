#pragma once
// Files and index of a checkpoint directory: every shard the index names exists and opens, every
// index entry is in its shard, every tensor of a shard is in the index (once). Problems become
// findings; what could be read is returned for the later checks.
#include <map>
#include <string>
#include <vector>

#include "io/checkpoint_index.h"
#include "models/quantized_weights.h"
#include "verify/verify_report.h"

namespace fp4kit::verify {

struct CheckpointTensors {
  std::vector<TensorRef> tensors;       // every tensor of every readable shard, by shard then offset
  std::map<std::string, size_t> by_name;  // -> index into tensors
  std::vector<std::string> shards;      // the shard files (index's, or the directory's *.safetensors)
  uint64_t bytes = 0;                   // tensor bytes of the readable shards
  bool complete = true;                 // every shard readable and every index entry found

  const TensorRef* find(const std::string& name) const;
};

// `label` prefixes check ids where two checkpoints are read ("" for the output, "source." for the
// source). Findings name the file and the tensor.
CheckpointTensors check_checkpoint_files(const io::Checkpoint& ckpt, VerifyReport& report, const std::string& label = "");

}  // namespace fp4kit::verify
