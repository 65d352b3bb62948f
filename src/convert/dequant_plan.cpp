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
#include "models/quantized_weights.h"

namespace fp4kit {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kConfigFileName = "config.json";

std::string join(const std::string& dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  return dir.back() == '/' ? dir + std::string(name) : dir + "/" + std::string(name);
}

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open: " + std::error_code(errno, std::generic_category()).message());
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw InputError(path + ": cannot read");
  return std::move(text).str();
}

// FNV-1a, 64 bits: a fingerprint to notice a changed header, not a defence against forgery.
class Fingerprint {
 public:
  void add(std::string_view s) {
    for (char c : s) mix(static_cast<uint8_t>(c));
    mix(0xFF);  // field separator: no UTF-8 string holds this byte
  }
  void add(uint64_t v) {
    for (int i = 0; i < 8; ++i) mix(static_cast<uint8_t>(v >> (8 * i)));
  }
  void add_shape(const std::vector<int64_t>& shape) {
    add(static_cast<uint64_t>(shape.size()));
    for (int64_t d : shape) add(static_cast<uint64_t>(d));
  }
  std::string hex() const {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h_));
    return buf;
  }

 private:
  void mix(uint8_t b) { h_ = (h_ ^ b) * 0x100000001b3ULL; }
  uint64_t h_ = 0xcbf29ce484222325ULL;
};

std::string header_fingerprint(const io::SafetensorsFile& file) {
  Fingerprint f;
  for (const auto& [key, value] : file.header().metadata) {
    f.add(key);
    f.add(value);
  }
  for (const io::TensorInfo& t : file.tensors()) {
    f.add(t.name);
    f.add(dtype_name(t.dtype));
    f.add_shape(t.shape);
    f.add(t.begin);
    f.add(t.end);
  }
  return f.hex();
}

// The shard files of the source and, when there is one, its index.
struct SourceListing {
  std::vector<std::string> files;  // names relative to the source directory, sorted
  std::optional<io::CheckpointIndex> index;
  std::string index_path;
};

SourceListing list_source(const std::string& src) {
  std::error_code ec;
  if (!fs::is_directory(src, ec)) throw InputError(src + ": not a directory" + (ec ? ": " + ec.message() : ""));
  SourceListing listing;
  listing.index_path = join(src, io::kIndexFileName);
  if (is_regular_file(listing.index_path)) {
    listing.index = io::CheckpointIndex::load(listing.index_path);
    listing.files = listing.index->shard_files();
    for (const std::string& file : listing.files) {
      if (is_regular_file(join(src, file))) continue;
      const auto first = std::find_if(listing.index->weight_map.begin(), listing.index->weight_map.end(),
                                      [&](const auto& entry) { return entry.second == file; });
      throw InputError(listing.index_path + ": tensor " + io::quote_name(first->first) + " maps to shard " +
                       io::quote_name(file) + ", which is not there (" + join(src, file) + ")");
    }
  } else if (is_regular_file(join(src, io::kSingleFileName))) {
    listing.files = {std::string(io::kSingleFileName)};
  } else {
    for (const auto& entry : fs::directory_iterator(src, ec)) {
      const std::string name = entry.path().filename().string();
      if (!name.starts_with(".") && name.ends_with(".safetensors") && entry.is_regular_file(ec))
        listing.files.push_back(name);
    }
    if (ec) throw InputError(src + ": cannot list the directory: " + ec.message());
    std::sort(listing.files.begin(), listing.files.end());
  }
  if (listing.files.empty())
    throw InputError(src + ": no " + std::string(io::kIndexFileName) + ", " + std::string(io::kSingleFileName) +
                     " or other .safetensors files");
  return listing;
}

// Every tensor in exactly one shard, and the index (if any) agreeing with the shards' headers.
void check_tensor_homes(const SourceListing& listing, const std::vector<std::unique_ptr<io::SafetensorsFile>>& files) {
  std::map<std::string_view, const io::SafetensorsFile*> home;
  for (const auto& file : files) {
    for (const io::TensorInfo& t : file->tensors()) {
      const auto [it, inserted] = home.emplace(t.name, file.get());
      if (!inserted)
        throw InputError(file->path() + ": tensor " + io::quote_name(t.name) + " is also in " + it->second->path());
      if (!listing.index) continue;
      const auto listed = listing.index->weight_map.find(t.name);
      if (listed == listing.index->weight_map.end())
        throw InputError(file->path() + ": tensor " + io::quote_name(t.name) + " is not listed in " + listing.index_path);
    }
  }
  if (!listing.index) return;
  for (const auto& [tensor, file] : listing.index->weight_map) {
    const auto it = home.find(tensor);
    const std::string where = it == home.end() ? "" : ", but " + it->second->path() + " holds it";
    if (it == home.end() || fs::path(it->second->path()).filename() != file)
      throw InputError(listing.index_path + ": tensor " + io::quote_name(tensor) + " maps to shard " +
                       io::quote_name(file) + ", which has no such tensor" + where);
  }
}

// Files beside the checkpoint that go to the output unchanged: tokenizer, generation config,
// inference/ code... Not the shards, the index or config.json (rewritten), not VCS or download
// caches, not our own plan file or anyone's temporaries, and not the output directory itself.
std::vector<std::string> list_extra_files(const std::string& src, const std::string& dst,
                                          const std::set<std::string>& skipped_top_level) {
  std::error_code ec;
  const fs::path dst_path = fs::weakly_canonical(dst, ec);
  std::vector<std::string> out;
  fs::recursive_directory_iterator it(src, fs::directory_options::none, ec), end;
  if (ec) throw InputError(src + ": cannot list the directory: " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) throw InputError(src + ": cannot list the directory: " + ec.message());
    const fs::path rel = it->path().lexically_relative(src);
    const std::string name = it->path().filename().string();
    const bool top = it.depth() == 0;
    std::error_code type_ec;
    if (it->is_directory(type_ec) && !it->is_symlink(type_ec)) {
      const bool ours = !dst_path.empty() && fs::weakly_canonical(it->path(), type_ec) == dst_path;
      if (ours || (top && (name == ".git" || name == ".cache"))) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file(type_ec)) continue;  // follows symlinks: a Hugging Face snapshot is all links
    if (is_temporary_file_name(name)) continue;
    if (top && (skipped_top_level.count(name) || name == kDequantPlanFileName)) continue;
    out.push_back(rel.string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

bool is_temporary_file_name(std::string_view name) {
  const size_t tmp = name.rfind(".tmp-");
  if (!name.starts_with(".") || tmp == std::string_view::npos || tmp == 0) return false;
  const std::string_view tail = name.substr(tmp + 5);  // <pid>-<16 hex digits>
  const size_t dash = tail.find('-');
  if (dash == 0 || dash == std::string_view::npos || tail.size() - dash - 1 != 16) return false;
  auto all = [](std::string_view s, auto pred) { return std::all_of(s.begin(), s.end(), pred); };
  return all(tail.substr(0, dash), [](char c) { return c >= '0' && c <= '9'; }) &&
         all(tail.substr(dash + 1), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

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
  const SourceListing listing = list_source(src_dir);
  for (const std::string& file : listing.files)
    plan.source_files.push_back(std::make_unique<io::SafetensorsFile>(io::SafetensorsFile::open(join(src_dir, file))));
  check_tensor_homes(listing, plan.source_files);

  // Source order: by file, then by offset (tensors() is sorted by offset).
  std::vector<TensorRef> refs;
  std::map<std::string_view, SourceTensor> source_of;
  for (const auto& file : plan.source_files)
    for (const io::TensorInfo& t : file->tensors()) {
      refs.push_back({t.name, t.dtype, t.shape, file->path()});
      source_of.emplace(t.name, SourceTensor{file.get(), &t});
    }
  const WeightPairing pairing = pair_quantized_weights(refs);
  if (!pairing.problems.empty()) {
    const size_t more = pairing.problems.size() - 1;
    throw InputError(pairing.problems.front() +
                     (more ? " (and " + std::to_string(more) + " more problem" + (more > 1 ? "s" : "") + ")" : ""));
  }
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

  const std::string config_path = join(src_dir, kConfigFileName);
  if (is_regular_file(config_path)) plan.config_text = dequantized_config(read_text_file(config_path), config_path);

  std::set<std::string> skipped(listing.files.begin(), listing.files.end());
  skipped.insert(std::string(io::kIndexFileName));
  skipped.insert(std::string(kConfigFileName));
  plan.extra_files = list_extra_files(src_dir, dst_dir, skipped);
  for (const io::PlannedShard& shard : plan.shards)
    if (std::binary_search(plan.extra_files.begin(), plan.extra_files.end(), shard.file))
      throw InputError(join(src_dir, shard.file) + ": is not a shard of the source checkpoint, but the output's shard " +
                       io::quote_name(shard.file) + " has its name; move it out of the way");

  // The manifest: enough to tell, on --resume, that the same source and options give the same output.
  nlohmann::json source_files = nlohmann::json::array();
  for (const auto& file : plan.source_files)
    source_files.push_back({{"name", fs::path(file->path()).filename().string()},
                            {"bytes", file->file_size()},
                            {"header", header_fingerprint(*file)}});
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

std::string dequant_manifest_difference(const nlohmann::json& stored, const nlohmann::json& planned) {
  auto field = [](const nlohmann::json& j, const char* key) {
    return j.is_object() && j.contains(key) ? j.at(key) : nlohmann::json();
  };
  if (field(stored, "format") != field(planned, "format"))
    return "its plan has format " + field(stored, "format").dump() + ", this fp4kit writes " + field(planned, "format").dump();
  const nlohmann::json old_files = field(field(stored, "source"), "files");
  const nlohmann::json new_files = field(field(planned, "source"), "files");
  if (old_files != new_files) {
    if (!old_files.is_array() || old_files.size() != new_files.size())
      return "the source's shard files differ";
    for (size_t i = 0; i < new_files.size(); ++i) {
      if (old_files[i] == new_files[i]) continue;
      const std::string name = new_files[i].value("name", std::string());
      if (field(old_files[i], "name") != new_files[i].at("name"))
        return "the source's shard files differ (" + field(old_files[i], "name").dump() + " vs '" + name + "')";
      return "source shard '" + name + "' changed (size or header)";
    }
  }
  const nlohmann::json old_size = field(field(stored, "options"), "shard_bytes");
  const nlohmann::json new_size = field(field(planned, "options"), "shard_bytes");
  if (old_size != new_size) return "it was written with --shard-size " + old_size.dump() + ", not " + new_size.dump();
  if (field(stored, "output") != field(planned, "output")) return "its output layout differs";
  return "";
}

}  // namespace fp4kit
