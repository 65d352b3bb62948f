#include "convert/dequant_plan.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <system_error>

#include "base/error.h"
#include "io/checkpoint_index.h"
#include "io/quote_name.h"
#include "io/strict_json.h"
#include "convert/fingerprint.h"
#include "convert/source_checkpoint.h"
#include "models/quantized_weights.h"

namespace fp4kit {

namespace fs = std::filesystem;

std::string_view dequant_kind_name(DequantKind k) {
  switch (k) {
    case DequantKind::Copy: return "copy";
    case DequantKind::Fp8Block: return "fp8_block";
    case DequantKind::Mxfp4: return "mxfp4";
  }
  return "?";
}

uint64_t DequantTensor::input_bytes() const {
  return weight.info->nbytes() + (scale.info ? scale.info->nbytes() : 0);
}

uint64_t DequantPlan::input_bytes() const {
  uint64_t n = 0;
  for (const auto& file : source_files)
    for (const io::TensorInfo& t : file->tensors()) n += t.nbytes();
  return n;
}

io::CheckpointIndex DequantPlan::index() const {
  std::vector<io::TensorInfo> outputs;
  outputs.reserve(tensors.size());
  for (const DequantTensor& t : tensors) outputs.push_back(t.output);
  return io::index_for(shards, outputs);
}

std::string dequantized_config(std::string_view text, const std::string& label) {
  nlohmann::json config = io::parse_strict_json(text, label);
  if (!config.is_object()) throw InputError(label + ": is a JSON " + std::string(config.type_name()) + ", not an object");
  config.erase("quantization_config");
  config.erase("expert_dtype");
  return config.dump(2) + "\n";
}

DequantPlan plan_dequant(const std::string& src_dir, const std::string& dst_dir, uint64_t shard_bytes) {
  DequantPlan plan;
  plan.src_dir = src_dir;
  SourceCheckpoint source = open_source_checkpoint(src_dir);
  const nlohmann::json source_files = source_files_manifest(source);
  plan.source_files = std::move(source.shards);

  // Source order: by file, then by offset (tensors() is sorted by offset).
  const PairedSource paired = pair_source_tensors(plan.source_files);
  const std::vector<TensorRef>& refs = paired.refs;
  const std::map<std::string_view, SourceTensor>& source_of = paired.by_name;
  const WeightPairing& pairing = paired.pairing;
  std::map<std::string_view, const QuantizedWeight*> quantized;
  std::set<std::string_view> scales;
  for (const QuantizedWeight& q : pairing.quantized) {
    quantized.emplace(q.weight, &q);
    scales.insert(q.scale);
  }

  for (const TensorRef& ref : refs) {
    const SourceTensor& src = source_of.at(ref.name);
    if (scales.count(ref.name)) {
      ++plan.scales_dropped;
      plan.scale_bytes += src.info->nbytes();
      continue;
    }
    DequantTensor t;
    t.weight = src;
    t.output = io::TensorInfo{ref.name, ref.dtype, ref.shape, 0, src.info->nbytes()};
    if (const auto q = quantized.find(ref.name); q != quantized.end()) {
      if (q->second->storage == Storage::Nvfp4)
        throw InputError(ref.file + ": tensor " + io::quote_name(ref.name) +
                         " is NVFP4, which dequant does not read (it reads FP8 blocks and MXFP4)");
      t.kind = q->second->storage == Storage::Mxfp4 ? DequantKind::Mxfp4 : DequantKind::Fp8Block;
      t.storage = q->second->storage;
      t.scale = source_of.at(q->second->scale);
      t.output.dtype = DType::BF16;
      t.output.shape = q->second->logical_shape;
      const io::StorageSize size = io::storage_size(DType::BF16, t.output.shape);
      if (!size.problem.empty()) throw InputError(ref.file + ": tensor " + io::quote_name(ref.name) + ": " + size.problem);
      t.output.end = size.nbytes;
    }
    plan.tensors.push_back(std::move(t));
  }

  std::vector<io::TensorInfo> outputs;
  outputs.reserve(plan.tensors.size());
  for (const DequantTensor& t : plan.tensors) outputs.push_back(t.output);
  plan.shards = io::plan_shards(outputs, shard_bytes);

  const std::string config_path = join_path(src_dir, io::kConfigFileName);
  if (is_regular_file(config_path)) plan.config_text = dequantized_config(read_text_file(config_path), config_path);

  plan.extra_files = list_extra_files(src_dir, dst_dir, source, {std::string(io::kConfigFileName)});
  for (const io::PlannedShard& shard : plan.shards)
    if (std::binary_search(plan.extra_files.begin(), plan.extra_files.end(), shard.file))
      throw InputError(join_path(src_dir, shard.file) + ": is not a shard of the source checkpoint, but the output's shard " +
                       io::quote_name(shard.file) + " has its name; move it out of the way");

  // The manifest: enough to tell, on --resume, that the same source and options give the same output.
  Fingerprint layout;
  nlohmann::json shards = nlohmann::json::array();
  uint64_t output_bytes = 0;
  for (const io::PlannedShard& shard : plan.shards) {
    layout.add(shard.file);
    for (size_t i : shard.tensors) {
      const io::TensorInfo& t = plan.tensors[i].output;
      layout.add(t.name);
      layout.add(dtype_name(t.dtype));
      layout.add_shape(t.shape);
    }
    shards.push_back({{"file", shard.file}, {"tensors", shard.tensors.size()}, {"bytes", shard.bytes}});
    output_bytes += shard.bytes;
  }
  plan.manifest = {{"format", kDequantManifestFormat},
                   {"complete", false},
                   {"source", {{"files", source_files}}},
                   {"options", {{"shard_bytes", shard_bytes}}},
                   {"output", {{"tensors", plan.tensors.size()}, {"bytes", output_bytes}, {"layout", layout.hex()},
                               {"shards", shards}}}};
  return plan;
}

const JobPlanFile& dequant_plan_file() {
  static const JobPlanFile job{"dequant", kDequantPlanFileName, kDequantManifestFormat, {{"shard_bytes", "--shard-size"}}};
  return job;
}

std::string dequant_manifest_difference(const nlohmann::json& stored, const nlohmann::json& planned) {
  return manifest_difference(dequant_plan_file(), stored, planned);
}

}  // namespace fp4kit
