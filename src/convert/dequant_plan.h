#pragma once
// What `dequant` will write, decided from the source checkpoint's headers and the options alone:
// every output tensor with its source, the output shards, the rewritten config.json, the other
// files to copy, and a manifest (source fingerprint + options + output layout) that a resumed run
// compares against. Planning reads no tensor data and writes nothing; every input problem it finds
// is an InputError naming the file and the tensor.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "convert/output_directory.h"
#include "convert/source_checkpoint.h"
#include "io/safetensors_file.h"
#include "io/shard_plan.h"
#include "models/deepseek_v4.h"

namespace fp4kit {

enum class DequantKind : uint8_t { Copy, Fp8Block, Mxfp4 };
std::string_view dequant_kind_name(DequantKind);  // "copy", "fp8_block", "mxfp4"

struct DequantTensor {
  io::TensorInfo output;  // name, dtype and shape as written; begin = 0, end = byte size
  DequantKind kind = DequantKind::Copy;
  Storage storage = Storage::Plain;
  SourceTensor weight;  // the tensor copied, or the quantized weight
  SourceTensor scale;   // quantized weights only
  uint64_t input_bytes() const;  // weight and scale as stored in the source
};

struct DequantPlan {
  std::string src_dir;
  std::vector<std::unique_ptr<io::SafetensorsFile>> source_files;  // in name order
  std::vector<DequantTensor> tensors;    // by (source file, offset) of the weight
  std::vector<io::PlannedShard> shards;  // indices into `tensors`
  size_t scales_dropped = 0;
  uint64_t scale_bytes = 0;
  std::optional<std::string> config_text;  // config.json rewritten, if the source has one
  std::vector<std::string> extra_files;    // paths relative to src_dir, copied verbatim, sorted
  nlohmann::json manifest;                 // see dequant_manifest_difference

  uint64_t input_bytes() const;  // every source tensor, scales included
  io::CheckpointIndex index() const;
};

// InputError for: no checkpoint in `src_dir`; an index naming a shard that is not there, or a
// tensor its shard does not hold, or a shard holding tensors the index does not list; a missing,
// truncated or malformed shard; a tensor in two shards; every pairing problem of
// pair_quantized_weights; a config.json that is not a JSON object; an extra file whose name an
// output file takes. `dst_dir` (which may lie inside `src_dir`) is left out of the extra files.
DequantPlan plan_dequant(const std::string& src_dir, const std::string& dst_dir, uint64_t shard_bytes);

// config.json without `quantization_config` and `expert_dtype`, everything else kept (keys sorted,
// 2-space indent, trailing newline). InputError naming `label` unless `text` is a JSON object.
std::string dequantized_config(std::string_view text, const std::string& label);

// The manifest's fields that differ between a stored plan and a new one, in words ("" if none);
// "complete" is not compared.
std::string dequant_manifest_difference(const nlohmann::json& stored, const nlohmann::json& planned);

inline constexpr std::string_view kDequantManifestFormat = "fp4kit-dequant-plan/1";
// Kept in the output directory: the manifest, with "complete": true once every file is in place.
inline constexpr std::string_view kDequantPlanFileName = ".fp4kit-dequant.json";

// The plan file's name, format and option flags, for convert/output_directory.
const JobPlanFile& dequant_plan_file();

}  // namespace fp4kit
