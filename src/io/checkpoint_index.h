#pragma once
// Sharded checkpoints: model.safetensors.index.json (tensor name -> shard file) and a model directory
// whose shards are opened on demand.
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors_file.h"

namespace fp4kit::io {

inline constexpr std::string_view kIndexFileName = "model.safetensors.index.json";
inline constexpr std::string_view kSingleFileName = "model.safetensors";
inline constexpr std::string_view kConfigFileName = "config.json";

struct CheckpointIndex {
  std::map<std::string, std::string> weight_map;       // tensor name -> shard file name
  nlohmann::json metadata = nlohmann::json::object();  // e.g. {"total_size": N}

  // InputError unless the file is a JSON object whose "weight_map" is an object of strings naming
  // plain files in the same directory (no '/', not "." or ".."); "metadata", if present, an object.
  static CheckpointIndex load(const std::string& index_path);
  // Atomically; 2-space indented, sorted keys, trailing newline.
  void save(const std::string& index_path) const;
  std::vector<std::string> shard_files() const;  // unique, sorted
};

// A model directory: model.safetensors.index.json + shards, or a single model.safetensors, or
// *.safetensors files without an index. Thread-safe; shards are opened and validated on first use.
class Checkpoint {
 public:
  static Checkpoint open(const std::string& dir);  // InputError if the directory holds no checkpoint
  Checkpoint(Checkpoint&&) noexcept;
  Checkpoint& operator=(Checkpoint&&) noexcept;
  ~Checkpoint();

  const std::string& dir() const;
  bool has_index() const;
  const CheckpointIndex& index() const;  // empty without an index file
  std::vector<std::string> shard_files() const;  // file names relative to dir(), sorted

  const SafetensorsFile& shard(const std::string& file) const;

  // The shard holding `tensor` and its entry; {nullptr, nullptr} if the checkpoint has no such tensor.
  // InputError naming the index and the tensor if the index points to a missing shard or to a shard
  // without the tensor. Without an index every shard is opened on the first call.
  std::pair<const SafetensorsFile*, const TensorInfo*> find(std::string_view tensor) const;

 private:
  struct State;
  explicit Checkpoint(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace fp4kit::io
