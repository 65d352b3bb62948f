// `fp4kit convert` as a job: thread-independent output, kill + --resume, refusals, --dry-run,
// --weight-only, and bad input through the binary.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "checkpoint_edit.h"
#include "convert/convert_plan.h"
#include "convert/convert_test_util.h"
#include "convert/dequant_test_util.h"
#include "io/checkpoint_index.h"
#include "io/direct_io.h"
#include "run_command.h"

namespace fp4kit {
namespace {

namespace fs = std::filesystem;
using testing::calib_file;
using testing::read_json_file;
using testing::read_tree;
using testing::run_fp4kit;
using testing::test_data;

std::string convert_args(const std::string& src, const std::string& out, const std::string& extra = "") {
  return "convert " + src + " " + out + " --calib " + calib_file() + " --quiet " + extra;
}

TEST(ConvertJob, ThreadCountDoesNotChangeTheOutput) {
  const std::string dir = testing::fresh_temp_dir("convert-threads");
  for (const char* numerics : {"cast", "modelopt"}) {
    const std::string a = dir + "/a-" + numerics, b = dir + "/b-" + numerics;
    ASSERT_EQ(run_fp4kit(convert_args(test_data("dsv4-tiny"), a, "--threads 1 --numerics " + std::string(numerics))).exit_code, 0);
    ASSERT_EQ(run_fp4kit(convert_args(test_data("dsv4-tiny"), b, "--threads 3 --numerics " + std::string(numerics))).exit_code, 0);
    EXPECT_TRUE(read_tree(a) == read_tree(b)) << numerics;
  }
}

// Direct I/O (the default where the file system allows), the page cache with the kernel's copies of
// kept tensors, and the page cache with user-space copies give the same files, plan file included.
// Each run reports where it took O_DIRECT; where the file systems take it (asked here independently),
// the default run must have read every source file and written every shard that way, and
// --no-direct-io none: a silent fallback to the page cache fails the test.
TEST(ConvertJob, DirectIoAndThePageCacheGiveTheSameOutput) {
  const std::string dir = testing::fresh_temp_dir("convert-direct");
  const int probe_read = io::open_direct_read(test_data("dsv4-tiny/model-00001-of-00003.safetensors"));
  const int probe_write = ::open((dir + "/probe").c_str(), O_WRONLY | O_CREAT | O_DIRECT, 0644);
  const bool reads_direct = probe_read >= 0, writes_direct = probe_write >= 0;
  if (probe_read >= 0) ::close(probe_read);
  if (probe_write >= 0) ::close(probe_write);
  std::printf("O_DIRECT here: source reads %s, output writes %s\n", reads_direct ? "yes" : "no", writes_direct ? "yes" : "no");
  for (const char* args : {"--numerics cast", "--numerics modelopt --shard-size 1MB"}) {
    const std::string a = dir + "/direct", b = dir + "/cached", c = dir + "/copied";
    const std::string json_a = dir + "/direct.json", json_b = dir + "/cached.json";
    ASSERT_EQ(run_fp4kit(convert_args(test_data("dsv4-tiny"), a, std::string(args) + " --json " + json_a)).exit_code, 0);
    ASSERT_EQ(run_fp4kit(convert_args(test_data("dsv4-tiny"), b, std::string(args) + " --no-direct-io --json " + json_b)).exit_code, 0);
    const nlohmann::json da = read_json_file(json_a)["direct_io"], db = read_json_file(json_b)["direct_io"];
    EXPECT_EQ(da["requested"], true);
    EXPECT_EQ(da["source_files"].get<size_t>(), 3u);
    EXPECT_EQ(da["source_files_direct"].get<size_t>(), reads_direct ? 3u : 0u) << args;
    EXPECT_EQ(da["shards_written_direct"].get<size_t>(), writes_direct ? read_json_file(json_a)["shards_written"].get<size_t>() : 0u) << args;
    EXPECT_EQ(db["requested"], false);
    EXPECT_EQ(db["source_files_direct"].get<size_t>(), 0u);
    EXPECT_EQ(db["shards_written_direct"].get<size_t>(), 0u);
    ::setenv("FP4KIT_TEST_NO_KERNEL_COPY", "1", 1);
    const auto copied = run_fp4kit(convert_args(test_data("dsv4-tiny"), c, std::string(args) + " --no-direct-io"));
    ::unsetenv("FP4KIT_TEST_NO_KERNEL_COPY");
    ASSERT_EQ(copied.exit_code, 0) << copied.output;
    EXPECT_TRUE(read_tree(a) == read_tree(b)) << args;
    EXPECT_TRUE(read_tree(a) == read_tree(c)) << args;
    fs::remove_all(a);
    fs::remove_all(b);
    fs::remove_all(c);
  }
}

TEST(ConvertJob, KilledRunResumesToIdenticalOutput) {
  const std::string dir = testing::fresh_temp_dir("convert-resume");
  const std::string want = dir + "/want", out = dir + "/out";
  ASSERT_EQ(run_fp4kit(convert_args(test_data("dsv4-tiny"), want, "--numerics modelopt")).exit_code, 0);

  ::setenv(kCrashAfterShardsEnv, "1", 1);
  const auto killed = run_fp4kit(convert_args(test_data("dsv4-tiny"), out, "--numerics modelopt"));
  ::unsetenv(kCrashAfterShardsEnv);
  EXPECT_EQ(killed.exit_code, 137) << killed.output;
  ASSERT_TRUE(fs::exists(out + "/" + std::string(kConvertPlanFileName)));
  EXPECT_FALSE(fs::exists(out + "/model.safetensors.index.json"));
  EXPECT_EQ(testing::final_outputs(out).size(), 1u);  // one shard published

  const auto again = run_fp4kit(convert_args(test_data("dsv4-tiny"), out, "--numerics modelopt"));
  EXPECT_EQ(again.exit_code, 2) << again.output;
  EXPECT_NE(again.output.find("--resume"), std::string::npos) << again.output;

  const auto other = run_fp4kit(convert_args(test_data("dsv4-tiny"), out, "--numerics cast --resume"));
  EXPECT_EQ(other.exit_code, 2) << other.output;
  EXPECT_NE(other.output.find("--numerics"), std::string::npos) << other.output;

  const std::string calib2 = dir + "/calib2.safetensors";
  testing::write_calibration(calib2, {{"layers.0.ffn.experts.0.w1", 3.0f}, {"layers.0.ffn.experts.0.w2", 3.0f}});
  const auto other_calib = run_fp4kit("convert " + test_data("dsv4-tiny") + " " + out + " --calib " + calib2 +
                                      " --numerics modelopt --resume --quiet");
  EXPECT_EQ(other_calib.exit_code, 2) << other_calib.output;
  EXPECT_NE(other_calib.output.find("--calib"), std::string::npos) << other_calib.output;

  const auto resumed = run_fp4kit(convert_args(test_data("dsv4-tiny"), out, "--numerics modelopt --resume --json " +
                                                                                dir + "/r.json"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(read_json_file(dir + "/r.json").at("shards_skipped"), 1);
  EXPECT_TRUE(read_tree(out) == read_tree(want));
}

TEST(ConvertJob, ForceEmptiesAnOccupiedDestination) {
  const std::string dir = testing::fresh_temp_dir("convert-force");
  const std::string out = dir + "/out";
  fs::create_directories(out);
  std::ofstream(out + "/junk.txt") << "x";
  EXPECT_EQ(run_fp4kit(convert_args(test_data("dsv4-tiny"), out)).exit_code, 2);
  ASSERT_EQ(run_fp4kit(convert_args(test_data("dsv4-tiny"), out, "--force")).exit_code, 0);
  EXPECT_FALSE(fs::exists(out + "/junk.txt"));
}

TEST(ConvertJob, DryRunPrintsTheRealRunsCountsAndWritesNothing) {
  const std::string dir = testing::fresh_temp_dir("convert-dry");
  const std::string out = dir + "/out";
  const auto dry = run_fp4kit("convert " + test_data("dsv4-tiny") + " " + out + " --calib " + calib_file() +
                              " --dry-run --json " + dir + "/plan.json");
  ASSERT_EQ(dry.exit_code, 0) << dry.output;
  EXPECT_FALSE(fs::exists(out));
  for (const char* line : {"transcode      96 tensors", "keep          235 tensors", "drop           96 tensors",
                           "3 shards, 619 tensors, 4948358 bytes", "hf_quant_config.json", "model-00002-of-00003"})
    EXPECT_NE(dry.output.find(line), std::string::npos) << line << "\n" << dry.output;

  ASSERT_EQ(run_fp4kit(convert_args(test_data("dsv4-tiny"), out, "--json " + dir + "/run.json")).exit_code, 0);
  auto plan = read_json_file(dir + "/plan.json");
  auto run = read_json_file(dir + "/run.json");
  EXPECT_EQ(plan.at("actions"), run.at("actions"));
  EXPECT_EQ(plan.at("shards"), run.at("shards"));
  EXPECT_EQ(plan.at("output_bytes"), run.at("output_bytes"));
  EXPECT_EQ(run.at("written").at("output_bytes"), run.at("output_bytes"));
}

// Full-size V4 Pro tensors (hollow shards: real headers, no data): the plan comes from headers alone.
TEST(ConvertJob, DryRunPlansAHollowFullSizeProCheckpoint) {
  const std::string dir = testing::fresh_temp_dir("convert-dry-pro");
  ASSERT_EQ(run_fp4kit("synth v4-pro:layers=2 " + dir + "/src --hollow --quiet").exit_code, 0);
  const auto dry = run_fp4kit("convert " + dir + "/src " + dir + "/out --weight-only --dry-run --json " + dir + "/plan.json");
  ASSERT_EQ(dry.exit_code, 0) << dry.output;
  EXPECT_FALSE(fs::exists(dir + "/out"));
  const auto plan = read_json_file(dir + "/plan.json");
  EXPECT_EQ(plan.at("family"), "deepseek-v4");
  // 2 layers x 384 experts x (w1, w2, w3), cast; their E8M0 scales dropped; the MTP experts kept.
  EXPECT_EQ(plan.at("actions").at("transcode").at("tensors"), 2 * 384 * 3);
  EXPECT_EQ(plan.at("actions").at("transcode").at("output_tensors"), 2 * 384 * 3 * 3);
  EXPECT_EQ(plan.at("actions").at("drop").at("tensors"), 2 * 384 * 3);
  EXPECT_EQ(plan.at("actions").at("quantize").at("tensors"), 0);
  // Pro's expert w1: [3072, 7168] in MXFP4 (U8 [3072, 3584] + E8M0 [3072, 224]) -> NVFP4.
  EXPECT_EQ(plan.at("actions").at("transcode").at("input_bytes"), 2 * 384 * 3 * (3072ll * 3584 + 3072ll * 224));
  EXPECT_EQ(plan.at("actions").at("transcode").at("output_bytes"), 2 * 384 * 3 * (3072ll * 3584 + 3072ll * 448 + 4));
}

TEST(ConvertJob, WeightOnlyWritesNoInputScaleAndWarns) {
  const std::string dir = testing::fresh_temp_dir("convert-weight-only");
  const auto r = run_fp4kit("convert " + test_data("dsv4-tiny") + " " + dir + "/out --weight-only");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("warning"), std::string::npos) << r.output;
  const auto got = testing::read_checkpoint(dir + "/out");
  EXPECT_EQ(got.size(), 619u - 96u);
  for (const auto& [name, t] : got) EXPECT_FALSE(name.ends_with(".input_scale")) << name;
  // The weights are those of the calibrated run.
  const auto want = testing::read_checkpoint(testing::oracle_dir("cast"));
  EXPECT_EQ(got.at("layers.2.ffn.experts.4.w2.weight").bytes, want.at("layers.2.ffn.experts.4.w2.weight").bytes);
}

// ---- bad input: exit 2, a message naming file and tensor, no final-named output -----------------

struct BadInput {
  const char* name;
  std::string (*make)(const std::string& dir);  // returns the extra arguments; source in dir/src
  const char* needle1;
  const char* needle2;
};

std::string missing_scale(const std::string& dir) {
  const std::string src = dir + "/src";
  const std::string shard = testing::shard_holding(src, "layers.1.ffn.experts.2.w2.scale");
  testing::rewrite_shard(shard, [](io::TensorInfo& t) { return t.name != "layers.1.ffn.experts.2.w2.scale"; });
  io::CheckpointIndex index = io::CheckpointIndex::load(src + "/model.safetensors.index.json");
  index.weight_map.erase("layers.1.ffn.experts.2.w2.scale");
  index.save(src + "/model.safetensors.index.json");
  return "--calib " + calib_file();
}
std::string no_calibration(const std::string&) { return ""; }
std::string calibration_with_nan(const std::string& dir) {
  testing::write_calibration(dir + "/calib.safetensors", {{"layers.0.ffn.experts.1.w1", std::nanf("")}});
  return "--calib " + dir + "/calib.safetensors";
}
std::string calibration_of_unknown_module(const std::string& dir) {
  testing::write_calibration(dir + "/calib.safetensors", {{"layers.9.ffn.experts.1.w1", 2.0f}});
  return "--calib " + dir + "/calib.safetensors";
}
std::string nan_expert_scale(const std::string& dir) {
  testing::poke_tensor_byte(dir + "/src", "layers.0.ffn.experts.3.w2.scale", 5, 0xFF);
  return "--calib " + calib_file();
}
std::string occupied_destination(const std::string& dir) {
  fs::create_directories(dir + "/out");
  std::ofstream(dir + "/out/notes.txt") << "mine";
  return "--calib " + calib_file();
}

class ConvertBadInput : public ::testing::TestWithParam<BadInput> {};

TEST_P(ConvertBadInput, ExitsWithCode2NamingTheProblemAndWritesNoFinalOutput) {
  const std::string dir = testing::fresh_temp_dir("convert-bad");
  const std::string src = testing::copy_tiny(dir);
  const std::string extra = GetParam().make(dir);
  for (const char* numerics : {"cast", "modelopt"}) {
    // A failed run may leave its plan file, so each mode gets its own output directory.
    std::string out = dir + "/out";
    if (std::string_view(numerics) != "cast") out.append("-").append(numerics);
    if (out != dir + "/out" && fs::exists(dir + "/out/notes.txt")) fs::copy(dir + "/out", out);
    const auto r = run_fp4kit("convert " + src + " " + out + " --numerics " + numerics + " " + extra);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find(GetParam().needle1), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(GetParam().needle2), std::string::npos) << r.output;
    EXPECT_TRUE(testing::final_outputs(out).empty());
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ConvertBadInput,
    ::testing::Values(
        BadInput{"MissingScale", missing_scale, "model-0000", "'layers.1.ffn.experts.2.w2.weight'"},
        BadInput{"NoCalibration", no_calibration, "--calib", "--weight-only"},
        BadInput{"CalibrationWithNan", calibration_with_nan, "calib.safetensors",
                 "'layers.0.ffn.experts.1.w1.input_amax'"},
        BadInput{"CalibrationOfUnknownModule", calibration_of_unknown_module, "calib.safetensors",
                 "'layers.9.ffn.experts.1.w1'"},
        BadInput{"NanExpertScale", nan_expert_scale, "'layers.0.ffn.experts.3.w2.scale'", "--allow-nonfinite"},
        BadInput{"OccupiedDestination", occupied_destination, "/out", "refusing to overwrite"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

}  // namespace
}  // namespace fp4kit
