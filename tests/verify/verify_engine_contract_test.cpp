// The engines' loader contracts: every good conversion of the tiny fixture (and ModelOpt's own
// exporter outputs) walks through all three tables with no finding; the ten load failures a team
// recorded converting DeepSeek V4 with a general exporter, reproduced on a copy of a good
// conversion, each fail with the check and the engine named; layouts an engine's table does not
// cover are skipped with the reason; --engine picks engines and verify exits 1 on a violation.
#include <gtest/gtest.h>

#include <filesystem>
#include <vector>

#include "verify/report_json.h"
#include "verify_test_util.h"

namespace fp4kit::testing {
namespace {

const std::string kL1 = "layers.1.";  // compress_ratio 4: compressor and indexer present
const std::string kW1 = "layers.1.ffn.experts.3.w1";
const std::string kW2 = "layers.1.ffn.experts.3.w2";
const std::vector<std::string> kAll = {"vllm", "sglang", "trtllm"};

std::string good() { return converted_tiny(cast_args()); }

const verify::EngineVerdict* verdict(const verify::VerifyReport& r, const std::string& engine) {
  for (const auto& e : r.engines)
    if (e.engine == engine) return &e;
  return nullptr;
}

size_t engine_findings(const verify::VerifyReport& r) {
  size_t n = 0;
  for (const auto& f : r.findings) n += f.check.rfind("engine.", 0) == 0;
  return n;
}

TEST(EngineContract, GoodConversionsLoadInEveryEngine) {
  for (const std::string& args : {cast_args(), modelopt_args()}) {
    const verify::VerifyReport r = verify_dir(converted_tiny(args), false);
    EXPECT_TRUE(r.passed()) << args << "\n" << describe(r);
    EXPECT_EQ(engine_findings(r), 0u) << describe(r);
    ASSERT_EQ(r.engines.size(), 3u);
    for (const auto& e : r.engines) {
      EXPECT_TRUE(e.checked) << e.engine << ": " << e.reason;
      // Every tensor consumed or skipped by the loader (the MTP block: the draft model's), every parameter filled.
      EXPECT_GT(e.tensors_consumed, 400u) << e.engine;
      EXPECT_GT(e.tensors_skipped, 50u) << e.engine;
      EXPECT_EQ(e.tensors_consumed + e.tensors_skipped, r.tensors) << e.engine;
      EXPECT_EQ(e.parameters_filled, e.tensors_consumed) << e.engine;
    }
  }
}

TEST(EngineContract, ModelOptExporterOutputsLoadInEveryEngine) {
  for (const char* mode : {"cast", "requant"}) {
    const verify::VerifyReport r = verify_dir(oracle_dir(mode), false);
    EXPECT_EQ(engine_findings(r), 0u) << mode << "\n" << describe(r);
    for (const auto& e : r.engines) {
      EXPECT_TRUE(e.checked) << e.engine << ": " << e.reason;
      EXPECT_EQ(e.tensors_consumed + e.tensors_skipped, r.tensors) << e.engine;
      EXPECT_EQ(e.parameters_filled, e.tensors_consumed) << e.engine;
    }
  }
}

TEST(EngineContract, WeightOnlyIsSkippedWithTheReason) {
  const verify::VerifyReport r = verify_dir(converted_tiny("--numerics cast --weight-only"), false);
  EXPECT_TRUE(r.passed()) << describe(r);
  for (const std::string& engine : kAll) {
    const verify::EngineVerdict* v = verdict(r, engine);
    ASSERT_NE(v, nullptr) << engine;
    EXPECT_FALSE(v->checked) << engine;
    EXPECT_NE(v->reason.find("weight-only"), std::string::npos) << v->reason;
    EXPECT_NE(v->reason.find("input scale"), std::string::npos) << v->reason;
  }
}

TEST(EngineContract, LayoutsWithoutATableAreSkippedWithTheReason) {
  // --recipe all-linear writes ModelOpt's general layout, which no V4 table covers yet.
  const verify::VerifyReport r = verify_dir(converted_tiny("--recipe all-linear --weight-only --numerics cast"), false);
  EXPECT_EQ(engine_findings(r), 0u) << describe(r);
  ASSERT_EQ(r.engines.size(), 3u);
  for (const auto& e : r.engines) {
    EXPECT_FALSE(e.checked) << e.engine;
    EXPECT_NE(e.reason.find("modelopt-v4-mixed"), std::string::npos) << e.reason;
    EXPECT_NE(e.reason.find("not tabled"), std::string::npos) << e.reason;
  }
}

struct Failure {
  std::string name;
  std::function<void(const std::string&)> edit;
  std::string check;
  std::string text;  // in the message after "<engine>: "
  std::vector<std::string> engines;
};

std::vector<std::byte> zeros(size_t n) { return std::vector<std::byte>(n, std::byte{0}); }

void rename_module(const std::string& d, const std::string& from, const std::string& to) {
  for (const char* s : {".weight", ".weight_scale", ".weight_scale_2", ".input_scale"}) rename_tensor(d, from + s, to + s);
}

// The ten failures as the team recorded them, numbered as in their report.
std::vector<Failure> failures() {
  const std::string wkv = kL1 + "attn.compressor.wkv";
  return {
      {"F1ExpertsNamedGateUpDown", [](const std::string& d) { rename_module(d, kW1, "layers.1.ffn.experts.3.gate_proj"); },
       "engine.tensor_unconsumed", "'layers.1.ffn.experts.3.gate_proj.weight'", kAll},
      {"F1ExpertsNamedGateUpDownLeaveW13Unfilled",
       [](const std::string& d) { rename_module(d, kW1, "layers.1.ffn.experts.3.gate_proj"); }, "engine.parameter_unfilled",
       "w13_weight_scale_2", {"vllm"}},
      {"F2MlpForFfn", [](const std::string& d) { rename_tensor(d, kW2 + ".weight", "layers.1.mlp.experts.3.w2.weight"); },
       "engine.tensor_unconsumed", "'layers.1.mlp.experts.3.w2.weight'", kAll},
      {"F3CompressorInputScale",
       [wkv](const std::string& d) {
         const float one = 1.0f;
         put_tensor(d, wkv + ".weight", wkv + ".input_scale", DType::F32, {}, std::as_bytes(std::span(&one, 1)));
       },
       "engine.tensor_unconsumed", "no slot for '.input_scale'", kAll},
      {"F4PackedWeightIntoBf16Parameter",
       [wkv](const std::string& d) { put_tensor(d, wkv + ".weight", wkv + ".weight", DType::U8, {384, 64}, zeros(384 * 64)); },
       "engine.dtype", "is U8 [384, 64], but", kAll},
      {"F5WeightScaleOnFusedAttention",
       [](const std::string& d) {
         put_tensor(d, kL1 + "attn.wq_a.weight", kL1 + "attn.wq_a.weight_scale", DType::F8_E4M3, {128, 8}, zeros(128 * 8));
       },
       "engine.tensor_unconsumed", "no slot for '.weight_scale'", kAll},
      {"F6BlockScalesPer32",
       [](const std::string& d) { put_tensor(d, kW2 + ".weight", kW2 + ".weight_scale", DType::F8_E4M3, {128, 4}, zeros(128 * 4)); },
       "engine.shape", "w2_weight_scale", {"vllm", "sglang"}},
      {"F6BlockScalesPer32NamesTheBlock",
       [](const std::string& d) { put_tensor(d, kW2 + ".weight", kW2 + ".weight_scale", DType::F8_E4M3, {128, 4}, zeros(128 * 4)); },
       "engine.shape", "expects [128, 8] (one E4M3 scale per 16 values)", kAll},
      {"F7CompressorKvNorm",
       [](const std::string& d) { rename_tensor(d, kL1 + "attn.kv_norm.weight", kL1 + "attn.compressor.kv_norm.weight"); },
       "engine.tensor_unconsumed", "'layers.1.attn.compressor.kv_norm.weight'", kAll},
      {"F7AttnKvNormUnfilled",
       [](const std::string& d) { rename_tensor(d, kL1 + "attn.kv_norm.weight", kL1 + "attn.compressor.kv_norm.weight"); },
       "engine.parameter_unfilled", "'layers.1.attn.kv_norm.weight'", kAll},
      {"F8CompressorPositionBias",
       [](const std::string& d) {
         put_tensor(d, kL1 + "attn.compressor.ape", kL1 + "attn.compressor.position_bias", DType::F32, {4}, zeros(16));
       },
       "engine.tensor_unconsumed", "'layers.1.attn.compressor.position_bias'", kAll},
      {"F9CompressRatiosRenamed",
       [](const std::string& d) {
         edit_json(d + "/config.json", [](nlohmann::json& j) {
           j["compress_rates"] = j["compress_ratios"];
           j.erase("compress_ratios");
         });
       },
       "engine.config_field", "/compress_ratios is missing", kAll},
      {"F9NoScaleFmt",
       [](const std::string& d) { edit_json(d + "/config.json", [](nlohmann::json& j) { j["quantization_config"].erase("scale_fmt"); }); },
       "engine.config_field", "/quantization_config/scale_fmt is missing", {"vllm"}},
      {"F10RopeNestedPerComponent",
       [](const std::string& d) {
         edit_json(d + "/config.json", [](nlohmann::json& j) {
           j["rope_parameters"] = {{"main", j["rope_scaling"]}, {"compress", {{"rope_theta", 160000}}}};
           j.erase("rope_scaling");
         });
       },
       "engine.config_field", "/rope_parameters is nested per component", kAll},
      // Not one of the ten: TensorRT-LLM builds the non-expert modules FP8 block-scaled, and SGLang
      // builds its FP8 + NVFP4 hybrid config, only under quant_method fp8; vLLM also takes deepseek_v4_fp8.
      {"SglangAndTrtllmNeedQuantMethodFp8",
       [](const std::string& d) {
         edit_json(d + "/config.json", [](nlohmann::json& j) { j["quantization_config"]["quant_method"] = "deepseek_v4_fp8"; });
       },
       "engine.config_field", "config.json /quantization_config/quant_method is \"deepseek_v4_fp8\", the loader needs \"fp8\"",
       {"sglang", "trtllm"}},
      // SGLang builds its FP8 + NVFP4 hybrid config only for config.json quant_algo MIXED_PRECISION:
      // NVFP4 with an exclude list leaves plain FP8 and MXFP4 experts.
      {"SglangNeedsMixedPrecisionInConfigJson",
       [](const std::string& d) {
         edit_json(d + "/config.json", [](nlohmann::json& j) { j["quantization_config"]["quant_algo"] = "NVFP4"; });
       },
       "engine.config_field", "config.json /quantization_config/quant_algo is \"NVFP4\"", {"sglang"}},
      // Earlier SGLang versions take the NVFP4 experts' group size from hf_quant_config.json's
      // quantized_layers; without them its experts stay MXFP4.
      {"SglangNeedsHfQuantConfigLayers",
       [](const std::string& d) {
         edit_json(d + "/hf_quant_config.json", [](nlohmann::json& j) { j["quantization"].erase("quantized_layers"); });
       },
       "engine.config_field", "hf_quant_config.json /quantization/quantized_layers is missing", {"sglang", "trtllm"}},
      // The attention's FP8 block scales: TensorRT-LLM fuses wq_a with wkv into fused_a and keeps wo_a
      // as a parameter of the attention, raising KeyError for an FP8 o_a_proj without its scale.
      {"WoAWithoutItsBlockScale", [](const std::string& d) { remove_tensor(d, kL1 + "attn.wo_a.scale"); }, "engine.parameter_unfilled",
       "'layers.1.attn.wo_a.scale'", kAll},
      {"TrtllmOAProjIsAnAttentionParameter", [](const std::string& d) { remove_tensor(d, kL1 + "attn.wo_a.scale"); },
       "engine.parameter_unfilled", "self_attn.o_a_proj (MLA parameter", {"trtllm"}},
      {"TrtllmFusedAWithoutWqAScale", [](const std::string& d) { remove_tensor(d, kL1 + "attn.wq_a.scale"); },
       "engine.parameter_unfilled", "self_attn.kv_a_proj_with_mqa (fused_a: q_a_proj|kv_a_proj_with_mqa", {"trtllm"}},
      {"TrtllmGlobalQuantAlgoOtherThanMixed",
       [](const std::string& d) {
         edit_json(d + "/hf_quant_config.json", [](nlohmann::json& j) { j["quantization"]["quant_algo"] = "NVFP4"; });
       },
       "engine.config_field", "hf_quant_config.json /quantization/quant_algo is \"NVFP4\"", {"trtllm"}},
      // Not one of the ten: a config that would make the model billions of tensors is a finding, not an OOM.
      {"ConfigWithAbsurdExpertCount",
       [](const std::string& d) { edit_json(d + "/config.json", [](nlohmann::json& j) { j["n_routed_experts"] = 1000000000; }); },
       "engine.config_field", "beyond any checkpoint", kAll},
  };
}

class EngineContractFailure : public ::testing::TestWithParam<Failure> {};

TEST_P(EngineContractFailure, IsCaughtWithTheEngineNamed) {
  const Failure& f = GetParam();
  const std::string dir = copy_checkpoint(good(), "engine-" + f.name);
  f.edit(dir);
  expect_caught_by_engines(verify_dir(dir, false), f.check, f.engines, f.text);
}

INSTANTIATE_TEST_SUITE_P(RecordedLoadFailures, EngineContractFailure, ::testing::ValuesIn(failures()),
                         [](const auto& param_info) { return param_info.param.name; });

// vLLM's DeepseekV4FP8Config takes quant_method deepseek_v4_fp8 as well as fp8; TensorRT-LLM does not.
TEST(EngineContract, QuantMethodDeepseekV4Fp8LoadsInVllmOnly) {
  const std::string dir = copy_checkpoint(good(), "engine-v4-fp8-method");
  edit_json(dir + "/config.json", [](nlohmann::json& j) { j["quantization_config"]["quant_method"] = "deepseek_v4_fp8"; });
  const verify::VerifyReport r = verify_dir(dir, false);
  const verify::EngineVerdict* vllm = verdict(r, "vllm");
  ASSERT_NE(vllm, nullptr);
  EXPECT_TRUE(vllm->checked) << vllm->reason;
  EXPECT_EQ(find_engine_finding(r, "engine.config_field", "vllm", ""), nullptr) << describe(r);
  expect_caught_by_engines(r, "engine.config_field", {"sglang", "trtllm"}, "/quantization_config/quant_method");
}

// SGLang's hybrid config takes the NVFP4 group size from config.json's quantization_config (newer
// versions) or from hf_quant_config.json's quantized_layers (earlier ones): a checkpoint needs both.
TEST(EngineContract, SglangReadsTheExpertsGroupFromConfigJsonOrHfQuantConfig) {
  const std::string dir = copy_checkpoint(good(), "engine-v4-sglang-group");
  edit_json(dir + "/config.json", [](nlohmann::json& j) { j["quantization_config"].erase("group_size"); });
  expect_caught_by_engines(verify_dir(dir, false), "engine.config_field", {"sglang"},
                           "config.json /quantization_config/group_size is missing");
  const std::string no_file = copy_checkpoint(good(), "engine-v4-sglang-group-file");
  std::filesystem::remove(no_file + "/hf_quant_config.json");
  const verify::VerifyReport r = verify_dir(no_file, false);
  expect_caught_by_engines(r, "engine.config_field", {"sglang"}, "hf_quant_config.json is missing");
  EXPECT_EQ(find_engine_finding(r, "engine.config_field", "sglang", "config.json /quantization_config/group_size"), nullptr) << describe(r);
}

// TensorRT-LLM takes a layer-only hf_quant_config.json (quantized_layers, no quant_algo): the global
// config then comes from config.json's FP8 block quantization_config.
TEST(EngineContract, TrtllmTakesALayerOnlyHfQuantConfig) {
  const std::string dir = copy_checkpoint(good(), "engine-v4-layer-only");
  edit_json(dir + "/hf_quant_config.json", [](nlohmann::json& j) { j["quantization"].erase("quant_algo"); });
  const verify::VerifyReport r = verify_dir(dir, false);
  const verify::EngineVerdict* trtllm = verdict(r, "trtllm");
  ASSERT_NE(trtllm, nullptr);
  EXPECT_TRUE(trtllm->checked) << trtllm->reason;
  EXPECT_EQ(find_engine_finding(r, "engine.config_field", "trtllm", ""), nullptr) << describe(r);
  edit_json(dir + "/hf_quant_config.json", [](nlohmann::json& j) { j["quantization"].erase("quantized_layers"); });
  expect_caught_by_engines(verify_dir(dir, false), "engine.config_field", {"trtllm"}, "hf_quant_config.json /quantization/quantized_layers is missing");
}

// TensorRT-LLM reads hf_quant_config.json only when it exists: without it config.json's FP8 block
// quantization_config is the global config and the routed experts are NVFP4 by their U8 dtype.
TEST(EngineContract, TrtllmLoadsWithoutHfQuantConfig) {
  const std::string dir = copy_checkpoint(good(), "engine-v4-no-hf-quant");
  std::filesystem::remove(dir + "/hf_quant_config.json");
  const verify::VerifyReport r = verify_dir(dir, false);
  const verify::EngineVerdict* trtllm = verdict(r, "trtllm");
  ASSERT_NE(trtllm, nullptr);
  EXPECT_TRUE(trtllm->checked) << trtllm->reason;
  EXPECT_EQ(find_engine_finding(r, "engine.config_field", "trtllm", ""), nullptr) << describe(r);
  const CommandResult cli = run_fp4kit("verify " + dir + " --structure-only --engine trtllm");
  EXPECT_EQ(cli.exit_code, 0) << cli.output;
  // config.json is then all it has: its block size still has to be [128, 128].
  edit_json(dir + "/config.json", [](nlohmann::json& j) { j["quantization_config"]["weight_block_size"] = {64, 64}; });
  expect_caught_by_engines(verify_dir(dir, false), "engine.config_field", {"trtllm"},
                           "config.json /quantization_config/weight_block_size is [64,64]");
}

TEST(EngineContract, EngineFlagPicksEnginesAndExitCodesFollow) {
  const CommandResult ok = run_fp4kit("verify " + good() + " --structure-only --engine vllm --json -");
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  const size_t brace = ok.output.find('{');
  ASSERT_NE(brace, std::string::npos) << ok.output;
  const nlohmann::json j = nlohmann::json::parse(ok.output.substr(brace));
  ASSERT_EQ(j["engines"].size(), 1u) << j["engines"].dump();
  EXPECT_EQ(j["engines"][0]["engine"], "vllm");
  EXPECT_EQ(j["engines"][0]["checked"], true);

  const std::string dir = copy_checkpoint(good(), "engine-cli");
  edit_json(dir + "/config.json", [](nlohmann::json& c) { c["quantization_config"].erase("scale_fmt"); });
  // scale_fmt is in vLLM's table only: vLLM fails it, SGLang alone passes it.
  const CommandResult vllm = run_fp4kit("verify " + dir + " --structure-only --engine vllm");
  EXPECT_EQ(vllm.exit_code, 1) << vllm.output;
  EXPECT_NE(vllm.output.find("[engine.config_field] vllm: config.json /quantization_config/scale_fmt is missing"), std::string::npos)
      << vllm.output;
  const CommandResult sglang = run_fp4kit("verify " + dir + " --structure-only --engine sglang");
  EXPECT_EQ(sglang.exit_code, 0) << sglang.output;
  const CommandResult bad = run_fp4kit("verify " + dir + " --engine llama.cpp");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
}

}  // namespace
}  // namespace fp4kit::testing
