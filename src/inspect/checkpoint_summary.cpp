#include "inspect/checkpoint_summary.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <tuple>

#include "base/error.h"
#include "inspect/name_pattern.h"
#include "io/checkpoint_index.h"

namespace fp4kit {

CheckpointSummary summarize_checkpoint(const std::string& dir) {
  CheckpointSummary s;
  s.dir = dir;
  const auto config_path = std::filesystem::path(dir) / "config.json";
  if (std::filesystem::exists(config_path)) {
    std::ifstream in(config_path);
    s.config = nlohmann::json::parse(in, nullptr, false);
    if (s.config.is_discarded()) throw InputError(config_path.string() + ": not valid JSON");
  }
  const io::Checkpoint ckpt = io::Checkpoint::open(dir);
  const auto shards = ckpt.shard_files();
  s.shards = shards.size();

  struct Group {
    std::vector<std::set<int64_t>> indices;
    size_t count = 0;
    uint64_t bytes = 0;
  };
  std::map<std::tuple<std::string, std::string, std::vector<int64_t>>, Group> groups;
  std::set<std::string> seen;
  for (const auto& shard_name : shards) {
    const auto& shard = ckpt.shard(shard_name);
    for (const auto& t : shard.tensors()) {
      ++s.tensors;
      s.bytes += t.nbytes();
      const std::string dtype(dtype_name(t.dtype));
      s.bytes_per_dtype[dtype] += t.nbytes();
      if (!seen.insert(t.name).second) s.anomalies.push_back("tensor '" + t.name + "' appears in more than one shard");
      if (ckpt.has_index()) {
        auto it = ckpt.index().weight_map.find(t.name);
        if (it == ckpt.index().weight_map.end())
          s.anomalies.push_back("tensor '" + t.name + "' is in " + shard_name + " but not in the index");
        else if (it->second != shard_name)
          s.anomalies.push_back("tensor '" + t.name + "' is in " + shard_name + " but the index says " + it->second);
      }
      SplitName split = split_name(t.name);
      Group& g = groups[{split.skeleton, dtype, t.shape}];
      if (g.indices.size() < split.numbers.size()) g.indices.resize(split.numbers.size());
      for (size_t k = 0; k < split.numbers.size(); ++k) g.indices[k].insert(split.numbers[k]);
      ++g.count;
      g.bytes += t.nbytes();
    }
  }
  if (ckpt.has_index())
    for (const auto& [name, file] : ckpt.index().weight_map)
      if (!seen.count(name)) s.anomalies.push_back("tensor '" + name + "' is in the index (" + file + ") but in no shard");
  for (const auto& [key, g] : groups)
    s.patterns.push_back({format_pattern(std::get<0>(key), g.indices), std::get<1>(key), std::get<2>(key), g.count, g.bytes});
  std::sort(s.patterns.begin(), s.patterns.end(), [](const auto& a, const auto& b) { return a.pattern < b.pattern; });
  return s;
}

nlohmann::json to_json(const CheckpointSummary& s) {
  nlohmann::json j;
  j["dir"] = s.dir;
  j["config"] = s.config;
  j["shards"] = s.shards;
  j["tensors"] = s.tensors;
  j["bytes"] = s.bytes;
  j["bytes_per_dtype"] = s.bytes_per_dtype;
  auto& p = j["patterns"] = nlohmann::json::array();
  for (const auto& t : s.patterns)
    p.push_back({{"pattern", t.pattern}, {"dtype", t.dtype}, {"shape", t.shape}, {"count", t.count}, {"bytes", t.bytes}});
  j["anomalies"] = s.anomalies;
  return j;
}

}  // namespace fp4kit
