#pragma once
// The source side of a checkpoint job (dequant, convert): which shard files make up the source,
// every tensor in exactly one of them, the other files that travel to the output unchanged, and a
// fingerprint of the shards' headers for the resume manifest. Reads headers only.
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/checkpoint_index.h"
#include "io/safetensors_file.h"
#include "models/quantized_weights.h"

namespace fp4kit {

struct SourceCheckpoint {
  std::vector<std::string> files;  // shard names relative to the source directory, sorted
  std::optional<io::CheckpointIndex> index;
  std::string index_path;
  std::vector<std::unique_ptr<io::SafetensorsFile>> shards;  // opened, in the order of `files`
};

// InputError for: no checkpoint in `src_dir`; an index naming a shard that is not there, or a
// tensor its shard does not hold, or a shard holding tensors the index does not list; a missing,
// truncated or malformed shard; a tensor in two shards.
SourceCheckpoint open_source_checkpoint(const std::string& src_dir);

// Files beside the checkpoint that go to the output unchanged (tokenizer, inference/ code...):
// not the shards, the index, the `skipped_top_level` names, VCS or download caches, anyone's
// temporaries, nor anything under `dst_dir` (which may lie inside `src_dir`). Sorted.
std::vector<std::string> list_extra_files(const std::string& src_dir, const std::string& dst_dir,
                                          const SourceCheckpoint& source, std::set<std::string> skipped_top_level);

// [{name, bytes, header fingerprint}] per shard: what a resumed run compares.
nlohmann::json source_files_manifest(const SourceCheckpoint& source);

// `dir` + "/" + `name`.
std::string join_path(const std::string& dir, std::string_view name);
bool is_regular_file(const std::string& path);
// InputError naming the path when it cannot be read.
std::string read_text_file(const std::string& path);

// The names io::AtomicFile gives its temporaries (".<name>.tmp-<pid>-<random>"): a killed run's
// leftovers, never copied from the source and removed from the output on --resume.
bool is_temporary_file_name(std::string_view name);

// One tensor of the source: the shard holding it and its header entry.
struct SourceTensor {
  const io::SafetensorsFile* file = nullptr;
  const io::TensorInfo* info = nullptr;
};

// Every tensor of the opened shards, in source order (by file, then by offset), with its weight/scale
// pairing. InputError with the first pairing problem (and how many more there are).
struct PairedSource {
  std::vector<TensorRef> refs;
  std::map<std::string_view, SourceTensor> by_name;
  WeightPairing pairing;
};
PairedSource pair_source_tensors(const std::vector<std::unique_ptr<io::SafetensorsFile>>& shards);

}  // namespace fp4kit
