#include "verify/checkpoint_files.h"

#include <filesystem>
#include <set>

#include "base/error.h"
#include "io/quote_name.h"

namespace fp4kit::verify {

const TensorRef* CheckpointTensors::find(const std::string& name) const {
  const auto it = by_name.find(name);
  return it == by_name.end() ? nullptr : &tensors[it->second];
}

CheckpointTensors check_checkpoint_files(const io::Checkpoint& ckpt, VerifyReport& report, const std::string& label) {
  namespace fs = std::filesystem;
  CheckpointTensors out;
  const std::string dir = ckpt.dir();
  const io::CheckpointIndex& index = ckpt.index();
  out.shards = ckpt.shard_files();

  // Which index entries each shard should hold.
  std::map<std::string, std::vector<std::string>> listed;
  for (const auto& [tensor, file] : index.weight_map) listed[file].push_back(tensor);

  std::set<std::string> readable;
  for (const std::string& file : out.shards) {
    const std::string path = dir + "/" + file;
    if (!fs::exists(path)) {
      const auto& names = listed[file];
      report.add(label + "files.shard_missing", Severity::Fail, file,
                 path + ": missing; the index maps " + std::to_string(names.size()) + " tensors to it" +
                     (names.empty() ? "" : " (e.g. " + io::quote_name(names.front()) + ")"));
      out.complete = false;
      continue;
    }
    try {
      const io::SafetensorsFile& shard = ckpt.shard(file);
      readable.insert(file);
      for (const io::TensorInfo& t : shard.tensors()) {
        const auto [it, fresh] = out.by_name.emplace(t.name, out.tensors.size());
        if (!fresh) {
          report.add(label + "index.duplicate_tensor", Severity::Fail, t.name,
                     path + ": tensor " + io::quote_name(t.name) + " is also in " + out.tensors[it->second].file +
                         " (a loader keeps one of them at random)");
          continue;
        }
        out.tensors.push_back({t.name, t.dtype, t.shape, file});
        out.bytes += t.nbytes();
      }
    } catch (const InputError& e) {
      report.add(label + "files.shard_unreadable", Severity::Fail, file, e.what());
      out.complete = false;
    }
  }

  if (ckpt.has_index()) {
    const std::string index_path = dir + "/" + std::string(io::kIndexFileName);
    for (const auto& [tensor, file] : index.weight_map) {
      if (!readable.count(file)) continue;  // already reported with the shard
      const auto it = out.by_name.find(tensor);
      if (it == out.by_name.end() || out.tensors[it->second].file != file) {
        report.add(label + "index.tensor_not_in_shard", Severity::Fail, tensor,
                   index_path + ": maps " + io::quote_name(tensor) + " to " + file + ", which does not hold it" +
                       (it == out.by_name.end() ? "" : " (it is in " + out.tensors[it->second].file + ")"));
        out.complete = false;
      }
    }
    for (const TensorRef& t : out.tensors)
      if (!index.weight_map.count(t.name))
        report.add(label + "index.tensor_not_in_index", Severity::Fail, t.name,
                   dir + "/" + t.file + ": tensor " + io::quote_name(t.name) + " is not in " + std::string(io::kIndexFileName) +
                       " (loaders that follow the index never see it)");
    if (const auto ts = index.metadata.find("total_size"); ts != index.metadata.end() && ts->is_number_unsigned() &&
                                                           out.complete && ts->get<uint64_t>() != out.bytes)
      report.add(label + "index.total_size", Severity::Warn, std::string(io::kIndexFileName),
                 index_path + ": metadata.total_size is " + std::to_string(ts->get<uint64_t>()) + ", the tensors take " +
                     std::to_string(out.bytes) + " bytes");
    // Safetensors files beside the shards that the index does not name.
    std::set<std::string> named(out.shards.begin(), out.shards.end());
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      if (e.path().extension() == ".safetensors" && !named.count(name) && name.rfind("model", 0) == 0)
        report.add(label + "files.unindexed_shard", Severity::Warn, name,
                   dir + "/" + name + ": not named by the index; loaders that follow the index ignore it");
    }
  }
  return out;
}

}  // namespace fp4kit::verify
