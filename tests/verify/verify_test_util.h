#pragma once
// Shared by the verify tests: checkpoints converted from the tiny fixture (once per process),
// mutable copies of them, edits that break one thing, and lookups in a report.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "checkpoint_edit.h"
#include "convert/convert_test_util.h"
#include "io/checkpoint_index.h"
#include "io/safetensors_file.h"
#include "run_command.h"
#include "test_data.h"
#include "verify/verify.h"

namespace fp4kit::testing {

// `fp4kit convert` of tests/data/dsv4-tiny with `args` (e.g. "--numerics modelopt --calib F"),
// run once per distinct args; the directory must not be modified (copy it first).
inline std::string converted_tiny(const std::string& args) {
  static std::mutex mutex;
  static std::map<std::string, std::string> done;
  std::lock_guard lock(mutex);
  if (const auto it = done.find(args); it != done.end()) return it->second;
  const std::string out = shared_temp_dir("verify-base") + "/out";
  const CommandResult r = run_fp4kit("convert " + test_data("dsv4-tiny") + " " + out + " --quiet " + args);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  done[args] = out;
  return out;
}
inline std::string cast_args() { return "--numerics cast --calib " + calib_file(); }
inline std::string modelopt_args() { return "--numerics modelopt --calib " + calib_file(); }

// A copy of the checkpoint files of `dir` (JSON files and shards; no other files).
inline std::string copy_checkpoint(const std::string& dir, const std::string& tag) {
  namespace fs = std::filesystem;
  const std::string out = fresh_temp_dir(tag);
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.ends_with(".json") && name[0] != '.') fs::copy_file(e.path(), fs::path(out) / name);
    else if (name.rfind("model-", 0) == 0) fs::copy_file(e.path(), fs::path(out) / name);
  }
  return out;
}

inline verify::VerifyReport verify_dir(const std::string& dir, bool with_source, unsigned threads = 2) {
  verify::VerifyOptions o;
  o.checkpoint = dir;
  if (with_source) o.source = test_data("dsv4-tiny");
  o.threads = threads;
  return verify::verify_checkpoint(o);
}

// The first finding of `check` whose message holds `text`; nullptr if none.
inline const verify::Finding* find_finding(const verify::VerifyReport& r, const std::string& check, const std::string& text) {
  for (const verify::Finding& f : r.findings)
    if (f.check == check && f.message.find(text) != std::string::npos) return &f;
  return nullptr;
}

// The finding of `check` from `engine`'s loader contract walk (its message starts "<engine>: ") whose
// message holds `text`; nullptr if none.
inline const verify::Finding* find_engine_finding(const verify::VerifyReport& r, const std::string& check, const std::string& engine,
                                                  const std::string& text) {
  for (const verify::Finding& f : r.findings)
    if (f.check == check && f.message.rfind(engine + ": ", 0) == 0 && f.message.find(text) != std::string::npos) return &f;
  return nullptr;
}

inline std::string describe(const verify::VerifyReport& r);

// `r` fails, and each of `engines` reports `check` with `text` in its message, as a failure.
inline void expect_caught_by_engines(const verify::VerifyReport& r, const std::string& check, const std::vector<std::string>& engines,
                                     const std::string& text) {
  EXPECT_FALSE(r.passed());
  for (const std::string& engine : engines) {
    const verify::Finding* found = find_engine_finding(r, check, engine, text);
    ASSERT_NE(found, nullptr) << engine << " " << check << " '" << text << "'\n" << describe(r);
    EXPECT_EQ(found->severity, verify::Severity::Fail);
  }
}

inline std::string describe(const verify::VerifyReport& r) {
  std::string s;
  for (const verify::Finding& f : r.findings)
    s += std::string(verify::severity_name(f.severity)) + " [" + f.check + "] " + f.message + "\n";
  return s;
}

// Overwrites the bytes of tensor `name` from `offset` in its shard.
inline void write_tensor_bytes(const std::string& dir, const std::string& name, uint64_t offset, const void* bytes, size_t n) {
  const std::string path = shard_holding(dir, name);
  uint64_t at = 0;
  {
    const io::SafetensorsFile f = io::SafetensorsFile::open(path);
    at = f.header().data_offset + f.at(name).begin + offset;
  }
  std::fstream out(path, std::ios::in | std::ios::out | std::ios::binary);
  out.seekp(static_cast<std::streamoff>(at));
  out.write(static_cast<const char*>(bytes), static_cast<std::streamsize>(n));
}
inline void set_f32(const std::string& dir, const std::string& name, float v) { write_tensor_bytes(dir, name, 0, &v, 4); }

inline float get_f32(const std::string& dir, const std::string& name) {
  const io::Checkpoint c = io::Checkpoint::open(dir);
  const auto [file, info] = c.find(name);
  float v = 0;
  file->read(*info, std::as_writable_bytes(std::span(&v, 1)));
  return v;
}

inline nlohmann::json load_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}
inline void save_json(const std::string& path, const nlohmann::json& j) { std::ofstream(path) << j.dump(2); }
inline void edit_json(const std::string& path, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j = load_json(path);
  edit(j);
  save_json(path, j);
}

// Drops tensor `name` from its shard, and from the index too unless `keep_in_index`.
inline void remove_tensor(const std::string& dir, const std::string& name, bool keep_in_index = false) {
  rewrite_shard(shard_holding(dir, name), [&](io::TensorInfo& t) { return t.name != name; });
  if (!keep_in_index) edit_json(dir + "/model.safetensors.index.json", [&](nlohmann::json& j) { j["weight_map"].erase(name); });
}

}  // namespace fp4kit::testing
