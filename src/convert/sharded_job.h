#pragma once
// The run both checkpoint jobs (dequant, convert) share once their plan exists: refuse or resume the
// destination, then every planned shard either kept from an earlier run or written under a
// temporary name and published, the plan file updated after each; then the files copied as they
// are, the JSON files, the index, and last the plan file marked complete. What a shard holds is the
// job's business (ShardSink); where a job records a hash of each published shard's data, a resumed
// run keeps a shard only if its data still hashes to it.
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "convert/output_directory.h"
#include "io/checkpoint_index.h"
#include "io/shard_plan.h"
#include "io/tensor_info.h"

namespace fp4kit {

class ShardSink {
 public:
  virtual ~ShardSink() = default;
  // Writes the shard to `path` (atomically) and returns the XXH3-64 of its data section, or nullopt
  // for a job that records none.
  virtual std::optional<std::string> write(const io::PlannedShard& shard, const std::string& path) = 0;
  // A shard an earlier run finished: for progress only.
  virtual void skip(const io::PlannedShard& shard) = 0;
};

struct ShardedJob {
  const JobPlanFile* plan_file = nullptr;
  nlohmann::json manifest;                   // the plan's, "complete": false
  bool resume = false;
  // The sink returns a hash for every shard it writes; a resumed run then keeps only shards with a
  // recorded hash that their data still matches.
  bool hashed_shards = false;
  std::string src_dir, dst_dir;
  const std::vector<io::PlannedShard>* shards = nullptr;
  std::vector<std::vector<const io::TensorInfo*>> shard_outputs;  // per shard, its tensors as planned
  std::map<std::string, std::string> shard_metadata;              // every shard's header metadata
  std::vector<std::string> extra_files;      // relative to src_dir, copied as they are
  std::vector<std::pair<std::string, std::string>> text_files;  // {name in dst, contents}, after the shards
  io::CheckpointIndex index;
};

struct ShardedJobCounts {
  size_t shards_written = 0, shards_skipped = 0, files_copied = 0;
};

// Per shard, its tensors as planned: `output_of(i)` for every tensor index i of the shard.
template <class OutputOf>
std::vector<std::vector<const io::TensorInfo*>> planned_shard_outputs(const std::vector<io::PlannedShard>& shards,
                                                                      OutputOf output_of) {
  std::vector<std::vector<const io::TensorInfo*>> out;
  for (const io::PlannedShard& shard : shards) {
    std::vector<const io::TensorInfo*> outputs;
    for (size_t i : shard.tensors) outputs.push_back(&output_of(i));
    out.push_back(std::move(outputs));
  }
  return out;
}

// InputError for a destination inspect_destination refuses; Error for I/O failures, with a hint to
// --resume once shards were published.
ShardedJobCounts run_sharded_job(const ShardedJob& job, ShardSink& sink);

}  // namespace fp4kit
