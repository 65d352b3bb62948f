// `dequant`: the official goldens of the tiny V4 checkpoint, V3 and repack layouts against the
// scalar reference and DeepSeek's own output, sharding, thread independence, kill and resume, and
// every kind of bad input (through the binary: exit code 2, the file and tensor named, no output).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "convert/dequant.h"
#include "convert/dequant_test_util.h"
#include "formats/bf16.h"
#include "formats/e8m0.h"
#include "formats/fp8_block.h"
#include "formats/mxfp4.h"
#include "io/checkpoint_index.h"
#include "oracle_file.h"
#include "run_command.h"

namespace fp4kit {
namespace {

namespace fs = std::filesystem;
using testing::BytesEqual;
using testing::FakeTensor;
using testing::fresh_temp_dir;
using testing::read_tree;
using testing::run_fp4kit;
using testing::test_data;

std::vector<uint8_t> tensor_bytes(const io::Checkpoint& ckpt, const std::string& name) {
  const auto [file, info] = ckpt.find(name);
  if (!file) return {};
  std::vector<uint8_t> out(info->nbytes());
  file->read(*info, std::as_writable_bytes(std::span(out)));
  return out;
}

// Every tensor of a checkpoint directory, by name: dtype, shape and bytes.
struct TensorContents {
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
  bool operator==(const TensorContents&) const = default;
};
std::map<std::string, TensorContents> all_tensors(const std::string& dir) {
  const io::Checkpoint ckpt = io::Checkpoint::open(dir);
  std::map<std::string, TensorContents> out;
  for (const auto& file : ckpt.shard_files())
    for (const auto& t : ckpt.shard(file).tensors()) {
      std::vector<uint8_t> bytes(t.nbytes());
      ckpt.shard(file).read(t, std::as_writable_bytes(std::span(bytes)));
      EXPECT_TRUE(out.emplace(t.name, TensorContents{t.dtype, t.shape, std::move(bytes)}).second) << t.name;
    }
  return out;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

DequantOptions options(unsigned threads, uint64_t shard_bytes = 5'000'000'000, uint64_t chunk_bytes = 64ull << 20) {
  DequantOptions o;
  o.threads = threads;
  o.shard_bytes = shard_bytes;
  o.chunk_bytes = chunk_bytes;
  return o;
}

bool is_shard_name(const std::string& name) { return name.starts_with("model-") && name.ends_with(".safetensors"); }

size_t count_shards(const std::map<std::string, std::vector<uint8_t>>& tree) {
  size_t n = 0;
  for (const auto& [name, bytes] : tree) n += is_shard_name(name);
  return n;
}

// ---- the tiny V4 checkpoint ----------------------------------------------------------------

class DequantTiny : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    out_ = fresh_temp_dir("dequant-tiny") + "/out";
    report_ = dequant_checkpoint(test_data("dsv4-tiny"), out_, options(2));
  }
  static std::string out_;
  static DequantReport report_;
};
std::string DequantTiny::out_;
DequantReport DequantTiny::report_;

TEST_F(DequantTiny, EqualsTheOfficialGoldensByteForByte) {
  const testing::OracleFile golden("dsv4-tiny/dequant_bf16.safetensors");
  const io::Checkpoint out = io::Checkpoint::open(out_);
  size_t compared = 0, fp8 = 0;
  for (const io::TensorInfo& g : golden.file().tensors()) {
    const auto [file, info] = out.find(g.name);
    ASSERT_NE(info, nullptr) << g.name;
    EXPECT_EQ(info->dtype, DType::BF16) << g.name;
    EXPECT_EQ(info->shape, g.shape) << g.name;
    EXPECT_TRUE(BytesEqual(tensor_bytes(out, g.name), golden.bytes(g.name))) << g.name;
    ++compared;
    fp8 += g.name.find(".experts.") == std::string::npos;
  }
  EXPECT_EQ(compared, 74u);  // 44 FP8 weights + experts 0 and 7 of 5 MoE blocks x 3
  EXPECT_EQ(fp8, 44u);
  EXPECT_TRUE(golden.has("layers.0.attn.wkv.weight"));  // the ragged [192, 128] with scale [2, 1]
}

// Every quantized weight (all 120 experts, not only the goldens' 30) against the scalar reference
// kernels run on the whole source tensor; every other tensor bit for bit; no scale left.
TEST_F(DequantTiny, EveryTensorIsTheReferenceDequantOrAnExactCopy) {
  const io::Checkpoint src = io::Checkpoint::open(test_data("dsv4-tiny"));
  const io::Checkpoint out = io::Checkpoint::open(out_);
  size_t fp8 = 0, mxfp4 = 0, copied = 0, scales = 0;
  for (const auto& file : src.shard_files()) {
    for (const io::TensorInfo& t : src.shard(file).tensors()) {
      const auto [out_file, got] = out.find(t.name);
      if (t.name.ends_with(".scale")) {
        EXPECT_EQ(got, nullptr) << t.name << " was not dropped";
        ++scales;
        continue;
      }
      ASSERT_NE(got, nullptr) << t.name;
      const std::vector<uint8_t> weight = tensor_bytes(src, t.name);
      const std::string scale_name = t.name.substr(0, t.name.size() - 7) + ".scale";
      const bool quantized = t.name.ends_with(".weight") && src.find(scale_name).second != nullptr;
      if (!quantized) {
        EXPECT_EQ(got->dtype, t.dtype) << t.name;
        EXPECT_EQ(got->shape, t.shape) << t.name;
        EXPECT_TRUE(BytesEqual(tensor_bytes(out, t.name), weight)) << t.name;
        ++copied;
        continue;
      }
      const std::vector<uint8_t> scale = tensor_bytes(src, scale_name);
      const size_t rows = static_cast<size_t>(t.shape[0]);
      std::vector<uint16_t> want;
      if (t.dtype == DType::F8_E4M3) {
        const size_t cols = static_cast<size_t>(t.shape[1]);
        want.resize(rows * cols);
        fp8_block_ref::dequantize_bf16(weight.data(), scale.data(), {rows, cols, Fp8ScaleKind::E8M0}, 0, rows, want.data());
        EXPECT_EQ(got->shape, t.shape);
        ++fp8;
      } else {
        ASSERT_EQ(t.dtype, DType::I8) << t.name;
        const size_t cols = 2 * static_cast<size_t>(t.shape[1]);
        want.resize(rows * cols);
        mxfp4_ref::dequantize_bf16(weight.data(), scale.data(), rows * cols, want.data());
        EXPECT_EQ(got->shape, (std::vector<int64_t>{t.shape[0], 2 * t.shape[1]}));
        ++mxfp4;
      }
      EXPECT_EQ(got->dtype, DType::BF16) << t.name;
      EXPECT_TRUE(BytesEqual(tensor_bytes(out, t.name), testing::as_bytes_vec(want))) << t.name;
    }
  }
  EXPECT_EQ(fp8, 44u);
  EXPECT_EQ(mxfp4, 120u);
  EXPECT_EQ(scales, 164u);
  EXPECT_EQ(copied, 427u - 44 - 120 - 164);
  EXPECT_EQ(report_.fp8_block.tensors, 44u);
  EXPECT_EQ(report_.mxfp4.tensors, 120u);
  EXPECT_EQ(report_.copy.tensors, copied);
  EXPECT_EQ(report_.scales_dropped, 164u);
  EXPECT_EQ(report_.fp8_block.tensors_written, 44u);
  EXPECT_EQ(report_.shards, 1u);
  EXPECT_EQ(report_.shards_written, 1u);
  EXPECT_EQ(report_.input_bytes, 4898438u);
}

TEST_F(DequantTiny, IndexListsExactlyTheOutputTensors) {
  const io::CheckpointIndex index = io::CheckpointIndex::load(out_ + "/model.safetensors.index.json");
  std::map<std::string, std::string> actual;
  uint64_t total = 0;
  for (const auto& e : fs::directory_iterator(out_)) {
    const std::string name = e.path().filename().string();
    if (!is_shard_name(name)) continue;
    const io::SafetensorsFile shard = io::SafetensorsFile::open(e.path().string());
    for (const auto& t : shard.tensors()) {
      EXPECT_TRUE(actual.emplace(t.name, name).second) << t.name;
      total += t.nbytes();
    }
  }
  EXPECT_EQ(index.weight_map, actual);
  EXPECT_EQ(actual.size(), 427u - 164u);
  EXPECT_EQ(index.metadata.at("total_size").get<uint64_t>(), total);
}

TEST_F(DequantTiny, ConfigLosesOnlyTheQuantizationFields) {
  nlohmann::json want = read_json(test_data("dsv4-tiny/config.json"));
  ASSERT_TRUE(want.contains("quantization_config"));
  ASSERT_TRUE(want.contains("expert_dtype"));
  want.erase("quantization_config");
  want.erase("expert_dtype");
  const nlohmann::json got = read_json(out_ + "/config.json");
  EXPECT_EQ(got, want);
  EXPECT_EQ(got.at("torch_dtype"), "bfloat16");
}

TEST_F(DequantTiny, OtherFilesAreCopiedAndSourceShardsAreNot) {
  const auto tree = read_tree(out_);
  // Every file of the source that is not a shard, its index or config.json travels unchanged.
  std::vector<std::string> want = {std::string(kDequantPlanFileName), "config.json", "model-00001-of-00001.safetensors",
                                   "model.safetensors.index.json"};
  size_t others = 0;
  for (const auto& e : std::filesystem::directory_iterator(test_data("dsv4-tiny"))) {
    const std::string name = e.path().filename().string();
    if (name.starts_with("model") || name == "config.json") continue;
    ++others;
    want.push_back(name);
    ASSERT_TRUE(tree.count(name)) << name;
    EXPECT_EQ(tree.at(name), testing::file_bytes(e.path().string())) << name;
  }
  EXPECT_GE(others, 2u);  // README.md, dequant_bf16.safetensors at least
  std::vector<std::string> got;
  for (const auto& [name, bytes] : tree) got.push_back(name);
  std::sort(want.begin(), want.end());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, want);
  EXPECT_EQ(report_.files_copied, others);
}

TEST_F(DequantTiny, PlanFileIsKeptMarkedComplete) {
  const nlohmann::json plan = read_json(out_ + "/" + std::string(kDequantPlanFileName));
  EXPECT_EQ(plan.at("format"), kDequantManifestFormat);
  EXPECT_EQ(plan.at("complete"), true);
  EXPECT_EQ(plan.at("source").at("files").size(), 3u);
  EXPECT_EQ(plan.at("output").at("tensors"), 263);
}

TEST_F(DequantTiny, ThreadsAndChunkSizeDoNotChangeTheOutput) {
  const auto want = read_tree(out_);
  const std::string dir = fresh_temp_dir("dequant-threads");
  dequant_checkpoint(test_data("dsv4-tiny"), dir + "/t1", options(1));
  // 4 kB steps: FP8 weights go 128 rows at a time, experts a row or two at a time.
  dequant_checkpoint(test_data("dsv4-tiny"), dir + "/t3", options(3, 5'000'000'000, 4096));
  EXPECT_TRUE(read_tree(dir + "/t1") == want);
  EXPECT_TRUE(read_tree(dir + "/t3") == want);
}

// The suite's output went around the page cache where the file system allows it; through it, the
// same files.
TEST_F(DequantTiny, DirectIoAndThePageCacheGiveTheSameOutput) {
  const std::string dir = fresh_temp_dir("dequant-cached");
  DequantOptions cached = options(2, 5'000'000'000, 4096);
  cached.direct_io = false;
  dequant_checkpoint(test_data("dsv4-tiny"), dir + "/out", cached);
  EXPECT_TRUE(read_tree(dir + "/out") == read_tree(out_));
}

TEST_F(DequantTiny, SmallShardsGiveManyShardsWithTheSameTensors) {
  const std::string out = fresh_temp_dir("dequant-shards") + "/out";
  const DequantReport r = dequant_checkpoint(test_data("dsv4-tiny"), out, options(2, 1'000'000));
  const auto tree = read_tree(out);
  EXPECT_GE(count_shards(tree), 9u);
  EXPECT_EQ(count_shards(tree), r.shards);
  EXPECT_TRUE(tree.count("model-00001-of-" + std::string(5 - std::to_string(r.shards).size(), '0') +
                         std::to_string(r.shards) + ".safetensors"));
  for (const auto& [name, bytes] : tree) {
    if (!is_shard_name(name)) continue;
    const io::SafetensorsFile shard = io::SafetensorsFile::open(out + "/" + name);
    uint64_t data = 0;
    for (const auto& t : shard.tensors()) data += t.nbytes();
    if (shard.tensors().size() > 1) {
      EXPECT_LE(data, 1'000'000u) << name;  // only a shard of one tensor may exceed the limit
    }
  }
  EXPECT_TRUE(all_tensors(out) == all_tensors(out_));
  const io::CheckpointIndex index = io::CheckpointIndex::load(out + "/model.safetensors.index.json");
  EXPECT_EQ(index.shard_files().size(), r.shards);
  EXPECT_EQ(index.weight_map.size(), 263u);
}

TEST_F(DequantTiny, CliPrintsProgressSummaryAndJson) {
  const std::string dir = fresh_temp_dir("dequant-cli");
  const auto r = run_fp4kit("dequant " + test_data("dsv4-tiny") + " " + dir + "/out --threads 2 --progress --json " +
                            dir + "/report.json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("GB/s"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ETA"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("164 scales dropped"), std::string::npos) << r.output;
  const nlohmann::json j = read_json(dir + "/report.json");
  EXPECT_EQ(j.at("kinds").at("fp8_block").at("tensors"), 44);
  EXPECT_EQ(j.at("kinds").at("mxfp4").at("tensors"), 120);
  EXPECT_EQ(j.at("kinds").at("copy").at("tensors"), 99);
  EXPECT_EQ(j.at("kinds").at("mxfp4").at("output_bytes"), 120 * 128 * 128 * 2);
  EXPECT_EQ(j.at("scales_dropped"), 164);
  EXPECT_GT(j.at("output_gb_per_s").get<double>(), 0.0);
  EXPECT_TRUE(read_tree(dir + "/out") == read_tree(out_));
}

// ---- resume ----------------------------------------------------------------------------------

struct CrashHook {
  explicit CrashHook(int shards) { ::setenv(kDequantCrashAfterShardsEnv, std::to_string(shards).c_str(), 1); }
  ~CrashHook() { ::unsetenv(kDequantCrashAfterShardsEnv); }
};

ino_t inode_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

class DequantKillResume : public ::testing::TestWithParam<int> {};

TEST_P(DequantKillResume, AfterAKillFinishesIdenticallyWithoutRedoingShards) {
  const int crash_after = GetParam();
  const std::string dir = fresh_temp_dir("dequant-resume");
  const std::string src = test_data("dsv4-tiny"), out = dir + "/out", ref = dir + "/ref";
  ASSERT_EQ(run_fp4kit("dequant " + src + " " + ref + " --shard-size 1MB --quiet").exit_code, 0);
  const auto want = read_tree(ref);
  ASSERT_GT(count_shards(want), static_cast<size_t>(crash_after));

  {
    CrashHook hook(crash_after);
    const auto r = run_fp4kit("dequant " + src + " " + out + " --shard-size 1MB --threads 3 --quiet");
    ASSERT_EQ(r.exit_code, 137) << r.output;
  }
  auto killed = read_tree(out);
  EXPECT_EQ(count_shards(killed), static_cast<size_t>(crash_after));
  EXPECT_FALSE(killed.count("model.safetensors.index.json"));
  EXPECT_FALSE(killed.count("config.json"));
  EXPECT_EQ(nlohmann::json::parse(killed.at(std::string(kDequantPlanFileName))).at("complete"), false);
  std::map<std::string, ino_t> inodes;
  for (const auto& [name, bytes] : killed)
    if (is_shard_name(name)) {
      EXPECT_EQ(bytes, want.at(name)) << name;  // what was published is final
      inodes[name] = inode_of(out + "/" + name);
    }
  // What a kill in the middle of the next shard leaves behind.
  const std::string stale = out + "/.model-00009-of-00010.safetensors.tmp-4242-0123456789abcdef";
  std::ofstream(stale) << "half a shard";

  const auto again = run_fp4kit("dequant " + src + " " + out + " --shard-size 1MB");
  EXPECT_EQ(again.exit_code, 2) << again.output;
  EXPECT_NE(again.output.find(out), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("--resume"), std::string::npos) << again.output;

  const auto resumed = run_fp4kit("dequant " + src + " " + out + " --shard-size 1MB --threads 2 --resume --json " +
                                  dir + "/report.json");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(read_tree(out) == want);
  for (const auto& [name, inode] : inodes) EXPECT_EQ(inode_of(out + "/" + name), inode) << name << " was rewritten";
  const nlohmann::json report = read_json(dir + "/report.json");
  EXPECT_EQ(report.at("shards_skipped"), crash_after);
  EXPECT_EQ(report.at("shards_written").get<size_t>(), count_shards(want) - static_cast<size_t>(crash_after));
}

INSTANTIATE_TEST_SUITE_P(CrashPoints, DequantKillResume, ::testing::Values(1, 4));

TEST(DequantResume, FinishedOutputNeedsResumeAndThenChangesNothing) {
  const std::string dir = fresh_temp_dir("dequant-finished");
  const std::string src = test_data("dsv4-tiny"), out = dir + "/out";
  ASSERT_EQ(run_fp4kit("dequant " + src + " " + out + " --shard-size 2MB --quiet").exit_code, 0);
  const auto want = read_tree(out);

  const auto r = run_fp4kit("dequant " + src + " " + out + " --shard-size 2MB");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("finished"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--resume"), std::string::npos) << r.output;

  const auto resumed = run_fp4kit("dequant " + src + " " + out + " --shard-size 2MB --resume --json " + dir + "/r.json");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(read_json(dir + "/r.json").at("shards_written"), 0);
  EXPECT_TRUE(read_tree(out) == want);

  // A shard damaged after the fact is written again.
  ASSERT_GE(count_shards(want), 2u);
  const std::string shard = out + "/" + io::shard_file_name(1, count_shards(want));
  ASSERT_TRUE(fs::exists(shard));
  fs::resize_file(shard, fs::file_size(shard) - 1);
  ASSERT_EQ(run_fp4kit("dequant " + src + " " + out + " --shard-size 2MB --resume --quiet").exit_code, 0);
  EXPECT_TRUE(read_tree(out) == want);
  // So is one with bytes past its data section (which a reader would not notice).
  std::ofstream(shard, std::ios::app) << "trailing bytes";
  ASSERT_EQ(run_fp4kit("dequant " + src + " " + out + " --shard-size 2MB --resume --quiet").exit_code, 0);
  EXPECT_TRUE(read_tree(out) == want);
}

TEST(DequantResume, RefusesOtherOptionsOrAnotherSource) {
  const std::string dir = fresh_temp_dir("dequant-mismatch");
  const std::string out = dir + "/out";
  ASSERT_EQ(run_fp4kit("dequant " + test_data("dsv4-tiny") + " " + out + " --shard-size 2MB --quiet").exit_code, 0);
  const auto want = read_tree(out);

  const auto r = run_fp4kit("dequant " + test_data("dsv4-tiny") + " " + out + " --shard-size 3MB --resume");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--shard-size 2000000, not 3000000"), std::string::npos) << r.output;

  const std::string other = dir + "/other";
  testing::write_checkpoint(other, {{{"a", DType::BF16, {4, 4}, {}}}});
  const auto o = run_fp4kit("dequant " + other + " " + out + " --shard-size 2MB --resume");
  EXPECT_EQ(o.exit_code, 2) << o.output;
  EXPECT_NE(o.output.find("another source"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find(out), std::string::npos) << o.output;
  EXPECT_TRUE(read_tree(out) == want);
}

TEST(DequantResume, RefusesADestinationHoldingSomethingElse) {
  const std::string dir = fresh_temp_dir("dequant-foreign");
  const std::string out = dir + "/out";
  testing::write_checkpoint(out, {{{"mine", DType::F32, {8}, {}}}}, std::string("{\"model_type\": \"other\"}"));
  const auto before = read_tree(out);
  for (const char* resume : {"", " --resume"}) {
    const auto r = run_fp4kit("dequant " + test_data("dsv4-tiny") + " " + out + resume);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find(out), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("refusing to overwrite"), std::string::npos) << r.output;
    EXPECT_TRUE(read_tree(out) == before);
  }
  const auto same = run_fp4kit("dequant " + test_data("dsv4-tiny") + " " + test_data("dsv4-tiny"));
  EXPECT_EQ(same.exit_code, 2) << same.output;
}

// A V4-style FP8 checkpoint big enough that a real SIGKILL lands in the middle of the run.
std::vector<std::vector<FakeTensor>> bigger_fp8_checkpoint() {
  std::vector<std::vector<FakeTensor>> shards(3);
  for (int i = 0; i < 24; ++i) {
    const std::string m = "layers." + std::to_string(i) + ".attn.wo_a";
    auto& shard = shards[static_cast<size_t>(i) / 8];
    shard.push_back({m + ".weight", DType::F8_E4M3, {1024, 2048}, {}});
    shard.push_back({m + ".scale", DType::F8_E8M0, {8, 16}, testing::e8m0_bytes(128, static_cast<uint64_t>(i))});
    shard.push_back({m + ".norm", DType::BF16, {2048}, {}});
  }
  return shards;
}

TEST(DequantResume, AfterARealSigkill) {
  const std::string dir = fresh_temp_dir("dequant-sigkill");
  const std::string src = dir + "/src", out = dir + "/out", ref = dir + "/ref";
  testing::write_checkpoint(src, bigger_fp8_checkpoint(), std::string("{\"torch_dtype\": \"bfloat16\"}"));
  dequant_checkpoint(src, ref, options(2, 8'000'000));
  const auto want = read_tree(ref);
  const size_t shards = count_shards(want);
  ASSERT_GE(shards, 10u);

  const pid_t pid = testing::spawn_fp4kit({"dequant", src, out, "--shard-size", "8MB", "--threads", "1"});
  ASSERT_GT(pid, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  const std::string first = out + "/" + io::shard_file_name(0, shards);
  while (!fs::exists(first) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  ::kill(pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  if (!WIFSIGNALED(status) || fs::exists(out + "/model.safetensors.index.json"))
    GTEST_SKIP() << "the run finished before it could be killed";
  const size_t published = count_shards(read_tree(out));
  EXPECT_GE(published, 1u);
  EXPECT_LT(published, shards);

  const auto r = run_fp4kit("dequant " + src + " " + out + " --shard-size 8MB --resume --json " + dir + "/r.json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(read_tree(out) == want);
  EXPECT_EQ(read_json(dir + "/r.json").at("shards_skipped").get<size_t>(), published);
}

// ---- other layouts ---------------------------------------------------------------------------

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) { return testing::as_bytes_vec(v); }

// Positive F32 block scales of assorted magnitudes, not powers of two.
std::vector<float> f32_scales(size_t n, uint64_t seed) {
  const auto r = testing::random_bytes(n, seed);
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = std::ldexp(1.0f + static_cast<float>(r[i]) / 300.0f, static_cast<int>(r[i] % 11) - 14);
  return out;
}

std::vector<uint16_t> reference_fp8(const std::vector<uint8_t>& weight, const void* scales, size_t rows, size_t cols,
                                    Fp8ScaleKind kind) {
  std::vector<uint16_t> out(rows * cols);
  fp8_block_ref::dequantize_bf16(weight.data(), scales, {rows, cols, kind}, 0, rows, out.data());
  return out;
}

TEST(DequantLayouts, V3WeightScaleInvAndTheFp8RepackMatchTheScalarReference) {
  const std::string dir = fresh_temp_dir("dequant-v3");
  const auto x = testing::random_bytes(200 * 272, 1), e = testing::random_bytes(300 * 130, 2);
  const auto xs = f32_scales(2 * 3, 3), es = f32_scales(3 * 2, 4);
  const auto ee = testing::e8m0_bytes(3 * 2, 5);
  testing::write_checkpoint(
      dir + "/src",
      {{{"model.layers.0.mlp.down_proj.weight", DType::F8_E4M3, {200, 272}, x},
        {"model.layers.0.mlp.down_proj.weight_scale_inv", DType::F32, {2, 3}, f32_bytes(xs)},
        {"model.norm.weight", DType::BF16, {272}, {}}},
       {{"experts.0.w1.weight", DType::F8_E4M3, {300, 130}, e},  // the repack: F32 `.scale`
        {"experts.0.w1.scale", DType::F32, {3, 2}, f32_bytes(es)},
        {"experts.1.w1.weight", DType::F8_E4M3, {300, 130}, e},  // and E8M0 `.scale`
        {"experts.1.w1.scale", DType::F8_E8M0, {3, 2}, ee},
        {"tid.weight", DType::I8, {5, 3}, {}}}},
      std::string(R"({"model_type": "deepseek_v3", "quantization_config": {"quant_method": "fp8"}, "torch_dtype": "bfloat16"})"));
  const DequantReport r = dequant_checkpoint(dir + "/src", dir + "/out", options(3, 5'000'000'000, 5000));
  EXPECT_EQ(r.fp8_block.tensors, 3u);
  EXPECT_EQ(r.copy.tensors, 2u);
  const io::Checkpoint out = io::Checkpoint::open(dir + "/out");
  EXPECT_TRUE(BytesEqual(tensor_bytes(out, "model.layers.0.mlp.down_proj.weight"),
                         testing::as_bytes_vec(reference_fp8(x, xs.data(), 200, 272, Fp8ScaleKind::F32))));
  EXPECT_TRUE(BytesEqual(tensor_bytes(out, "experts.0.w1.weight"),
                         testing::as_bytes_vec(reference_fp8(e, es.data(), 300, 130, Fp8ScaleKind::F32))));
  EXPECT_TRUE(BytesEqual(tensor_bytes(out, "experts.1.w1.weight"),
                         testing::as_bytes_vec(reference_fp8(e, ee.data(), 300, 130, Fp8ScaleKind::E8M0))));
  EXPECT_EQ(out.find("model.layers.0.mlp.down_proj.weight_scale_inv").second, nullptr);
  EXPECT_EQ(tensor_bytes(out, "tid.weight"), testing::random_bytes(15, testing::name_seed("tid.weight")));
  EXPECT_EQ(read_json(dir + "/out/config.json"),
            nlohmann::json::parse(R"({"model_type": "deepseek_v3", "torch_dtype": "bfloat16"})"));
  // Default steps and one thread: the same files.
  dequant_checkpoint(dir + "/src", dir + "/out1", options(1));
  EXPECT_TRUE(read_tree(dir + "/out1") == read_tree(dir + "/out"));
}

// DeepSeek V3's own weight_dequant (fp8_cast_bf16.py) output for a [256, 384] weight.
TEST(DequantLayouts, V3MatchesDeepSeekOwnDequant) {
  const testing::OracleFile oracle("oracles/nvfp4/deepseek_fp8_to_nvfp4.safetensors");
  const std::string dir = fresh_temp_dir("dequant-v3-oracle");
  testing::write_checkpoint(dir + "/src", {{{"x.weight", DType::F8_E4M3, {256, 384}, oracle.bytes("fp8.v3_a.weight")},
                                            {"x.weight_scale_inv", DType::F32, {2, 3}, oracle.bytes("fp8.v3_a.weight_scale_inv")}}});
  dequant_checkpoint(dir + "/src", dir + "/out", options(2));
  const io::Checkpoint out = io::Checkpoint::open(dir + "/out");
  EXPECT_EQ(out.find("x.weight").second->dtype, DType::BF16);
  EXPECT_TRUE(BytesEqual(tensor_bytes(out, "x.weight"), oracle.bytes("bf16.v3_a")));
  EXPECT_EQ(out.find("x.weight_scale_inv").second, nullptr);
}

TEST(DequantLayouts, PlainBf16IsACopy) {
  const std::string dir = fresh_temp_dir("dequant-bf16");
  testing::write_checkpoint(dir + "/src", {{{"a.weight", DType::BF16, {64, 32}, {}}, {"b", DType::F32, {7}, {}}},
                                           {{"c.weight", DType::BF16, {3, 5}, {}}, {"d", DType::I64, {2}, {}}}});
  const DequantReport r = dequant_checkpoint(dir + "/src", dir + "/out", options(2));
  EXPECT_EQ(r.copy.tensors, 4u);
  EXPECT_EQ(r.fp8_block.tensors + r.mxfp4.tensors + r.scales_dropped, 0u);
  EXPECT_FALSE(r.config_written);
  EXPECT_TRUE(all_tensors(dir + "/out") == all_tensors(dir + "/src"));
  EXPECT_FALSE(fs::exists(dir + "/out/config.json"));
}

TEST(DequantLayouts, OtherFilesAndSubfoldersAreCopiedVerbatim) {
  const std::string dir = fresh_temp_dir("dequant-files");
  const std::string src = dir + "/src";
  testing::write_checkpoint(src, {{{"a", DType::BF16, {4}, {}}}}, std::string("{\"expert_dtype\": \"fp4\", \"x\": 1}"));
  fs::create_directories(src + "/inference");
  fs::create_directories(src + "/.cache/huggingface");
  std::ofstream(src + "/tokenizer.json") << "{\"tok\": true}";
  std::ofstream(src + "/inference/config.json") << "{\"dtype\": \"fp8\", \"expert_dtype\": \"fp4\"}";
  std::ofstream(src + "/inference/model.py") << "print('hi')\n";
  std::ofstream(src + "/.cache/huggingface/download.lock") << "";
  std::ofstream(src + "/.tokenizer.json.tmp-77-00000000deadbeef") << "junk";
  fs::create_symlink(src + "/tokenizer.json", src + "/linked.json");
  // The output inside the source: left out of the copy.
  dequant_checkpoint(src, src + "/bf16", options(1));
  const auto tree = read_tree(src + "/bf16");
  EXPECT_EQ(testing::file_names(tree),
            (std::vector<std::string>{std::string(kDequantPlanFileName), "config.json", "inference/config.json",
                                      "inference/model.py", "linked.json", "model-00001-of-00001.safetensors",
                                      "model.safetensors.index.json", "tokenizer.json"}));
  EXPECT_EQ(tree.at("inference/config.json"), testing::file_bytes(src + "/inference/config.json"));
  EXPECT_EQ(tree.at("linked.json"), testing::file_bytes(src + "/tokenizer.json"));
  EXPECT_EQ(read_json(src + "/bf16/config.json"), nlohmann::json::parse("{\"x\": 1}"));
}

TEST(DequantPlan, RecognisesOnlyAtomicFileTemporaries) {
  EXPECT_TRUE(is_temporary_file_name(".model-00001-of-00002.safetensors.tmp-123-0123456789abcdef"));
  EXPECT_TRUE(is_temporary_file_name(".config.json.tmp-1-ffffffffffffffff"));
  EXPECT_FALSE(is_temporary_file_name("model.safetensors.tmp-123-0123456789abcdef"));  // not hidden
  EXPECT_FALSE(is_temporary_file_name(".notes.tmp-draft"));
  EXPECT_FALSE(is_temporary_file_name(".x.tmp-12-0123456789ABCDEF"));  // AtomicFile writes lower case
  EXPECT_FALSE(is_temporary_file_name(".x.tmp-12-0123456789abcde"));
  EXPECT_FALSE(is_temporary_file_name(".x.tmp--0123456789abcdef"));
}

// ---- bad input -------------------------------------------------------------------------------

struct BadInput {
  const char* name;
  // Builds the source under `dir`; returns its path.
  std::string (*make)(const std::string& dir);
  std::vector<std::string> needles;  // besides exit code 2
};

std::string tiny_without_shard_2(const std::string& dir) {
  const std::string src = testing::copy_tiny(dir);
  fs::remove(src + "/model-00002-of-00003.safetensors");
  return src;
}
std::string tiny_with_truncated_shard(const std::string& dir) {
  const std::string src = testing::copy_tiny(dir);
  fs::resize_file(src + "/model-00003-of-00003.safetensors", 1'000'000);
  return src;
}
std::string tiny_with_index_naming_missing_file(const std::string& dir) {
  const std::string src = testing::copy_tiny(dir);
  io::CheckpointIndex index = io::CheckpointIndex::load(src + "/model.safetensors.index.json");
  index.weight_map["layers.2.attn.wo_b.weight"] = "model-00004-of-00003.safetensors";
  index.save(src + "/model.safetensors.index.json");
  return src;
}
std::string tiny_with_bad_config(const std::string& dir) {
  const std::string src = testing::copy_tiny(dir);
  std::ofstream(src + "/config.json", std::ios::trunc) << "{\"model_type\": \"deepseek_v4\",";
  return src;
}
std::string tiny_with_unlisted_tensor(const std::string& dir) {
  const std::string src = testing::copy_tiny(dir);
  io::CheckpointIndex index = io::CheckpointIndex::load(src + "/model.safetensors.index.json");
  index.weight_map.erase("layers.1.ffn.gate.weight");
  index.save(src + "/model.safetensors.index.json");
  return src;
}
std::string with_tensors(const std::string& dir, std::vector<FakeTensor> tensors) {
  tensors.push_back({"norm.weight", DType::BF16, {128}, {}});
  testing::write_checkpoint(dir + "/src", {std::move(tensors)});
  return dir + "/src";
}
std::string weight_without_scale(const std::string& dir) {
  return with_tensors(dir, {{"m.weight", DType::F8_E4M3, {128, 128}, {}}});
}
std::string scale_without_weight(const std::string& dir) {
  return with_tensors(dir, {{"m.scale", DType::F8_E8M0, {1, 1}, {}}});
}
std::string scale_of_wrong_dtype(const std::string& dir) {
  return with_tensors(dir, {{"m.weight", DType::F8_E4M3, {128, 128}, {}}, {"m.scale", DType::BF16, {1, 1}, {}}});
}
std::string ragged_scale_of_wrong_shape(const std::string& dir) {
  return with_tensors(dir, {{"m.weight", DType::F8_E4M3, {192, 128}, {}}, {"m.scale", DType::F8_E8M0, {1, 1}, {}}});
}
std::string fp4_scale_of_wrong_shape(const std::string& dir) {
  return with_tensors(dir, {{"e.weight", DType::I8, {128, 64}, {}}, {"e.scale", DType::F8_E8M0, {128, 2}, {}}});
}

std::string tensor_in_two_shards(const std::string& dir) {
  testing::write_checkpoint(dir + "/src", {{{"a", DType::BF16, {4}, {}}}, {{"a", DType::BF16, {4}, {}}}}, std::nullopt,
                            /*with_index=*/false);
  return dir + "/src";
}
std::string extra_file_taking_a_shard_name(const std::string& dir) {
  testing::write_checkpoint(dir + "/src", {{{"a", DType::BF16, {4}, {}}}, {{"b", DType::BF16, {4}, {}}}});
  std::ofstream(dir + "/src/model-00001-of-00001.safetensors") << "not listed in the index";
  return dir + "/src";
}

class DequantBadInput : public ::testing::TestWithParam<BadInput> {};

TEST_P(DequantBadInput, ExitsWithCode2NamingFileAndTensorAndWritesNothing) {
  const BadInput& c = GetParam();
  const std::string dir = fresh_temp_dir(std::string("dequant-bad-") + c.name);
  const std::string src = c.make(dir), out = dir + "/out";
  const auto r = run_fp4kit("dequant " + src + " " + out);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("fp4kit: error: "), std::string::npos) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  for (const std::string& needle : c.needles) EXPECT_NE(r.output.find(needle), std::string::npos) << needle << " in " << r.output;
  EXPECT_TRUE(testing::final_outputs(out).empty());
  EXPECT_FALSE(fs::exists(out)) << "the output directory was created before the input was checked";
}

INSTANTIATE_TEST_SUITE_P(
    Cases, DequantBadInput,
    ::testing::Values(
        BadInput{"missing_shard", tiny_without_shard_2,
                 {"model.safetensors.index.json", "model-00002-of-00003.safetensors", "tensor 'layers.", "not there"}},
        BadInput{"truncated_shard", tiny_with_truncated_shard, {"model-00003-of-00003.safetensors", "tensor '"}},
        BadInput{"index_names_missing_file", tiny_with_index_naming_missing_file,
                 {"model-00004-of-00003.safetensors", "'layers.2.attn.wo_b.weight'", "not there"}},
        BadInput{"tensor_not_in_index", tiny_with_unlisted_tensor,
                 {"model-00002-of-00003.safetensors", "'layers.1.ffn.gate.weight'", "not listed"}},
        BadInput{"invalid_config", tiny_with_bad_config, {"config.json"}},
        BadInput{"weight_without_scale", weight_without_scale, {"model-00001-of-00001.safetensors", "'m.weight'", "no scale"}},
        BadInput{"scale_without_weight", scale_without_weight, {"model-00001-of-00001.safetensors", "'m.scale'", "no weight"}},
        BadInput{"scale_dtype", scale_of_wrong_dtype, {"model-00001-of-00001.safetensors", "'m.scale'", "'m.weight'", "BF16"}},
        BadInput{"scale_shape", ragged_scale_of_wrong_shape,
                 {"model-00001-of-00001.safetensors", "'m.scale'", "'m.weight'", "[2, 1]", "[1, 1]"}},
        BadInput{"fp4_scale_shape", fp4_scale_of_wrong_shape,
                 {"model-00001-of-00001.safetensors", "'e.scale'", "'e.weight'", "[128, 4]", "[128, 2]"}},
        BadInput{"tensor_in_two_shards", tensor_in_two_shards,
                 {"model-00002-of-00002.safetensors", "'a'", "also in", "model-00001-of-00002.safetensors"}},
        BadInput{"extra_file_takes_shard_name", extra_file_taking_a_shard_name,
                 {"src/model-00001-of-00001.safetensors", "output's shard"}}),
    [](const ::testing::TestParamInfo<BadInput>& param) { return std::string(param.param.name); });

}  // namespace
}  // namespace fp4kit
