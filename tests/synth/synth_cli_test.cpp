// `fp4kit synth` end to end: what it writes passes `fp4kit inspect`, and bad input exits 2 having
// written nothing.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "run_command.h"
#include "test_data.h"

namespace fp4kit {
namespace {

namespace fs = std::filesystem;
using testing::run_fp4kit;

std::set<std::string> file_names(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

TEST(SynthCli, TinyPassesInspect) {
  const std::string root = testing::fresh_temp_dir("synth-cli");
  const std::string dst = root + "/tiny";
  const auto r = run_fp4kit("synth tiny " + dst + " --seed 5 --threads 3 --shard-size 2MB --json " + root + "/report.json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("427 tensors in 3 shards"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("GB/s"), std::string::npos) << r.output;

  std::ifstream in(root + "/report.json");
  const auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j.at("tensors"), 427);
  EXPECT_EQ(j.at("shards"), 3);
  EXPECT_EQ(j.at("seed"), 5);
  EXPECT_EQ(j.at("hollow"), false);
  EXPECT_GT(j.at("data_bytes").get<uint64_t>(), 4'000'000u);
  EXPECT_GE(j.at("allocated_bytes").get<uint64_t>(), j.at("data_bytes").get<uint64_t>());

  const auto inspect = run_fp4kit("inspect " + dst);
  EXPECT_EQ(inspect.exit_code, 0) << inspect.output;
  EXPECT_NE(inspect.output.find("0 anomalies"), std::string::npos) << inspect.output;
}

TEST(SynthCli, Fp8ExpertsPassInspect) {
  const std::string dst = testing::fresh_temp_dir("synth-cli-fp8") + "/m";
  const auto r = run_fp4kit("synth tiny " + dst + " --expert-dtype fp8 --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "");  // --quiet
  const auto inspect = run_fp4kit("inspect " + dst);
  EXPECT_EQ(inspect.exit_code, 0) << inspect.output;
}

TEST(SynthCli, HollowV4ProPassesInspect) {
  const std::string root = testing::fresh_temp_dir("synth-cli-hollow");
  const std::string dst = root + "/pro";
  const auto r = run_fp4kit("synth v4-pro:layers=4 " + dst + " --hollow --json " + root + "/report.json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("(hollow)"), std::string::npos) << r.output;
  std::ifstream in(root + "/report.json");
  const auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j.at("hollow"), true);
  EXPECT_LT(j.at("allocated_bytes").get<uint64_t>(), uint64_t{64} << 20);
  EXPECT_GT(j.at("data_bytes").get<uint64_t>(), uint64_t{50'000'000'000});
  const auto inspect = run_fp4kit("inspect " + dst);
  EXPECT_EQ(inspect.exit_code, 0) << inspect.output;
}

TEST(SynthCli, UnknownPresetExits2ListingTheKnownOnes) {
  const std::string dst = testing::fresh_temp_dir("synth-cli-bad") + "/out";
  const auto r = run_fp4kit("synth v3-huge " + dst);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  for (const char* name : {"v3-huge", "v4-flash", "v4-pro", "tiny"}) EXPECT_NE(r.output.find(name), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dst));
}

TEST(SynthCli, BadArgumentsExit2WritingNothing) {
  const std::string root = testing::fresh_temp_dir("synth-cli-args");
  for (const std::string args : {"v4-pro:layers=two", "v4-pro:wings=2", "tiny --shard-size lots", "tiny --shard-size 0",
                                 "tiny --expert-dtype fp16", "tiny --threads x"}) {
    const std::string dst = root + "/out";
    const auto space = args.find(' ');
    const std::string cmd = "synth " + args.substr(0, space) + " " + dst + (space == std::string::npos ? "" : args.substr(space));
    const auto r = run_fp4kit(cmd);
    EXPECT_EQ(r.exit_code, 2) << cmd << "\n" << r.output;
    EXPECT_FALSE(fs::exists(dst)) << cmd;
  }
}

TEST(SynthCli, NonEmptyDestinationExits2AndIsLeftAlone) {
  const std::string dst = testing::fresh_temp_dir("synth-cli-busy");
  std::ofstream(dst + "/notes.txt") << "keep me";
  const auto r = run_fp4kit("synth tiny " + dst);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(dst), std::string::npos) << r.output;
  EXPECT_EQ(file_names(dst), std::set<std::string>{"notes.txt"});
}

}  // namespace
}  // namespace fp4kit
