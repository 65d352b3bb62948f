#include "checkpoint_edit.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/checkpoint_index.h"
#include "io/safetensors_file.h"
#include "io/safetensors_writer.h"
#include "test_data.h"

namespace fp4kit::testing {

namespace fs = std::filesystem;

std::string copy_tiny_checkpoint(const std::string& tag) {
  const std::string dir = fresh_temp_dir(tag);
  for (const auto& e : fs::directory_iterator(test_data("dsv4-tiny"))) {
    const std::string name = e.path().filename().string();
    if (name == "config.json" || name == "model.safetensors.index.json" || name.rfind("model-", 0) == 0)
      fs::copy_file(e.path(), fs::path(dir) / name);
  }
  return dir;
}

void rewrite_shard(const std::string& shard_path, const std::function<bool(io::TensorInfo&)>& edit) {
  const std::string tmp = shard_path + ".edit";
  {
    const io::SafetensorsFile in = io::SafetensorsFile::open(shard_path);
    io::SafetensorsWriter out(tmp);
    std::vector<std::pair<std::string, const io::TensorInfo*>> kept;  // new name -> source
    for (const auto& t : in.tensors()) {
      io::TensorInfo copy = t;
      if (!edit(copy)) continue;
      out.declare(copy.name, copy.dtype, copy.shape);
      kept.emplace_back(copy.name, &t);
    }
    out.begin();
    for (const auto& planned : out.layout())
      for (const auto& [name, source] : kept)
        if (name == planned.name) out.write(name, in.view(*source));
    out.commit();
  }
  fs::rename(tmp, shard_path);
}

void patch_header(const std::string& shard_path, const std::string& from, const std::string& to) {
  if (from.size() != to.size()) throw std::logic_error("patch_header needs equal lengths");
  std::fstream f(shard_path, std::ios::in | std::ios::out | std::ios::binary);
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, '\0');
  f.read(header.data(), static_cast<std::streamsize>(n));
  const size_t at = header.find(from);
  if (at == std::string::npos) throw std::logic_error("patch_header: '" + from + "' not in header");
  header.replace(at, from.size(), to);
  f.seekp(8);
  f.write(header.data(), static_cast<std::streamsize>(n));
}

namespace {

void edit_index(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  const std::string path = dir + "/model.safetensors.index.json";
  nlohmann::json j;
  {
    std::ifstream in(path);
    j = nlohmann::json::parse(in);
  }
  edit(j);
  std::ofstream(path) << j.dump(2);
}

}  // namespace

void put_tensor(const std::string& dir, const std::string& beside, const std::string& name, DType dtype,
                const std::vector<int64_t>& shape, std::span<const std::byte> bytes) {
  const std::string shard = shard_holding(dir, beside);
  const std::string tmp = shard + ".edit";
  {
    const io::SafetensorsFile in = io::SafetensorsFile::open(shard);
    io::SafetensorsWriter out(tmp);
    for (const auto& t : in.tensors())
      if (t.name != name) out.declare(t.name, t.dtype, t.shape);
    out.declare(name, dtype, shape);
    out.begin();
    for (const auto& planned : out.layout()) {
      if (planned.name == name) out.write(name, bytes);
      else out.write(planned.name, in.view(in.at(planned.name)));
    }
    out.commit();
  }
  fs::rename(tmp, shard);
  const std::string file = fs::path(shard).filename().string();
  edit_index(dir, [&](nlohmann::json& j) { j["weight_map"][name] = file; });
}

void rename_tensor(const std::string& dir, const std::string& from, const std::string& to) {
  const std::string shard = shard_holding(dir, from);
  rewrite_shard(shard, [&](io::TensorInfo& t) {
    if (t.name == from) t.name = to;
    return true;
  });
  edit_index(dir, [&](nlohmann::json& j) {
    j["weight_map"].erase(from);
    j["weight_map"][to] = fs::path(shard).filename().string();
  });
}

std::string shard_holding(const std::string& dir, const std::string& tensor) {
  const auto index = io::CheckpointIndex::load(dir + "/model.safetensors.index.json");
  return dir + "/" + index.weight_map.at(tensor);
}

}  // namespace fp4kit::testing
