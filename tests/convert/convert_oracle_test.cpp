// `fp4kit convert` against ModelOpt's DeepSeek V4 exporter run on the tiny checkpoint
// (tests/data/oracles/dsv4-tiny-modelopt): every tensor byte for byte, the JSON files as JSON.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "convert/convert_test_util.h"
#include "convert/dequant_test_util.h"
#include "checkpoint_edit.h"
#include "oracle_file.h"
#include "run_command.h"

namespace fp4kit {
namespace {

using testing::calib_file;
using testing::oracle_dir;
using testing::read_checkpoint;
using testing::read_json_file;
using testing::run_fp4kit;
using testing::test_data;

struct Mode {
  const char* oracle;    // folder of the oracle
  const char* numerics;  // our flag
};

class ConvertOracle : public ::testing::TestWithParam<Mode> {};

// Every tensor of `want` in `got` with the same dtype, shape and bytes (and no others); with
// `same_shards`, also in the same shard.
void expect_same_tensors(const std::string& got_dir, const std::string& want_dir, bool same_shards) {
  const auto got = read_checkpoint(got_dir);
  const auto want = read_checkpoint(want_dir);
  EXPECT_EQ(got.size(), want.size());
  size_t compared = 0;
  for (const auto& [name, w] : want) {
    const auto it = got.find(name);
    if (it == got.end()) {
      ADD_FAILURE() << "missing " << name;
      continue;
    }
    const auto& g = it->second;
    EXPECT_EQ(dtype_name(g.dtype), dtype_name(w.dtype)) << name;
    EXPECT_EQ(g.shape, w.shape) << name;
    EXPECT_TRUE(testing::BytesEqual(g.bytes, w.bytes)) << name;
    if (same_shards) {
      EXPECT_EQ(g.file, w.file) << name;
    }
    ++compared;
  }
  EXPECT_EQ(compared, 619u);
}

TEST_P(ConvertOracle, EveryTensorAndTheJsonFilesEqualTheExporters) {
  const std::string dir = testing::fresh_temp_dir("convert-oracle");
  const std::string out = dir + "/out";
  const auto r = run_fp4kit("convert " + test_data("dsv4-tiny") + " " + out + " --calib " + calib_file() +
                            " --numerics " + GetParam().numerics + " --json " + dir + "/r.json --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string want = oracle_dir(GetParam().oracle);
  expect_same_tensors(out, want, true);

  EXPECT_EQ(read_json_file(out + "/config.json"), read_json_file(want + "/config.json"));
  EXPECT_EQ(read_json_file(out + "/hf_quant_config.json"), read_json_file(want + "/hf_quant_config.json"));
  const auto index = read_json_file(out + "/model.safetensors.index.json");
  EXPECT_EQ(index.at("weight_map"), read_json_file(want + "/model.safetensors.index.json").at("weight_map"));
  // The true size, not the exporter's stale copy of the source's 4,898,438.
  uint64_t total = 0;
  for (const auto& [name, t] : read_checkpoint(out)) total += t.bytes.size();
  EXPECT_EQ(total, 4948358u);
  EXPECT_EQ(index.at("metadata").at("total_size"), total);

  const auto report = read_json_file(dir + "/r.json");
  EXPECT_EQ(report.at("actions").at("drop").at("tensors"), 96);
  EXPECT_EQ(report.at("actions").at("keep").at("tensors"), 235);
  EXPECT_EQ(report.at("input_fallbacks"), 6);
  if (std::string(GetParam().numerics) == "cast") {
    EXPECT_EQ(report.at("actions").at("transcode").at("tensors"), 96);
    EXPECT_EQ(report.at("lossless").at("reported_lossless"), 49151);
    EXPECT_EQ(report.at("lossless").at("groups"), 49152);
    EXPECT_EQ(report.at("lossless").at("exact_groups"), 49152);
  } else {
    EXPECT_EQ(report.at("actions").at("quantize").at("tensors"), 96);
  }
}

// --numerics auto (the default) is the cast for MXFP4 experts.
TEST(ConvertDefaults, Mxfp4ExpertsAreCastByDefault) {
  const std::string dir = testing::fresh_temp_dir("convert-default");
  const auto r = run_fp4kit("convert " + test_data("dsv4-tiny") + " " + dir + "/out --calib " + calib_file() + " --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_same_tensors(dir + "/out", oracle_dir("cast"), true);
}

INSTANTIATE_TEST_SUITE_P(Modes, ConvertOracle,
                         ::testing::Values(Mode{"cast", "cast"}, Mode{"requant", "modelopt"}),
                         [](const auto& param_info) { return std::string(param_info.param.oracle); });

// w1 and w3 of an expert in different shards still share weight_scale_2 (the exporter would not
// pair them); every tensor then equals the exporter's output for the unsplit checkpoint.
class ConvertCrossShard : public ::testing::TestWithParam<Mode> {};

TEST_P(ConvertCrossShard, SplitW1W3ShareWeightScale2AcrossShards) {
  const std::string src = testing::copy_tiny_checkpoint("convert-split");
  const std::string expert = "layers.0.ffn.experts.7";
  const std::string w1_shard = testing::shard_holding(src, expert + ".w1.weight");
  const std::string w1_file = std::filesystem::path(w1_shard).filename().string();
  const std::string other = w1_file == "model-00003-of-00003.safetensors" ? "model-00001-of-00003.safetensors"
                                                                           : "model-00003-of-00003.safetensors";
  testing::move_tensors(src, {expert + ".w3.weight", expert + ".w3.scale"}, other);

  const std::string out = testing::fresh_temp_dir("convert-split-out") + "/out";
  const auto r = run_fp4kit("convert " + src + " " + out + " --calib " + calib_file() + " --numerics " +
                            GetParam().numerics + " --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto got = read_checkpoint(out);
  EXPECT_EQ(got.at(expert + ".w1.weight").file, w1_file);
  EXPECT_EQ(got.at(expert + ".w3.weight").file, other);
  EXPECT_EQ(got.at(expert + ".w3.weight_scale_2").file, other);
  EXPECT_EQ(got.at(expert + ".w1.weight_scale_2").bytes, got.at(expert + ".w3.weight_scale_2").bytes);
  expect_same_tensors(out, oracle_dir(GetParam().oracle), false);
}

INSTANTIATE_TEST_SUITE_P(Modes, ConvertCrossShard,
                         ::testing::Values(Mode{"cast", "cast"}, Mode{"requant", "modelopt"}),
                         [](const auto& param_info) { return std::string(param_info.param.oracle); });

}  // namespace
}  // namespace fp4kit
