// Synthetic checkpoints: the layout, determinism, sharding, and hollow files at full V4 Pro scale.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "io/checkpoint_index.h"
#include "io/safetensors_file.h"
#include "io/tensor_info.h"
#include "models/deepseek_v4.h"
#include "synth/synth.h"
#include "synth/weight_generator.h"
#include "test_data.h"

namespace fp4kit::synth {
namespace {

namespace fs = std::filesystem;

std::vector<std::byte> file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto* p = reinterpret_cast<const std::byte*>(chars.data());
  return {p, p + chars.size()};
}

std::set<std::string> file_names(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

// Every tensor's bytes, by name, over all shards.
std::map<std::string, std::vector<std::byte>> tensor_bytes(const std::string& dir) {
  std::map<std::string, std::vector<std::byte>> out;
  const io::Checkpoint ckpt = io::Checkpoint::open(dir);
  for (const auto& shard : ckpt.shard_files())
    for (const auto& t : ckpt.shard(shard).tensors()) out[t.name] = ckpt.shard(shard).read_all(t);
  return out;
}

uint64_t allocated_bytes(const std::string& dir) {
  uint64_t total = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    struct stat st {};
    EXPECT_EQ(::stat(e.path().c_str(), &st), 0) << e.path();
    total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

uint64_t layout_bytes(const DeepseekV4Config& config) {
  uint64_t total = 0;
  for (const auto& s : deepseek_v4_tensors(config)) total += io::storage_size(s.dtype, s.shape).nbytes;
  return total;
}

SynthReport synth(const DeepseekV4Config& config, const std::string& dst, uint64_t seed = 0, unsigned threads = 2,
                  uint64_t shard_bytes = 5'000'000'000, bool hollow = false) {
  SynthOptions o;
  o.seed = seed;
  o.threads = threads;
  o.shard_bytes = shard_bytes;
  o.hollow = hollow;
  return synthesize_checkpoint(config, dst, o);
}

TEST(SynthCheckpoint, TinyHoldsEveryTensorOfTheLayoutAndNothingElse) {
  const DeepseekV4Config config = synth_config("tiny");
  const std::string dir = testing::fresh_temp_dir("synth-tiny") + "/model";
  const SynthReport report = synth(config, dir, 1, 2, 1'000'000);
  const auto specs = deepseek_v4_tensors(config);
  EXPECT_EQ(report.tensors, specs.size());
  EXPECT_EQ(report.data_bytes, layout_bytes(config));
  EXPECT_GE(report.shards, 4u);  // ~4.9 MB cut at 1 MB

  const io::Checkpoint ckpt = io::Checkpoint::open(dir);
  ASSERT_TRUE(ckpt.has_index());
  const io::CheckpointIndex& index = ckpt.index();
  EXPECT_EQ(index.metadata.at("total_size").get<uint64_t>(), report.data_bytes);
  std::set<std::string> expected;
  for (const auto& s : specs) expected.insert(s.name);
  std::set<std::string> indexed;
  for (const auto& [name, file] : index.weight_map) indexed.insert(name);
  EXPECT_EQ(indexed, expected);

  size_t found = 0;
  for (const auto& s : specs) {
    const auto [file, info] = ckpt.find(s.name);
    ASSERT_NE(info, nullptr) << s.name;
    EXPECT_EQ(info->dtype, s.dtype) << s.name;
    EXPECT_EQ(info->shape, s.shape) << s.name;
    ++found;
  }
  EXPECT_EQ(found, 427u);  // the dsv4-tiny fixture's count
  size_t in_shards = 0;
  for (const auto& shard : ckpt.shard_files()) {
    const auto& meta = ckpt.shard(shard).header().metadata;
    EXPECT_EQ(meta.at("format"), "pt") << shard;
    EXPECT_FALSE(meta.contains(kHollowMetadataKey)) << shard;
    in_shards += ckpt.shard(shard).tensors().size();
  }
  EXPECT_EQ(in_shards, specs.size());
  EXPECT_EQ(file_names(dir).size(), report.shards + 2);  // + config.json + index; no temporary files left

  std::ifstream in(fs::path(dir) / "config.json");
  const DeepseekV4Config back = DeepseekV4Config::from_json(nlohmann::json::parse(in), "config.json");
  EXPECT_EQ(back.to_json(), config.to_json());
  EXPECT_EQ(back.num_hidden_layers, 4);
  EXPECT_EQ(back.expert_dtype, "fp4");

  // Every tensor holds exactly what the generator makes of it.
  const WeightGenerator generator(config, 1, 1);
  const auto bytes = tensor_bytes(dir);
  for (const auto& s : specs) {
    if (s.storage == Storage::Plain) {
      std::vector<std::byte> expected_bytes(bytes.at(s.name).size());
      generator.plain_rows(s, 0, s.shape.empty() ? 1 : s.shape[0], expected_bytes);
      EXPECT_EQ(bytes.at(s.name), expected_bytes) << s.name;
    } else if (!s.is_scale) {
      const std::string module = s.name.substr(0, s.name.size() - 7);
      const auto [sf, scale_info] = ckpt.find(module + ".scale");
      ASSERT_NE(scale_info, nullptr) << module;
      const TensorSpec scale{scale_info->name, scale_info->dtype, scale_info->shape, s.role, s.storage, true};
      const QuantizedWeight q = generator.quantized(s, scale);
      EXPECT_EQ(bytes.at(s.name), q.weight) << s.name;
      EXPECT_EQ(bytes.at(module + ".scale"), q.scale) << module;
    }
  }
}

TEST(SynthCheckpoint, SameSeedSameBytesWhateverTheThreadCount) {
  const DeepseekV4Config config = synth_config("tiny");
  const std::string root = testing::fresh_temp_dir("synth-det");
  synth(config, root + "/a", 7, 1);
  synth(config, root + "/b", 7, 3);
  synth(config, root + "/c", 8, 2);
  const auto names = file_names(root + "/a");
  ASSERT_EQ(names, file_names(root + "/b"));
  ASSERT_EQ(names, file_names(root + "/c"));
  size_t shards = 0;
  for (const auto& name : names) {
    const auto a = file_bytes(fs::path(root) / "a" / name);
    EXPECT_EQ(a, file_bytes(fs::path(root) / "b" / name)) << name;
    if (name.ends_with(".safetensors")) {
      ++shards;
      EXPECT_NE(a, file_bytes(fs::path(root) / "c" / name)) << name << " does not depend on the seed";
    }
  }
  EXPECT_EQ(shards, 1u);

  // A different seed changes every tensor (not just some of them), but for scales of a block or
  // two, whose power of two may well come out the same.
  const auto a = tensor_bytes(root + "/a"), c = tensor_bytes(root + "/c");
  for (const auto& [name, bytes] : a) {
    if (bytes.size() > 8) {
      EXPECT_NE(bytes, c.at(name)) << name;
    }
  }
}

TEST(SynthCheckpoint, ShardingDoesNotChangeAnyTensor) {
  // Shards of 64 kB split weights from their scales and put them in different files.
  const DeepseekV4Config config = synth_config("tiny");
  const std::string root = testing::fresh_temp_dir("synth-shards");
  const SynthReport one = synth(config, root + "/one", 3, 2);
  const SynthReport many = synth(config, root + "/many", 3, 2, 64'000);
  EXPECT_EQ(one.shards, 1u);
  EXPECT_GT(many.shards, 50u);
  EXPECT_EQ(tensor_bytes(root + "/one"), tensor_bytes(root + "/many"));

  const io::CheckpointIndex index = io::CheckpointIndex::load(root + "/many/" + std::string(io::kIndexFileName));
  size_t split_pairs = 0;
  for (const auto& [name, file] : index.weight_map)
    if (name.ends_with(".scale") && index.weight_map.at(name.substr(0, name.size() - 6) + ".weight") != file) ++split_pairs;
  EXPECT_GT(split_pairs, 0u) << "no weight/scale pair was split across shards; the test does not test that";
}

TEST(SynthCheckpoint, Fp8ExpertsTakeTheRepackLayout) {
  const DeepseekV4Config config = synth_config("tiny", "fp8");
  EXPECT_EQ(config.expert_dtype, "fp8");
  const std::string dir = testing::fresh_temp_dir("synth-fp8") + "/model";
  synth(config, dir);
  const io::Checkpoint ckpt = io::Checkpoint::open(dir);
  const auto [file, w] = ckpt.find("layers.0.ffn.experts.3.w2.weight");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->dtype, DType::F8_E4M3);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{128, 128}));
  const auto [file2, s] = ckpt.find("layers.0.ffn.experts.3.w2.scale");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->dtype, DType::F8_E8M0);
  EXPECT_EQ(s->shape, (std::vector<int64_t>{1, 1}));
  std::ifstream in(fs::path(dir) / "config.json");
  EXPECT_EQ(nlohmann::json::parse(in).at("expert_dtype"), "fp8");
}

TEST(SynthCheckpoint, RefusesANonEmptyDestinationBeforeWritingAnything) {
  const std::string dir = testing::fresh_temp_dir("synth-busy");
  std::ofstream(dir + "/keep.txt") << "mine";
  try {
    synth(synth_config("tiny"), dir);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(dir), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not empty"), std::string::npos) << e.what();
  }
  EXPECT_EQ(file_names(dir), std::set<std::string>{"keep.txt"});
  EXPECT_THROW(synth(synth_config("tiny"), dir + "/keep.txt"), InputError);  // a file, not a directory
}

TEST(SynthCheckpoint, PresetsAndTheirErrors) {
  EXPECT_EQ(synth_config("v4-pro:layers=1,experts=384").num_hidden_layers, 1);
  EXPECT_EQ(synth_config("v4-flash").hidden_size, 4096);
  try {
    synth_config("v5-ultra");
    FAIL() << "no error";
  } catch (const InputError& e) {
    const std::string m = e.what();
    for (const char* name : {"v5-ultra", "v4-flash", "v4-pro", "tiny"}) EXPECT_NE(m.find(name), std::string::npos) << m;
  }
  EXPECT_THROW(synth_config("v4-pro:layers=x"), InputError);
  EXPECT_THROW(synth_config("v4-pro:colour=3"), InputError);
  EXPECT_THROW(synth_config("tiny", "fp16"), InputError);
}

// The hollow layout of `preset`: headers over holes, every shard opens, logical size exact.
SynthReport check_hollow(const std::string& preset, double max_seconds) {
  const DeepseekV4Config config = synth_config(preset);
  const std::string dir = testing::fresh_temp_dir("synth-hollow") + "/model";
  const auto start = std::chrono::steady_clock::now();
  const SynthReport report = synth(config, dir, 0, 2, 5'000'000'000, /*hollow=*/true);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, max_seconds);

  const uint64_t expected = layout_bytes(config);
  EXPECT_EQ(report.data_bytes, expected);
  const io::CheckpointIndex index = io::CheckpointIndex::load(dir + "/" + std::string(io::kIndexFileName));
  EXPECT_EQ(index.metadata.at("total_size").get<uint64_t>(), expected);
  EXPECT_EQ(index.weight_map.size(), deepseek_v4_tensors(config).size());

  const uint64_t on_disk = allocated_bytes(dir);
  EXPECT_LT(on_disk, uint64_t{64} << 20) << "hollow files take real disk space";
  EXPECT_EQ(on_disk, report.allocated_bytes);
  uint64_t tensors = 0, data = 0, logical = 0;
  for (const auto& file : index.shard_files()) {
    const io::SafetensorsFile shard = io::SafetensorsFile::open(dir + "/" + file);
    EXPECT_EQ(shard.header().metadata.at(kHollowMetadataKey), "true") << file;
    tensors += shard.tensors().size();
    for (const auto& t : shard.tensors()) data += t.nbytes();
    logical += shard.file_size();
    EXPECT_EQ(shard.file_size(), shard.header().data_offset + shard.tensors().back().end) << file;
  }
  EXPECT_EQ(tensors, index.weight_map.size());
  EXPECT_EQ(data, expected);
  EXPECT_GT(logical, expected);  // the headers come on top
  return report;
}

TEST(SynthCheckpoint, HollowV4ProFourLayers) { check_hollow("v4-pro:layers=4", 20); }

TEST(SynthCheckpoint, HollowV4ProFullSize) {
#if defined(FP4KIT_SANITIZED_BUILD)
  // 145116 tensors' headers cost 14 s under ASan; the sanitized build writes the full-size Flash
  // checkpoint and a four-layer Pro one through the same code.
  GTEST_SKIP() << "the full-size V4-Pro layout runs in the Release build only (the sanitized build keeps CI within its time)";
#endif
  // 61 layers + MTP: 864.7 GB of tensor data in a few tens of MB of disk.
  const SynthReport r = check_hollow("v4-pro", 60);
  EXPECT_EQ(r.tensors, 145116u);
  EXPECT_EQ(r.data_bytes, 864'704'792'696u);
}

TEST(SynthCheckpoint, HollowV4FlashHasTheReleasedSize) {
  // The official DeepSeek-V4-Flash index: 69,187 tensors, total_size 159,609,485,896.
  const SynthReport r = check_hollow("v4-flash", 30);
  EXPECT_EQ(r.tensors, 69187u);
  EXPECT_EQ(r.data_bytes, 159'609'485'896u);
}

}  // namespace
}  // namespace fp4kit::synth
