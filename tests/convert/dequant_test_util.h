#pragma once
// Helpers for the dequant tests: small checkpoints written by hand, whole directories read back
// for byte-for-byte comparison, and the fp4kit binary started in the background (to kill it).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "io/checkpoint_index.h"
#include "io/safetensors_file.h"
#include "io/safetensors_writer.h"
#include "io/shard_plan.h"
#include "test_data.h"

extern char** environ;

namespace fp4kit::testing {

struct FakeTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // empty: filled by random_bytes from the name
};

// Deterministic bytes (xorshift), so that reruns compare equal.
inline std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
  std::vector<uint8_t> out(n);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = static_cast<uint8_t>(x >> 24);
  }
  return out;
}

// E8M0 scale bytes in [lo, hi]: plausible powers of two (no NaN byte 0xFF).
inline std::vector<uint8_t> e8m0_bytes(size_t n, uint64_t seed, uint8_t lo = 112, uint8_t hi = 130) {
  std::vector<uint8_t> out = random_bytes(n, seed);
  for (auto& b : out) b = static_cast<uint8_t>(lo + b % (hi - lo + 1));
  return out;
}

inline uint64_t name_seed(const std::string& name) {
  uint64_t h = 1469598103934665603ull;
  for (char c : name) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ull;
  return h;
}

// model-0000i-of-0000n.safetensors per entry of `shards` and model.safetensors.index.json (unless
// `with_index` is false), plus config.json when given.
inline void write_checkpoint(const std::string& dir, const std::vector<std::vector<FakeTensor>>& shards,
                             const std::optional<std::string>& config = std::nullopt, bool with_index = true) {
  std::filesystem::create_directories(dir);
  io::CheckpointIndex index;
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string file = io::shard_file_name(s, shards.size());
    io::SafetensorsWriter w(dir + "/" + file);
    w.set_metadata({{"format", "pt"}});
    std::map<std::string, const FakeTensor*> by_name;
    for (const FakeTensor& t : shards[s]) {
      w.declare(t.name, t.dtype, t.shape);
      by_name[t.name] = &t;
      index.weight_map[t.name] = file;
    }
    w.begin();
    for (const io::TensorInfo& info : w.layout()) {
      const FakeTensor& t = *by_name.at(info.name);
      const std::vector<uint8_t> bytes = t.bytes.empty() ? random_bytes(info.nbytes(), name_seed(t.name)) : t.bytes;
      ASSERT_EQ(bytes.size(), info.nbytes()) << t.name;
      w.write(info.name, std::as_bytes(std::span(bytes)));
    }
    w.commit();
  }
  if (with_index) index.save(dir + "/" + std::string(io::kIndexFileName));
  if (config) std::ofstream(dir + "/config.json") << *config;
}

inline std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Every regular file under `dir` (hidden ones too), by relative path.
inline std::map<std::string, std::vector<uint8_t>> read_tree(const std::string& dir) {
  std::map<std::string, std::vector<uint8_t>> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out[e.path().lexically_relative(dir).string()] = file_bytes(e.path().string());
  return out;
}

inline std::vector<std::string> file_names(const std::map<std::string, std::vector<uint8_t>>& tree) {
  std::vector<std::string> names;
  for (const auto& [name, bytes] : tree) names.push_back(name);
  return names;
}

// A writable copy of tests/data/dsv4-tiny (the originals are read-only).
inline std::string copy_tiny(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string to = dir + "/src";
  fs::create_directories(to);
  for (const auto& e : fs::directory_iterator(test_data("dsv4-tiny"))) {
    const fs::path target = fs::path(to) / e.path().filename();
    fs::copy_file(e.path(), target);
    fs::permissions(target, fs::perms::owner_read | fs::perms::owner_write);
  }
  return to;
}

// The names of files a finished output has under their final names (what a failed run must not leave).
inline std::vector<std::string> final_outputs(const std::string& dir) {
  std::vector<std::string> out;
  if (!std::filesystem::exists(dir)) return out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.ends_with(".safetensors") || name == io::kIndexFileName || name == "config.json") out.push_back(name);
  }
  return out;
}

// Starts the binary with `args`, output to /dev/null; returns its pid (the caller waits for it).
inline pid_t spawn_fp4kit(const std::vector<std::string>& args) {
  std::vector<std::string> all = {fp4kit_binary()};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

}  // namespace fp4kit::testing
