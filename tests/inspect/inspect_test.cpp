// `fp4kit inspect` on the tiny checkpoint and on copies of it with one thing broken each.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "checkpoint_edit.h"
#include "inspect/checkpoint_summary.h"
#include "run_command.h"
#include "test_data.h"

namespace fp4kit {
namespace {

using testing::copy_tiny_checkpoint;
using testing::run_fp4kit;
using testing::shard_holding;

std::string anomalies_text(const CheckpointSummary& s) {
  std::string all;
  for (const auto& a : s.anomalies) all += a + "\n";
  return all;
}

TEST(Inspect, TinyCheckpointIsCleanAndCounted) {
  const CheckpointSummary s = summarize_checkpoint(testing::test_data("dsv4-tiny"));
  EXPECT_TRUE(s.anomalies.empty()) << anomalies_text(s);
  EXPECT_EQ(s.architecture, "DeepseekV4ForCausalLM");
  EXPECT_EQ(s.shards, 3u);
  EXPECT_EQ(s.tensors, 427u);
  EXPECT_EQ(s.bytes, 4898438u);  // the index's total_size
  EXPECT_EQ(s.quantized_weights.at("fp8-block128/e8m0"), 44u);
  EXPECT_EQ(s.quantized_weights.at("mxfp4/e8m0x32"), 120u);
  EXPECT_EQ(s.counts.at("routed_experts"), 40u);  // 8 experts x (4 layers + MTP)
  EXPECT_EQ(s.counts.at("shared_experts"), 5u);
  EXPECT_EQ(s.counts.at("routers"), 5u);
  EXPECT_EQ(s.counts.at("mtp_blocks"), 1u);
  EXPECT_EQ(s.counts.at("hash_routed_layers"), 2u);
  EXPECT_EQ(s.tensors_per_role.at("routed_expert"), 240u);
  bool found = false;
  for (const auto& p : s.patterns)
    if (p.pattern == "layers.{0..3}.ffn.experts.{0..7}.w1.weight") {
      found = true;
      EXPECT_EQ(p.count, 32u);
      EXPECT_EQ(p.storage, "mxfp4/e8m0x32");
      EXPECT_EQ(p.shape, (std::vector<int64_t>{128, 64}));
    }
  EXPECT_TRUE(found);
}

TEST(Inspect, JsonAndExitCodes) {
  auto r = run_fp4kit("inspect " + testing::test_data("dsv4-tiny") + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["tensors"], 427);
  EXPECT_EQ(j["counts"]["routed_experts"], 40);
  EXPECT_TRUE(j["anomalies"].empty());
  r = run_fp4kit("inspect " + testing::fresh_temp_dir("empty"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = run_fp4kit("inspect /no/such/dir");
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

// Each breakage must come out as an anomaly naming the tensor (and exit code 1).
struct Breakage {
  const char* name;
  std::function<void(const std::string& dir)> apply;
  std::vector<std::string> expect;  // substrings of one anomaly line
};

class InspectAnomaly : public ::testing::TestWithParam<Breakage> {};

TEST_P(InspectAnomaly, IsReported) {
  const Breakage& b = GetParam();
  const std::string dir = copy_tiny_checkpoint(std::string("inspect-") + b.name);
  b.apply(dir);
  const CheckpointSummary s = summarize_checkpoint(dir);
  bool matched = false;
  for (const auto& a : s.anomalies) {
    bool all = true;
    for (const auto& e : b.expect) all = all && a.find(e) != std::string::npos;
    matched = matched || all;
  }
  EXPECT_TRUE(matched) << "no anomaly mentions all of the expected words; got:\n" << anomalies_text(s);
  const auto r = run_fp4kit("inspect " + dir);
  EXPECT_EQ(r.exit_code, 1) << r.output;
}

const std::string kWq = "layers.1.attn.wq_a";

INSTANTIATE_TEST_SUITE_P(
    Each, InspectAnomaly,
    ::testing::Values(
        Breakage{"weight_without_scale",
                 [](const std::string& d) {
                   testing::rewrite_shard(shard_holding(d, kWq + ".scale"), [](io::TensorInfo& tensor) { return tensor.name != kWq + ".scale"; });
                 },
                 {kWq + ".weight"}},
        Breakage{"scale_without_weight",
                 [](const std::string& d) {
                   testing::rewrite_shard(shard_holding(d, kWq + ".weight"), [](io::TensorInfo& tensor) { return tensor.name != kWq + ".weight"; });
                 },
                 {kWq + ".scale"}},
        Breakage{"scale_shape",
                 [](const std::string& d) {
                   // wq_b [768,128] needs scale [6,1]; call it [3,2] (same bytes)
                   testing::rewrite_shard(shard_holding(d, "layers.1.attn.wq_b.scale"), [](io::TensorInfo& tensor) {
                     if (tensor.name == "layers.1.attn.wq_b.scale") tensor.shape = {3, 2};
                     return true;
                   });
                 },
                 {"layers.1.attn.wq_b"}},
        Breakage{"missing_shard",
                 [](const std::string& d) { std::filesystem::remove(d + "/model-00002-of-00003.safetensors"); },
                 {"model-00002-of-00003.safetensors", "missing"}},
        Breakage{"truncated_shard",
                 [](const std::string& d) {
                   const std::string p = d + "/model-00003-of-00003.safetensors";
                   std::filesystem::resize_file(p, std::filesystem::file_size(p) - 100);
                 },
                 {"model-00003-of-00003.safetensors"}},
        Breakage{"unknown_dtype",
                 [](const std::string& d) { testing::patch_header(d + "/model-00001-of-00003.safetensors", "\"F8_E8M0\"", "\"F8_E9M0\""); },
                 {"model-00001-of-00003.safetensors", "F8_E9M0"}},
        Breakage{"tensor_not_in_index",
                 [](const std::string& d) {
                   auto path = d + "/model.safetensors.index.json";
                   std::ifstream in(path);
                   auto j = nlohmann::json::parse(in);
                   j["weight_map"].erase("layers.2.attn.attn_sink");
                   std::ofstream(path) << j.dump();
                 },
                 {"layers.2.attn.attn_sink", "not in the index"}},
        Breakage{"index_names_absent_tensor",
                 [](const std::string& d) {
                   auto path = d + "/model.safetensors.index.json";
                   std::ifstream in(path);
                   auto j = nlohmann::json::parse(in);
                   j["weight_map"]["layers.9.ghost.weight"] = "model-00001-of-00003.safetensors";
                   std::ofstream(path) << j.dump();
                 },
                 {"layers.9.ghost.weight"}},
        Breakage{"wrong_shape_for_config",
                 [](const std::string& d) {
                   testing::rewrite_shard(shard_holding(d, "layers.0.ffn.gate.weight"), [](io::TensorInfo& tensor) {
                     if (tensor.name == "layers.0.ffn.gate.weight") tensor.shape = {16, 64};
                     return true;
                   });
                 },
                 {"layers.0.ffn.gate.weight", "[16, 64]"}}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

}  // namespace
}  // namespace fp4kit

namespace fp4kit {
namespace {

// What convert writes (NVIDIA's V4 NVFP4 layout) reads back clean: NVFP4 experts recognised,
// FP8 attention and MTP experts unchanged, no anomaly.
TEST(Inspect, ConvertedCheckpointIsClean) {
  const std::string out = testing::fresh_temp_dir("inspect-converted") + "/nvfp4";
  const auto r = run_fp4kit("convert " + testing::test_data("dsv4-tiny") + " " + out + " --calib " +
                            testing::test_data("oracles/dsv4-tiny-modelopt/calib_amax.safetensors") + " --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const CheckpointSummary s = summarize_checkpoint(out);
  EXPECT_TRUE(s.anomalies.empty()) << anomalies_text(s);
  EXPECT_EQ(s.quantized_weights.at("nvfp4/e4m3x16"), 96u);
  EXPECT_EQ(s.quantized_weights.at("mxfp4/e8m0x32"), 24u);  // the MTP block's experts stay MXFP4
  EXPECT_EQ(s.quantized_weights.at("fp8-block128/e8m0"), 44u);
  EXPECT_EQ(s.tensors, 619u);
}

}  // namespace
}  // namespace fp4kit
