#pragma once
// Writing a synthetic DeepSeek V4 checkpoint in the official layout: config.json, shards cut by
// size in checkpoint order, model.safetensors.index.json, every file published atomically. Tensor
// by tensor, large ones in chunks of rows, in memory bounded by the largest quantized weight (the
// scale precedes its weight in a shard) plus one chunk per thread.
//
// Hollow checkpoints have true headers over data sections that are holes in sparse files: the
// full 865 GB DeepSeek V4 Pro layout in a few MB of disk, for tools that read headers only. Each
// hollow shard says so in its header metadata (kHollowMetadataKey).
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "models/deepseek_v4.h"

namespace fp4kit::synth {

inline constexpr const char* kHollowMetadataKey = "fp4kit_hollow";

// A preset (deepseek_v4_preset: "v4-pro", "v4-flash:layers=2", ...) with the experts stored as
// `expert_dtype` ("fp4" or "fp8"). InputError for an unknown preset (listing the known ones), a
// bad override or a bad expert dtype.
DeepseekV4Config synth_config(std::string_view preset, std::string_view expert_dtype = "fp4");

struct SynthOptions {
  uint64_t seed = 0;
  bool hollow = false;
  uint64_t shard_bytes = 5'000'000'000;  // --shard-size
  unsigned threads = 1;
};

struct SynthReport {
  std::string dst;
  size_t tensors = 0;
  size_t shards = 0;
  uint64_t data_bytes = 0;       // tensor bytes: the index's total_size
  uint64_t file_bytes = 0;       // logical size of every file written, headers included
  uint64_t allocated_bytes = 0;  // disk blocks those files occupy (st_blocks * 512)
  double seconds = 0;
  uint64_t peak_rss_bytes = 0;   // of the whole process, at the end
};

// done/total in tensor data bytes.
using SynthProgress = std::function<void(uint64_t done, uint64_t total)>;

// Writes the checkpoint into `dst`, which must not exist or be an empty directory (InputError
// naming it otherwise, before anything is written). Error for I/O failures.
SynthReport synthesize_checkpoint(const DeepseekV4Config& config, const std::string& dst, const SynthOptions& options,
                                  const SynthProgress& progress = {});

}  // namespace fp4kit::synth
