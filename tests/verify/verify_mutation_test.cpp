// A good converted checkpoint broken in each way the checks target: verify must fail it and name
// the exact problem (the check and the tensor or file).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "verify_test_util.h"

namespace fp4kit::testing {
namespace {

const std::string kW1 = "layers.1.ffn.experts.3.w1";
const std::string kW2 = "layers.1.ffn.experts.3.w2";
const std::string kW3 = "layers.1.ffn.experts.3.w3";
const std::string kKept = "layers.1.attn.wq_a.weight";
const std::string kIndex = "/model.safetensors.index.json";

struct Mutation {
  std::string name;
  std::function<std::string()> base;           // the good checkpoint to copy
  std::function<void(const std::string&)> edit;  // breaks the copy
  bool with_source;
  std::string check;  // the finding expected
  std::string text;   // and a piece of its message (the tensor or file it names)
};

std::string cast_base() { return converted_tiny(cast_args()); }
std::string modelopt_base() { return converted_tiny(modelopt_args()); }

std::vector<Mutation> mutations() {
  return {
      {"DeletedBlockScale", cast_base, [](const std::string& d) { remove_tensor(d, kW1 + ".weight_scale"); }, false,
       "nvfp4.pairing", kW1 + ".weight"},
      {"DeletedGlobalScale", cast_base, [](const std::string& d) { remove_tensor(d, kW2 + ".weight_scale_2"); }, false,
       "nvfp4.pairing", kW2 + ".weight_scale_2"},
      {"DeletedInputScale", cast_base, [](const std::string& d) { remove_tensor(d, kW2 + ".input_scale"); }, false,
       "nvfp4.input_scale_missing", kW2},
      {"ChangedW3GlobalScale", cast_base,
       [](const std::string& d) { set_f32(d, kW3 + ".weight_scale_2", 2.0f * get_f32(d, kW3 + ".weight_scale_2")); }, false,
       "fusion.global_scale", kW3 + ".weight_scale_2"},
      {"ChangedW3InputScale", cast_base,
       [](const std::string& d) { set_f32(d, kW3 + ".input_scale", 1.5f * get_f32(d, kW3 + ".input_scale")); }, false,
       "fusion.input_scale", kW3 + ".input_scale"},
      {"ZeroGlobalScale", cast_base, [](const std::string& d) { set_f32(d, kW2 + ".weight_scale_2", 0.0f); }, false,
       "scale.global_invalid", kW2 + ".weight_scale_2"},
      {"NaNGlobalScale", cast_base,
       [](const std::string& d) { set_f32(d, kW2 + ".weight_scale_2", std::numeric_limits<float>::quiet_NaN()); }, false,
       "scale.global_invalid", "NaN"},
      {"InfInputScale", cast_base,
       [](const std::string& d) { set_f32(d, kW2 + ".input_scale", std::numeric_limits<float>::infinity()); }, false,
       "scale.input_invalid", kW2 + ".input_scale"},
      {"NegativeInputScale", cast_base, [](const std::string& d) { set_f32(d, kW2 + ".input_scale", -0.01f); }, false,
       "scale.input_invalid", "negative"},
      {"ZeroBlockScale", cast_base, [](const std::string& d) { poke_tensor_byte(d, kW2 + ".weight_scale", 5, 0x00); }, false,
       "scale.block_zero", kW2 + ".weight_scale"},
      {"NaNBlockScale", cast_base, [](const std::string& d) { poke_tensor_byte(d, kW2 + ".weight_scale", 9, 0x7F); }, false,
       "scale.block_nan", "row 1, block 1"},
      {"NegativeBlockScale", cast_base, [](const std::string& d) { poke_tensor_byte(d, kW2 + ".weight_scale", 0, 0xE0); },
       false, "scale.block_negative", kW2 + ".weight_scale"},
      {"WrongBlockScaleShape", cast_base,
       [](const std::string& d) {
         rewrite_shard(shard_holding(d, kW1 + ".weight_scale"), [](io::TensorInfo& t) {
           if (t.name == kW1 + ".weight_scale") t.shape = {64, 16};
           return true;
         });
       },
       false, "nvfp4.pairing", kW1 + ".weight_scale"},
      {"WrongBlockScaleDtype", cast_base,
       [](const std::string& d) {
         rewrite_shard(shard_holding(d, kW1 + ".weight_scale"), [](io::TensorInfo& t) {
           if (t.name == kW1 + ".weight_scale") t.dtype = DType::U8;
           return true;
         });
       },
       false, "nvfp4.pairing", kW1 + ".weight_scale"},
      {"TensorMissingFromIndex", cast_base,
       [](const std::string& d) { edit_json(d + kIndex, [](nlohmann::json& j) { j["weight_map"].erase(kKept); }); }, false,
       "index.tensor_not_in_index", kKept},
      {"IndexedTensorMissingFromShard", cast_base, [](const std::string& d) { remove_tensor(d, kKept, true); }, false,
       "index.tensor_not_in_shard", kKept},
      {"TruncatedShard", cast_base,
       [](const std::string& d) {
         const std::string shard = shard_holding(d, kW1 + ".weight");
         std::filesystem::resize_file(shard, std::filesystem::file_size(shard) - 1000);
       },
       false, "files.shard_unreadable", "model-00002-of-00003.safetensors"},
      {"MissingShard", cast_base, [](const std::string& d) { std::filesystem::remove(shard_holding(d, kW1 + ".weight")); },
       false, "files.shard_missing", "model-00002-of-00003.safetensors"},
      {"DroppedMoeQuantAlgo", cast_base,
       [](const std::string& d) {
         edit_json(d + "/config.json", [](nlohmann::json& j) { j["quantization_config"].erase("moe_quant_algo"); });
       },
       false, "config.field_missing", "moe_quant_algo"},
      {"DroppedWeightBlockSize", cast_base,
       [](const std::string& d) {
         edit_json(d + "/config.json", [](nlohmann::json& j) { j["quantization_config"].erase("weight_block_size"); });
       },
       false, "config.field_missing", "weight_block_size"},
      {"DroppedHfGroupSize", cast_base,
       [](const std::string& d) {
         edit_json(d + "/hf_quant_config.json", [](nlohmann::json& j) { j["quantization"].erase("group_size"); });
       },
       false, "config.field_missing", "group_size"},
      {"WrongGroupSize", cast_base,
       [](const std::string& d) { edit_json(d + "/config.json", [](nlohmann::json& j) { j["quantization_config"]["group_size"] = 32; }); },
       false, "config.group_size", "32"},
      {"DroppedQuantizedLayer", cast_base,
       [](const std::string& d) {
         for (const char* f : {"/config.json", "/hf_quant_config.json"})
           edit_json(d + f, [&](nlohmann::json& j) {
             (std::string(f) == "/config.json" ? j["quantization_config"] : j["quantization"])["quantized_layers"].erase(
                 "layers.1.ffn.experts");
           });
       },
       false, "config.undeclared_nvfp4", kW1 + ".weight"},
      {"ConfigFilesDisagree", cast_base,
       [](const std::string& d) {
         edit_json(d + "/hf_quant_config.json", [](nlohmann::json& j) { j["quantization"]["exclude_modules"].push_back("*.hc_*"); });
       },
       false, "config.mismatch", "exclude_modules"},
      {"ExcludedExperts", cast_base,
       [](const std::string& d) {
         edit_json(d + "/config.json", [](nlohmann::json& j) { j["quantization_config"]["quantized_layers"]["layers.1.ffn.shared_experts"] = {{"quant_algo", "NVFP4"}, {"group_size", 16}}; });
         edit_json(d + "/hf_quant_config.json", [](nlohmann::json& j) { j["quantization"]["quantized_layers"]["layers.1.ffn.shared_experts"] = {{"quant_algo", "NVFP4"}, {"group_size", 16}}; });
       },
       false, "config.declared_not_quantized", "layers.1.ffn.shared_experts"},
      {"LostSourceConfigField", cast_base,
       [](const std::string& d) { edit_json(d + "/config.json", [](nlohmann::json& j) { j.erase("num_hash_layers"); }); },
       true, "source.config_field", "num_hash_layers"},
      {"ChangedKeptTensor", cast_base, [](const std::string& d) { poke_tensor_byte(d, kKept, 17, 0x42); }, true,
       "source.changed", kKept},
      {"DroppedKeptTensor", cast_base, [](const std::string& d) { remove_tensor(d, kKept); }, true, "source.missing", kKept},
      {"FlippedNibble", cast_base, [](const std::string& d) { poke_tensor_byte(d, kW2 + ".weight", 3, 0x77); }, true,
       "numerics.not_lossless", kW2 + ".weight"},
      {"RescaledRequantizedTensor", modelopt_base,
       [](const std::string& d) { set_f32(d, kW2 + ".weight_scale_2", 1.25f * get_f32(d, kW2 + ".weight_scale_2")); }, true,
       "numerics.low_sqnr", kW2 + ".weight"},
  };
}

class VerifyMutation : public ::testing::TestWithParam<Mutation> {};

TEST_P(VerifyMutation, FailsNamingTheProblem) {
  const Mutation& m = GetParam();
  const std::string dir = copy_checkpoint(m.base(), "verify-mut-" + m.name);
  // The copy passes before the edit, so the finding below comes from the edit alone.
  const verify::VerifyReport before = verify_dir(dir, m.with_source);
  ASSERT_TRUE(before.passed()) << describe(before);
  m.edit(dir);
  const verify::VerifyReport r = verify_dir(dir, m.with_source);
  EXPECT_FALSE(r.passed());
  const verify::Finding* f = find_finding(r, m.check, m.text);
  ASSERT_NE(f, nullptr) << "expected [" << m.check << "] naming '" << m.text << "'; got:\n" << describe(r);
  EXPECT_EQ(f->severity, verify::Severity::Fail);
}

INSTANTIATE_TEST_SUITE_P(Broken, VerifyMutation, ::testing::ValuesIn(mutations()),
                         [](const auto& param_info) { return param_info.param.name; });

}  // namespace
}  // namespace fp4kit::testing
