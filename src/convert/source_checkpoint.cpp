#include "convert/source_checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>

#include "base/error.h"
#include "convert/fingerprint.h"
#include "io/quote_name.h"

namespace fp4kit {

namespace fs = std::filesystem;

namespace {

void list_shards(const std::string& src, SourceCheckpoint& source) {
  std::error_code ec;
  if (!fs::is_directory(src, ec)) throw InputError(src + ": not a directory" + (ec ? ": " + ec.message() : ""));
  source.index_path = join_path(src, io::kIndexFileName);
  if (is_regular_file(source.index_path)) {
    source.index = io::CheckpointIndex::load(source.index_path);
    source.files = source.index->shard_files();
    for (const std::string& file : source.files) {
      if (is_regular_file(join_path(src, file))) continue;
      const auto first = std::find_if(source.index->weight_map.begin(), source.index->weight_map.end(),
                                      [&](const auto& entry) { return entry.second == file; });
      throw InputError(source.index_path + ": tensor " + io::quote_name(first->first) + " maps to shard " +
                       io::quote_name(file) + ", which is not there (" + join_path(src, file) + ")");
    }
  } else if (is_regular_file(join_path(src, io::kSingleFileName))) {
    source.files = {std::string(io::kSingleFileName)};
  } else {
    for (const auto& entry : fs::directory_iterator(src, ec)) {
      const std::string name = entry.path().filename().string();
      if (!name.starts_with(".") && name.ends_with(".safetensors") && entry.is_regular_file(ec))
        source.files.push_back(name);
    }
    if (ec) throw InputError(src + ": cannot list the directory: " + ec.message());
    std::sort(source.files.begin(), source.files.end());
  }
  if (source.files.empty())
    throw InputError(src + ": no " + std::string(io::kIndexFileName) + ", " + std::string(io::kSingleFileName) +
                     " or other .safetensors files");
}

// Every tensor in exactly one shard, and the index (if any) agreeing with the shards' headers.
void check_tensor_homes(const SourceCheckpoint& source) {
  std::map<std::string_view, const io::SafetensorsFile*> home;
  for (const auto& file : source.shards) {
    for (const io::TensorInfo& t : file->tensors()) {
      const auto [it, inserted] = home.emplace(t.name, file.get());
      if (!inserted)
        throw InputError(file->path() + ": tensor " + io::quote_name(t.name) + " is also in " + it->second->path());
      if (!source.index) continue;
      if (!source.index->weight_map.count(t.name))
        throw InputError(file->path() + ": tensor " + io::quote_name(t.name) + " is not listed in " + source.index_path);
    }
  }
  if (!source.index) return;
  for (const auto& [tensor, file] : source.index->weight_map) {
    const auto it = home.find(tensor);
    const std::string where = it == home.end() ? "" : ", but " + it->second->path() + " holds it";
    if (it == home.end() || fs::path(it->second->path()).filename() != file)
      throw InputError(source.index_path + ": tensor " + io::quote_name(tensor) + " maps to shard " +
                       io::quote_name(file) + ", which has no such tensor" + where);
  }
}

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

// fp4kit's own plan files (.fp4kit-dequant.json, .fp4kit-convert.json) never travel.
bool is_plan_file_name(std::string_view name) { return name.starts_with(".fp4kit-") && name.ends_with(".json"); }

}  // namespace

std::string join_path(const std::string& dir, std::string_view name) {
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

SourceCheckpoint open_source_checkpoint(const std::string& src_dir) {
  SourceCheckpoint source;
  list_shards(src_dir, source);
  for (const std::string& file : source.files)
    source.shards.push_back(std::make_unique<io::SafetensorsFile>(io::SafetensorsFile::open(join_path(src_dir, file))));
  check_tensor_homes(source);
  return source;
}

std::vector<std::string> list_extra_files(const std::string& src, const std::string& dst,
                                          const SourceCheckpoint& source, std::set<std::string> skipped_top_level) {
  skipped_top_level.insert(source.files.begin(), source.files.end());
  skipped_top_level.insert(std::string(io::kIndexFileName));
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
    if (top && (skipped_top_level.count(name) || is_plan_file_name(name))) continue;
    out.push_back(rel.string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

nlohmann::json source_files_manifest(const SourceCheckpoint& source) {
  nlohmann::json files = nlohmann::json::array();
  for (const auto& file : source.shards)
    files.push_back({{"name", fs::path(file->path()).filename().string()},
                     {"bytes", file->file_size()},
                     {"header", header_fingerprint(*file)}});
  return files;
}

PairedSource pair_source_tensors(const std::vector<std::unique_ptr<io::SafetensorsFile>>& shards) {
  PairedSource p;
  for (const auto& file : shards)
    for (const io::TensorInfo& t : file->tensors()) {
      p.refs.push_back({t.name, t.dtype, t.shape, file->path()});
      p.by_name.emplace(t.name, SourceTensor{file.get(), &t});
    }
  p.pairing = pair_quantized_weights(p.refs);
  if (!p.pairing.problems.empty()) {
    const size_t more = p.pairing.problems.size() - 1;
    throw InputError(p.pairing.problems.front() +
                     (more ? " (and " + std::to_string(more) + " more problem" + (more > 1 ? "s" : "") + ")" : ""));
  }
  return p;
}

}  // namespace fp4kit
