#include "io/checkpoint_index.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>

#include "base/errno_text.h"
#include "base/error.h"
#include "io/atomic_file.h"
#include "io/quote_name.h"
#include "io/strict_json.h"

namespace fp4kit::io {

namespace {

std::string join(const std::string& dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  return dir.back() == '/' ? dir + std::string(name) : dir + "/" + std::string(name);
}

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// A shard must be a file beside the index: anything else could point a converter at arbitrary paths.
bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open: " + errno_text(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw InputError(path + ": cannot read: " + errno_text(errno));
  return std::move(text).str();
}

}  // namespace

CheckpointIndex CheckpointIndex::load(const std::string& index_path) {
  const nlohmann::json root = parse_strict_json(read_text_file(index_path), index_path);
  auto fail = [&](const std::string& what) { throw InputError(index_path + ": " + what); };
  if (!root.is_object()) fail(std::string("is a JSON ") + root.type_name() + ", not an object");
  CheckpointIndex index;
  if (const auto it = root.find("metadata"); it != root.end()) {
    if (!it->is_object()) fail(std::string("\"metadata\" is a JSON ") + it->type_name() + ", not an object");
    index.metadata = *it;
  }
  const auto map = root.find("weight_map");
  if (map == root.end()) fail("no \"weight_map\"");
  if (!map->is_object()) fail(std::string("\"weight_map\" is a JSON ") + map->type_name() + ", not an object");
  for (const auto& [tensor, shard] : map->items()) {
    if (tensor.empty()) fail("\"weight_map\" has an empty tensor name");
    if (!shard.is_string())
      fail("tensor " + quote_name(tensor) + ": shard is a JSON " + shard.type_name() + ", not a string");
    const auto& file = shard.get_ref<const std::string&>();
    if (!is_plain_file_name(file))
      fail("tensor " + quote_name(tensor) + ": shard " + quote_name(file) + " is not a plain file name in the index's directory");
    index.weight_map.emplace(tensor, file);
  }
  return index;
}

void CheckpointIndex::save(const std::string& index_path) const {
  std::string text;
  try {
    // nlohmann objects are std::maps: keys come out sorted.
    nlohmann::json root = nlohmann::json::object();
    root["metadata"] = metadata;
    root["weight_map"] = weight_map;
    text = root.dump(2) + "\n";
  } catch (const nlohmann::json::exception& e) {
    throw Error(index_path + ": cannot write the index: " + e.what());
  }
  write_file_atomic(index_path, text);
}

std::vector<std::string> CheckpointIndex::shard_files() const {
  std::set<std::string> files;
  for (const auto& [tensor, file] : weight_map) files.insert(file);
  return {files.begin(), files.end()};
}

struct Checkpoint::State {
  std::string dir;
  bool has_index = false;
  CheckpointIndex index;
  std::vector<std::string> shard_files;

  std::mutex mutex;  // guards the two caches below
  std::map<std::string, std::unique_ptr<SafetensorsFile>, std::less<>> open_shards;
  // Without an index: every tensor of every shard, built on the first find().
  std::optional<std::map<std::string, std::pair<const SafetensorsFile*, const TensorInfo*>, std::less<>>> scanned;

  std::string index_path() const { return join(dir, kIndexFileName); }

  const SafetensorsFile& shard_locked(const std::string& file) {
    auto it = open_shards.find(file);
    if (it == open_shards.end())
      it = open_shards.emplace(file, std::make_unique<SafetensorsFile>(SafetensorsFile::open(join(dir, file)))).first;
    return *it->second;
  }
};

Checkpoint::Checkpoint(std::unique_ptr<State> state) : state_(std::move(state)) {}
Checkpoint::Checkpoint(Checkpoint&&) noexcept = default;
Checkpoint& Checkpoint::operator=(Checkpoint&&) noexcept = default;
Checkpoint::~Checkpoint() = default;

Checkpoint Checkpoint::open(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw InputError(dir + ": not a directory" + (ec ? ": " + ec.message() : ""));
  auto state = std::make_unique<State>();
  state->dir = dir;
  if (is_regular_file(state->index_path())) {
    state->has_index = true;
    state->index = CheckpointIndex::load(state->index_path());
    state->shard_files = state->index.shard_files();
  } else if (is_regular_file(join(dir, kSingleFileName))) {
    state->shard_files = {std::string(kSingleFileName)};
  } else {
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      const std::string name = entry.path().filename().string();
      // Hidden files include AtomicFile's temporaries.
      if (!name.starts_with(".") && name.ends_with(".safetensors") && entry.is_regular_file(ec))
        state->shard_files.push_back(name);
    }
    if (ec) throw InputError(dir + ": cannot list the directory: " + ec.message());
    std::sort(state->shard_files.begin(), state->shard_files.end());
  }
  if (state->shard_files.empty())
    throw InputError(dir + ": no " + std::string(kIndexFileName) + ", " + std::string(kSingleFileName) +
                     " or other .safetensors files");
  return Checkpoint(std::move(state));
}

const std::string& Checkpoint::dir() const { return state_->dir; }
bool Checkpoint::has_index() const { return state_->has_index; }
const CheckpointIndex& Checkpoint::index() const { return state_->index; }
std::vector<std::string> Checkpoint::shard_files() const { return state_->shard_files; }

const SafetensorsFile& Checkpoint::shard(const std::string& file) const {
  std::lock_guard lock(state_->mutex);
  return state_->shard_locked(file);
}

std::pair<const SafetensorsFile*, const TensorInfo*> Checkpoint::find(std::string_view tensor) const {
  State& s = *state_;
  std::lock_guard lock(s.mutex);
  if (s.has_index) {
    const auto it = s.index.weight_map.find(std::string(tensor));
    if (it == s.index.weight_map.end()) return {nullptr, nullptr};
    const SafetensorsFile* file = nullptr;
    try {
      file = &s.shard_locked(it->second);
    } catch (const InputError& e) {
      throw InputError(s.index_path() + ": tensor " + quote_name(tensor) + " maps to shard " + quote_name(it->second) +
                       ", which cannot be used: " + e.what());
    }
    const TensorInfo* info = file->find(tensor);
    if (!info)
      throw InputError(s.index_path() + ": tensor " + quote_name(tensor) + " maps to shard " + quote_name(it->second) +
                       ", which has no such tensor");
    return {file, info};
  }
  if (!s.scanned) {
    std::map<std::string, std::pair<const SafetensorsFile*, const TensorInfo*>, std::less<>> all;
    for (const std::string& name : s.shard_files) {
      const SafetensorsFile& file = s.shard_locked(name);
      for (const TensorInfo& t : file.tensors()) {
        const auto [it, inserted] = all.emplace(t.name, std::pair{&file, &t});
        if (!inserted)
          throw InputError(s.dir + ": tensor " + quote_name(t.name) + " is in both " +
                           quote_name(it->second.first->path()) + " and " + quote_name(file.path()));
      }
    }
    s.scanned = std::move(all);
  }
  const auto it = s.scanned->find(tensor);
  return it == s.scanned->end() ? std::pair<const SafetensorsFile*, const TensorInfo*>{nullptr, nullptr}
                                : it->second;
}

}  // namespace fp4kit::io
