#include "inspect/checkpoint_summary.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "base/error.h"
#include "inspect/name_pattern.h"
#include "io/checkpoint_index.h"
#include "models/deepseek_v4.h"
#include "models/quantized_weights.h"

namespace fp4kit {

namespace {

namespace fs = std::filesystem;

// Up to `limit` lines of one kind, then a count of the rest.
class AnomalyList {
 public:
  explicit AnomalyList(std::vector<std::string>& out) : out_(out) {}
  void add(const std::string& kind, const std::string& line) {
    if (++seen_[kind] <= kLimit) out_.push_back(line);
  }
  void finish() {
    for (const auto& [kind, n] : seen_)
      if (n > kLimit) out_.push_back("... and " + std::to_string(n - kLimit) + " more: " + kind);
  }

 private:
  static constexpr size_t kLimit = 20;
  std::vector<std::string>& out_;
  std::map<std::string, size_t> seen_;
};

std::string block_of(const std::string& name) {  // "layers.3" / "mtp.0" / ""
  const size_t a = name.find('.');
  if (a == std::string::npos) return "";
  const size_t b = name.find('.', a + 1);
  return name.substr(0, b);
}

std::string prefix_through(const std::string& name, const std::string& marker, bool with_index) {
  const size_t at = name.find(marker);
  if (at == std::string::npos) return "";
  size_t end = at + marker.size();
  if (with_index) end = name.find('.', end);
  return name.substr(0, end);
}

nlohmann::json key_config_of(const nlohmann::json& c) {
  nlohmann::json k = nlohmann::json::object();
  for (const char* f : {"model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "head_dim",
                        "q_lora_rank", "o_groups", "o_lora_rank", "n_routed_experts", "num_experts_per_tok",
                        "n_shared_experts", "moe_intermediate_size", "num_hash_layers", "num_nextn_predict_layers",
                        "hc_mult", "index_n_heads", "index_topk", "vocab_size", "expert_dtype", "compress_ratios",
                        "quantization_config"})
    if (c.is_object() && c.contains(f)) k[f] = c[f];
  return k;
}

}  // namespace

CheckpointSummary summarize_checkpoint(const std::string& dir) {
  const auto start = std::chrono::steady_clock::now();
  CheckpointSummary s;
  s.dir = dir;
  AnomalyList anomalies(s.anomalies);

  const fs::path config_path = fs::path(dir) / "config.json";
  std::optional<DeepseekV4Config> v4;
  if (fs::exists(config_path)) {
    std::ifstream in(config_path);
    s.config = nlohmann::json::parse(in, nullptr, false);
    if (s.config.is_discarded()) {
      anomalies.add("config", config_path.string() + ": not valid JSON");
      s.config = nullptr;
    }
  } else {
    anomalies.add("config", "no config.json in " + dir);
  }
  if (s.config.is_object()) {
    if (s.config.contains("architectures") && s.config["architectures"].is_array() && !s.config["architectures"].empty())
      s.architecture = s.config["architectures"][0].is_string() ? s.config["architectures"][0].get<std::string>() : "";
    if (s.architecture.empty()) s.architecture = s.config.value("model_type", "");
    s.key_config = key_config_of(s.config);
    if (s.config.value("model_type", "") == "deepseek_v4") {
      try {
        v4 = DeepseekV4Config::from_json(s.config, config_path.string());
      } catch (const InputError& e) {
        anomalies.add("config", e.what());
      }
    }
  }

  const io::Checkpoint ckpt = io::Checkpoint::open(dir);
  const auto shard_files = ckpt.shard_files();
  s.shards = shard_files.size();

  // Every tensor of every shard that opens; shards that do not are anomalies.
  std::vector<TensorRef> refs;
  std::unordered_set<std::string> seen;
  for (const auto& file : shard_files) {
    if (!fs::exists(fs::path(dir) / file)) {
      size_t named = 0;
      for (const auto& [t, f] : ckpt.index().weight_map) named += f == file;
      anomalies.add("missing shard", "shard " + file + " is missing (the index names it for " + std::to_string(named) + " tensors)");
      continue;
    }
    const io::SafetensorsFile* shard = nullptr;
    try {
      shard = &ckpt.shard(file);
    } catch (const Error& e) {
      anomalies.add("unreadable shard", e.what());
      continue;
    }
    for (const auto& t : shard->tensors()) {
      if (!seen.insert(t.name).second) {
        anomalies.add("duplicate tensor", "tensor '" + t.name + "' appears in more than one shard (again in " + file + ")");
        continue;
      }
      refs.push_back({t.name, t.dtype, t.shape, file});
      s.bytes += t.nbytes();
      s.bytes_per_dtype[std::string(dtype_name(t.dtype))] += t.nbytes();
      if (ckpt.has_index()) {
        auto it = ckpt.index().weight_map.find(t.name);
        if (it == ckpt.index().weight_map.end())
          anomalies.add("not in index", "tensor '" + t.name + "' is in " + file + " but not in the index");
        else if (it->second != file)
          anomalies.add("index mismatch", "tensor '" + t.name + "' is in " + file + " but the index says " + it->second);
      }
    }
  }
  s.tensors = refs.size();
  if (ckpt.has_index())
    for (const auto& [name, file] : ckpt.index().weight_map)
      if (!seen.count(name) && fs::exists(fs::path(dir) / file))
        anomalies.add("not in shard", "tensor '" + name + "' is in the index (" + file + ") but not in that shard");

  // Quantized weights and their scales.
  const WeightPairing pairing = pair_quantized_weights(refs);
  for (const auto& p : pairing.problems) anomalies.add("weight/scale pairing", p);
  std::unordered_map<std::string, std::string> storage_of;  // tensor -> storage label
  std::unordered_map<std::string, std::vector<int64_t>> logical_shape;
  for (const auto& q : pairing.quantized) {
    storage_of[q.weight] = std::string(storage_name(q.storage));
    storage_of[q.scale] = "scale";
    for (const auto& c : q.companions) storage_of[c] = "scale";
    logical_shape[q.weight] = q.logical_shape;
    s.quantized_weights[std::string(storage_name(q.storage))]++;
  }

  // Roles, counts and name patterns.
  std::set<std::string> routed, shared, mtp_blocks;
  struct Group {
    std::vector<std::set<int64_t>> indices;
    size_t count = 0;
    uint64_t bytes = 0;
  };
  std::map<std::tuple<std::string, std::string, std::vector<int64_t>, std::string, std::string>, Group> groups;
  for (const auto& r : refs) {
    const TensorRole role = deepseek_v4_role(r.name);
    const std::string role_label(role_name(role));
    const uint64_t nbytes = io::storage_size(r.dtype, r.shape).nbytes;
    s.bytes_per_role[role_label] += nbytes;
    s.tensors_per_role[role_label]++;
    if (role == TensorRole::RoutedExpert) routed.insert(prefix_through(r.name, ".experts.", true));
    if (role == TensorRole::SharedExpert) shared.insert(prefix_through(r.name, ".shared_experts", false));
    if (r.name.rfind("mtp.", 0) == 0) {
      s.counts["mtp_tensors"]++;
      mtp_blocks.insert(block_of(r.name));
    }
    if (role == TensorRole::Router) s.counts["routers"]++;
    if (role == TensorRole::Norm) s.counts["norms"]++;
    if (role == TensorRole::HyperConnection) s.counts["mhc_tensors"]++;
    if (r.name.find(".indexer.") != std::string::npos) s.counts["indexer_tensors"]++;
    else if (r.name.find(".compressor.") != std::string::npos) s.counts["compressor_tensors"]++;
    if (role == TensorRole::HashTable) s.counts["hash_routed_layers"]++;
    auto st = storage_of.find(r.name);
    const std::string storage = st == storage_of.end() ? "plain" : st->second;
    SplitName split = split_name(r.name);
    Group& g = groups[{split.skeleton, std::string(dtype_name(r.dtype)), r.shape, role_label, storage}];
    if (g.indices.size() < split.numbers.size()) g.indices.resize(split.numbers.size());
    for (size_t k = 0; k < split.numbers.size(); ++k) g.indices[k].insert(split.numbers[k]);
    ++g.count;
    g.bytes += nbytes;
  }
  s.counts["routed_experts"] = routed.size();
  s.counts["shared_experts"] = shared.size();
  s.counts["mtp_blocks"] = mtp_blocks.size();
  for (const auto& [key, g] : groups)
    s.patterns.push_back({format_pattern(std::get<0>(key), g.indices), std::get<1>(key), std::get<2>(key),
                          std::get<3>(key), std::get<4>(key), g.count, g.bytes});
  std::sort(s.patterns.begin(), s.patterns.end(), [](const auto& a, const auto& b) {
    return std::tie(a.pattern, a.dtype, a.shape) < std::tie(b.pattern, b.dtype, b.shape);
  });

  // Against what the config says the checkpoint must hold (names and logical shapes; any storage).
  if (v4) {
    std::unordered_map<std::string, const TensorRef*> by_name;
    for (const auto& r : refs) by_name[r.name] = &r;
    std::unordered_set<std::string> expected;
    for (const auto& spec : deepseek_v4_tensors(*v4)) {
      if (spec.is_scale) continue;
      expected.insert(spec.name);
      std::vector<int64_t> want = spec.shape;
      if (spec.storage == Storage::Mxfp4) want.back() *= 2;  // any storage is compared in elements
      auto it = by_name.find(spec.name);
      if (it == by_name.end()) {
        anomalies.add("missing tensor", "tensor '" + spec.name + "' expected by config.json is missing");
        continue;
      }
      auto ls = logical_shape.find(spec.name);
      const std::vector<int64_t>& have = ls != logical_shape.end() ? ls->second : it->second->shape;
      if (have != want)
        anomalies.add("shape", "tensor '" + spec.name + "' in " + it->second->file + " has shape " + io::shape_string(have) +
                                   " but config.json implies " + io::shape_string(want));
    }
    for (const auto& r : refs)
      if (!expected.count(r.name) && storage_of[r.name] != "scale")
        anomalies.add("unexpected tensor", "tensor '" + r.name + "' in " + r.file + " is not part of the layout config.json describes");
  }
  anomalies.finish();
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return s;
}

nlohmann::json to_json(const CheckpointSummary& s) {
  nlohmann::json j;
  j["dir"] = s.dir;
  j["architecture"] = s.architecture;
  j["config"] = s.key_config;
  j["shards"] = s.shards;
  j["tensors"] = s.tensors;
  j["bytes"] = s.bytes;
  j["bytes_per_dtype"] = s.bytes_per_dtype;
  j["bytes_per_role"] = s.bytes_per_role;
  j["tensors_per_role"] = s.tensors_per_role;
  j["quantized_weights"] = s.quantized_weights;
  j["counts"] = s.counts;
  auto& p = j["patterns"] = nlohmann::json::array();
  for (const auto& t : s.patterns)
    p.push_back({{"pattern", t.pattern}, {"dtype", t.dtype}, {"shape", t.shape}, {"role", t.role},
                 {"storage", t.storage}, {"count", t.count}, {"bytes", t.bytes}});
  j["anomalies"] = s.anomalies;
  j["seconds"] = s.seconds;
  return j;
}

}  // namespace fp4kit
