// `fp4kit calibrate` as a user runs it: kill -9 after a layer and --resume gives the same file as an
// uninterrupted run; its output feeds `convert --calib`, whose input scales are amax/2688 with w1/w3
// fused; bad input gets a clear error and a non-zero exit.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "calib/amax_table.h"
#include "io/checkpoint_index.h"
#include "models/stored_weight.h"
#include "run_command.h"
#include "test_data.h"

namespace fp4kit {
namespace {

using testing::run_fp4kit;
constexpr const char* kCrashEnv = "FP4KIT_TEST_CRASH_AFTER_LAYERS";

std::string bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string calibrate_args(const std::string& out) {
  return "calibrate " + testing::test_data("dsv4-tiny") + " --data " +
         testing::test_data("calib/oracle/calib_ids.safetensors") + " --samples 4 --seq-len 96 --threads 2 --out " + out;
}

TEST(CalibrateCli, KillAfterALayerThenResumeGivesTheSameFile) {
  const std::string dir = testing::fresh_temp_dir("calib-cli");
  const auto whole = run_fp4kit(calibrate_args(dir + "/whole.safetensors") + " --quiet");
  ASSERT_EQ(whole.exit_code, 0) << whole.output;

  const std::string out = dir + "/killed.safetensors";
  ::setenv(kCrashEnv, "2", 1);
  const auto killed = run_fp4kit(calibrate_args(out) + " --quiet");
  ::unsetenv(kCrashEnv);
  EXPECT_EQ(killed.exit_code, 137) << killed.output;  // the hook ends the process as a SIGKILL would
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_TRUE(std::filesystem::exists(out + ".fp4kit-calib"));

  const auto again = run_fp4kit(calibrate_args(out));
  EXPECT_EQ(again.exit_code, 2) << again.output;
  EXPECT_NE(again.output.find("--resume"), std::string::npos) << again.output;

  const auto resumed = run_fp4kit(calibrate_args(out) + " --resume --json -");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("\"resumed\": true"), std::string::npos) << resumed.output;
  EXPECT_EQ(bytes_of(out), bytes_of(dir + "/whole.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(out + ".fp4kit-calib"));

  const auto other = run_fp4kit(calibrate_args(out) + " --resume --all-experts");
  EXPECT_EQ(other.exit_code, 2) << other.output;
}

TEST(CalibrateCli, ConvertWritesInputScalesFromIt) {
  const std::string dir = testing::fresh_temp_dir("calib-convert");
  const std::string amax = dir + "/amax.safetensors";
  ASSERT_EQ(run_fp4kit(calibrate_args(amax) + " --quiet").exit_code, 0);
  const auto conv = run_fp4kit("convert " + testing::test_data("dsv4-tiny") + " " + dir + "/out --calib " + amax + " --quiet");
  ASSERT_EQ(conv.exit_code, 0) << conv.output;
  const AmaxTable table = AmaxTable::load(amax);
  const auto ckpt = io::Checkpoint::open(dir + "/out");
  const StoredWeights out(ckpt);
  size_t checked = 0;
  for (int layer = 0; layer < 4; ++layer)
    for (int e = 0; e < 8; ++e) {
      const std::string m = "layers." + std::to_string(layer) + ".ffn.experts." + std::to_string(e) + ".";
      const float fused = std::max(table.at(m + "w1"), table.at(m + "w3"));
      EXPECT_EQ(out.read_scalar(m + "w1.input_scale"), fused / 2688.0f) << m;
      EXPECT_EQ(out.read_scalar(m + "w3.input_scale"), fused / 2688.0f) << m;
      EXPECT_EQ(out.read_scalar(m + "w2.input_scale"), table.at(m + "w2") / 2688.0f) << m;
      checked += 3;
    }
  EXPECT_EQ(checked, 96u);
}

// A [4, 96] input_ids file needs no --samples / --seq-len: its shape is the default, and the result is
// the file the flags naming that shape give.
TEST(CalibrateCli, TokenIdDataNeedsNoShapeFlags) {
  const std::string dir = testing::fresh_temp_dir("calib-ids-shape");
  const std::string data = testing::test_data("calib/oracle/calib_ids.safetensors");
  const auto bare = run_fp4kit("calibrate " + testing::test_data("dsv4-tiny") + " --data " + data + " --threads 2 --quiet --out " +
                               dir + "/bare.safetensors --json -");
  ASSERT_EQ(bare.exit_code, 0) << bare.output;
  EXPECT_NE(bare.output.find("\"samples\": 4,"), std::string::npos) << bare.output;
  EXPECT_NE(bare.output.find("\"seq_len\": 96,"), std::string::npos) << bare.output;
  const auto named = run_fp4kit(calibrate_args(dir + "/named.safetensors") + " --quiet");
  ASSERT_EQ(named.exit_code, 0) << named.output;
  EXPECT_EQ(bytes_of(dir + "/bare.safetensors"), bytes_of(dir + "/named.safetensors"));
  // Flags still win: two of the four sequences, cut to 64 tokens.
  const auto cut = run_fp4kit("calibrate " + testing::test_data("dsv4-tiny") + " --data " + data +
                              " --samples 2 --seq-len 64 --threads 2 --quiet --out " + dir + "/cut.safetensors --json -");
  ASSERT_EQ(cut.exit_code, 0) << cut.output;
  EXPECT_NE(cut.output.find("\"samples\": 2,"), std::string::npos) << cut.output;
  EXPECT_NE(cut.output.find("\"seq_len\": 64,"), std::string::npos) << cut.output;
}

TEST(CalibrateCli, BadInputFailsWithAClearMessage) {
  const std::string dir = testing::fresh_temp_dir("calib-bad");
  {
    std::ofstream(dir + "/empty.ids");
  }
  const auto empty = run_fp4kit("calibrate " + testing::test_data("dsv4-tiny") + " --data " + dir +
                                "/empty.ids --samples 1 --seq-len 8 --out " + dir + "/a.safetensors");
  EXPECT_EQ(empty.exit_code, 2) << empty.output;
  EXPECT_NE(empty.output.find("empty.ids"), std::string::npos) << empty.output;
  {
    std::ofstream(dir + "/big.ids") << "0 1 2 3 4 5 6 99999\n";
  }
  const auto vocab = run_fp4kit("calibrate " + testing::test_data("dsv4-tiny") + " --data " + dir +
                                "/big.ids --samples 1 --seq-len 8 --out " + dir + "/b.safetensors");
  EXPECT_EQ(vocab.exit_code, 2) << vocab.output;
  EXPECT_NE(vocab.output.find("99999"), std::string::npos) << vocab.output;
  const auto text = run_fp4kit("calibrate " + testing::test_data("dsv4-tiny") + " --samples 1 --seq-len 8 --out " + dir +
                               "/c.safetensors");
  EXPECT_EQ(text.exit_code, 2) << text.output;
  EXPECT_NE(text.output.find("tokenizer"), std::string::npos) << text.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/a.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/b.safetensors"));
}

}  // namespace
}  // namespace fp4kit
