#pragma once
// Helpers for the convert tests: the oracle's paths, every tensor of an output directory by name
// (wherever its shard), and edits of a copy of the tiny checkpoint that keep its index in step.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "formats/bf16.h"
#include "formats/fp8_block.h"
#include "formats/nvfp4.h"
#include "io/checkpoint_index.h"
#include "io/safetensors_file.h"
#include "io/safetensors_writer.h"
#include "test_data.h"

namespace fp4kit::testing {

inline const std::string kOracleDir = "oracles/dsv4-tiny-modelopt";
inline std::string calib_file() { return test_data(kOracleDir + "/calib_amax.safetensors"); }
inline std::string oracle_dir(const std::string& mode) { return test_data(kOracleDir + "/" + mode); }

struct StoredTensor {
  std::string file;  // shard name
  DType dtype = DType::U8;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// Every tensor of every .safetensors file directly in `dir` that the index lists.
inline std::map<std::string, StoredTensor> read_checkpoint(const std::string& dir) {
  std::map<std::string, StoredTensor> out;
  const io::CheckpointIndex index = io::CheckpointIndex::load(dir + "/" + std::string(io::kIndexFileName));
  for (const std::string& shard : index.shard_files()) {
    const io::SafetensorsFile f = io::SafetensorsFile::open(dir + "/" + shard);
    for (const io::TensorInfo& t : f.tensors()) {
      StoredTensor s{shard, t.dtype, t.shape, std::vector<uint8_t>(t.nbytes())};
      f.read(t, std::as_writable_bytes(std::span(s.bytes)));
      out.emplace(t.name, std::move(s));
    }
  }
  return out;
}

// Every tensor of every .safetensors file directly in `dir`, with or without an index (a source
// checkpoint).
inline std::map<std::string, StoredTensor> read_source_checkpoint(const std::string& dir) {
  std::map<std::string, StoredTensor> out;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".safetensors") continue;
    const io::SafetensorsFile f = io::SafetensorsFile::open(entry.path().string());
    for (const io::TensorInfo& t : f.tensors()) {
      StoredTensor s{entry.path().filename().string(), t.dtype, t.shape, std::vector<uint8_t>(t.nbytes())};
      f.read(t, std::as_writable_bytes(std::span(s.bytes)));
      out.emplace(t.name, std::move(s));
    }
  }
  return out;
}

// A module's source values as ModelOpt quantizes them: BF16 as stored; FP8 blocks with F32 scales
// as the F32 dequant (ModelOpt's DeepSeek V3 script). `amax`: of the values, BF16-rounded for FP8.
struct SourceValues {
  std::vector<float> f32;
  std::vector<uint16_t> bf16;
  DType dtype = DType::BF16;
  float amax = 0;
  size_t rows = 0, cols = 0;
  FloatSpan span() const {
    return dtype == DType::F32 ? FloatSpan{f32.data(), DType::F32, f32.size()} : FloatSpan{bf16.data(), DType::BF16, bf16.size()};
  }
};

inline SourceValues source_values(const std::map<std::string, StoredTensor>& src, const std::string& module) {
  const StoredTensor& w = src.at(module + ".weight");
  SourceValues v;
  v.rows = static_cast<size_t>(w.shape[0]);
  v.cols = static_cast<size_t>(w.shape[1]);
  if (w.dtype == DType::BF16) {
    v.bf16.resize(v.rows * v.cols);
    std::memcpy(v.bf16.data(), w.bytes.data(), w.bytes.size());
    v.amax = nvfp4_ref::amax(v.span());
    return v;
  }
  const StoredTensor& s = src.at(module + ".weight_scale_inv");
  v.dtype = DType::F32;
  v.f32.resize(v.rows * v.cols);
  fp8_block_ref::dequantize_f32(w.bytes.data(), s.bytes.data(), Fp8BlockShape{v.rows, v.cols, Fp8ScaleKind::F32}, 0, v.rows,
                      v.f32.data());
  v.amax = round_to_bf16(nvfp4_ref::amax(v.span()));
  return v;
}

inline nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

// Rewrites the checkpoint in `dir` with `moved` tensors placed in shard `to` (a shard file name),
// the index updated to match.
inline void move_tensors(const std::string& dir, const std::vector<std::string>& moved, const std::string& to) {
  const std::string index_path = dir + "/" + std::string(io::kIndexFileName);
  io::CheckpointIndex index = io::CheckpointIndex::load(index_path);
  std::map<std::string, StoredTensor> all = read_checkpoint(dir);
  for (const std::string& name : moved) {
    all.at(name).file = to;
    index.weight_map.at(name) = to;
  }
  std::map<std::string, std::vector<const std::pair<const std::string, StoredTensor>*>> by_shard;
  for (const auto& entry : all) by_shard[entry.second.file].push_back(&entry);
  for (const auto& [shard, tensors] : by_shard) {
    io::SafetensorsWriter w(dir + "/" + shard);
    w.set_metadata({{"format", "pt"}});
    for (const auto* t : tensors) w.declare(t->first, t->second.dtype, t->second.shape);
    w.begin();
    for (const io::TensorInfo& info : w.layout()) w.write(info.name, std::as_bytes(std::span(all.at(info.name).bytes)));
    w.commit();
  }
  index.save(index_path);
}

// Overwrites byte `offset` of tensor `name`'s data in its shard.
inline void poke_tensor_byte(const std::string& dir, const std::string& name, uint64_t offset, uint8_t value) {
  const io::CheckpointIndex index = io::CheckpointIndex::load(dir + "/" + std::string(io::kIndexFileName));
  const std::string path = dir + "/" + index.weight_map.at(name);
  uint64_t at = 0;
  {
    const io::SafetensorsFile f = io::SafetensorsFile::open(path);
    at = f.header().data_offset + f.at(name).begin + offset;
  }
  std::fstream out(path, std::ios::in | std::ios::out | std::ios::binary);
  out.seekp(static_cast<std::streamoff>(at));
  out.put(static_cast<char>(value));
}

// A calibration file holding `values` (module -> raw F32 value).
inline void write_calibration(const std::string& path, const std::map<std::string, float>& values) {
  io::SafetensorsWriter w(path);
  for (const auto& [module, v] : values) w.declare(module + ".input_amax", DType::F32, {});
  w.begin();
  for (const io::TensorInfo& info : w.layout()) {
    const float v = values.at(info.name.substr(0, info.name.size() - std::string(".input_amax").size()));
    w.write(info.name, std::as_bytes(std::span(&v, 1)));
  }
  w.commit();
}

}  // namespace fp4kit::testing
