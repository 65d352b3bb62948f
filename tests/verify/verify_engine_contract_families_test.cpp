// The engines' loader contracts for the families with Hugging Face names: every good conversion of
// the tiny DeepSeek V3 and Llama checkpoints (ModelOpt's general layout and compressed-tensors',
// weight-only and with input scales) walks through every engine whose table covers it with no
// finding; an engine that refuses the layout fails it; the others are skipped with the reason; and
// checkpoints broken the ways loaders reject them fail with the check and the engine named, and
// verify exits 1.
#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <vector>

#include "io/safetensors_file.h"
#include "io/safetensors_writer.h"
#include "verify_test_util.h"

namespace fp4kit::testing {
namespace {

const std::vector<std::string> kAll = {"vllm", "sglang", "trtllm"};
const std::string kL0 = "model.layers.0.";
const std::string kExpert = "model.layers.1.mlp.experts.2.";

std::string family_dir(const std::string& family) { return test_data("families/" + family); }

// An input amax for every GEMM weight of the source's decoder layers (distinct values, so fused siblings differ
// before the converter shares their scales).
std::string family_calibration(const std::string& family) {
  static std::mutex mutex;
  static std::map<std::string, std::string> done;
  std::lock_guard lock(mutex);
  if (const auto it = done.find(family); it != done.end()) return it->second;
  std::vector<std::string> modules;
  for (const auto& e : std::filesystem::directory_iterator(family_dir(family))) {
    if (e.path().extension() != ".safetensors") continue;
    const io::SafetensorsFile file = io::SafetensorsFile::open(e.path().string());
    for (const io::TensorInfo& t : file.header().tensors)
      if (t.name.ends_with(".weight") && t.shape.size() == 2 && t.name.starts_with("model.layers.")) {
        const std::string module = t.name.substr(0, t.name.size() - 7);
        // Never quantized (routers, the MTP layer's embedding, projection and head): convert refuses an amax for them.
        if (!module.ends_with(".mlp.gate") && !std::regex_search(module, std::regex(R"(eh_proj|shared_head|embed_tokens)")))
          modules.push_back(module);
      }
  }
  const std::string path = shared_temp_dir("families-calib") + "/" + family + ".safetensors";
  io::SafetensorsWriter w(path);
  for (const std::string& m : modules) w.declare(m + ".input_amax", DType::F32, {});
  w.begin();
  float v = 1.0f;
  for (const io::TensorInfo& t : w.layout()) {
    v += 0.25f;
    w.write(t.name, std::as_bytes(std::span(&v, 1)));
  }
  w.commit();
  return done[family] = path;
}

std::string converted_family(const std::string& family, const std::string& args) {
  static std::mutex mutex;
  static std::map<std::string, std::string> done;
  const std::string calib = args.find("--weight-only") == std::string::npos ? " --calib " + family_calibration(family) : "";
  std::lock_guard lock(mutex);
  const std::string key = family + " " + args;
  if (const auto it = done.find(key); it != done.end()) return it->second;
  const std::string out = shared_temp_dir("families-verify") + "/out";
  const CommandResult r = run_fp4kit("convert " + family_dir(family) + " " + out + " --quiet " + args + calib);
  EXPECT_EQ(r.exit_code, 0) << key << "\n" << r.output;
  return done[key] = out;
}

struct Conversion {
  std::string family, args;
  std::vector<std::string> walked;        // the engines whose tables cover the result
  std::vector<std::string> refused = {};  // the engines that refuse its layout
};

// The conversions of these fixtures the test suite makes (tests/convert) and the calibrated and
// compressed-tensors variants. (All-linear DeepSeek V3, weight-only in ModelOpt's layout or in
// compressed-tensors', loads in vLLM alone: DeepseekV3MlaProjectionsInNvfp4LoadOnlyInVllm.)
std::vector<Conversion> conversions() {
  const std::vector<std::string> vllm_sglang = {"vllm", "sglang"}, vllm_trtllm = {"vllm", "trtllm"}, trtllm = {"trtllm"};
  return {
      {"dsv3-tiny", "--weight-only", vllm_trtllm},
      {"dsv3-tiny", "--weight-only --include-mtp-experts", vllm_trtllm},
      {"dsv3-tiny", "", kAll},
      {"dsv3-tiny", "--format compressed-tensors", vllm_sglang, trtllm},
      {"llama-tiny", "--recipe all-linear", kAll},
      {"llama-tiny", "--recipe all-linear --weight-only", vllm_trtllm},
      {"llama-tiny", "--recipe all-linear --weight-only --scales four-over-six", vllm_trtllm},
      {"llama-tiny", "--recipe all-linear --format compressed-tensors --weight-only", vllm_sglang, trtllm},
      {"llama-tiny", "--recipe all-linear --format compressed-tensors", vllm_sglang, trtllm},
      {"qwen3-moe-tiny", "--weight-only", vllm_trtllm},
      {"qwen3-moe-tiny", "--recipe all-linear --format compressed-tensors --weight-only", vllm_sglang, trtllm},
      {"qwen3-moe-tiny", "--recipe all-linear --format compressed-tensors", vllm_sglang, trtllm},
  };
}

size_t engine_findings(const verify::VerifyReport& r) {
  size_t n = 0;
  for (const auto& f : r.findings) n += f.check.rfind("engine.", 0) == 0;
  return n;
}

// Findings of `check` from `engine`'s walk ("" for every engine check).
size_t engine_findings(const verify::VerifyReport& r, const std::string& engine, const std::string& check = "") {
  size_t n = 0;
  for (const auto& f : r.findings)
    n += f.check.rfind("engine.", 0) == 0 && (check.empty() || f.check == check) && f.message.rfind(engine + ": ", 0) == 0;
  return n;
}

TEST(EngineContractFamilies, GoodConversionsLoadInEveryEngineThatTablesThem) {
  for (const Conversion& c : conversions()) {
    SCOPED_TRACE(c.family + " " + c.args);
    const verify::VerifyReport r = verify_dir(converted_family(c.family, c.args), false);
    // By default an engine that refuses the layout is skipped with the reason, as one that does
    // not table it; named, it is the one failure.
    EXPECT_TRUE(r.passed()) << describe(r);
    EXPECT_EQ(engine_findings(r), 0u) << describe(r);
    ASSERT_EQ(r.engines.size(), 3u);
    for (const auto& e : r.engines) {
      const bool walked = std::find(c.walked.begin(), c.walked.end(), e.engine) != c.walked.end();
      const bool refused = std::find(c.refused.begin(), c.refused.end(), e.engine) != c.refused.end();
      EXPECT_EQ(e.checked, walked) << e.engine << ": " << e.reason;
      if (refused) {
        EXPECT_NE(e.reason.find("refuses this layout"), std::string::npos) << e.engine << ": " << e.reason;
        continue;
      }
      if (!e.checked) {
        EXPECT_FALSE(e.reason.empty()) << e.engine;
        continue;
      }
      // Every tensor consumed or skipped (the MTP layer: the draft model's), every one filling a parameter.
      EXPECT_EQ(e.tensors_consumed + e.tensors_skipped, r.tensors) << e.engine;
      EXPECT_EQ(e.parameters_filled, e.tensors_consumed) << e.engine;
      EXPECT_GT(e.tensors_consumed, 20u) << e.engine;
      EXPECT_EQ(e.tensors_skipped > 0, c.family == "dsv3-tiny") << e.engine;
    }
  }
}

// SGLang's ModelOpt config raises for W4A16_NVFP4; vLLM and TensorRT-LLM load it.
TEST(EngineContractFamilies, SkippedEnginesSayWhy) {
  const verify::VerifyReport r = verify_dir(converted_family("llama-tiny", "--recipe all-linear --weight-only"), false);
  ASSERT_EQ(r.engines.size(), 3u);
  for (const auto& e : r.engines) {
    EXPECT_EQ(e.checked, e.engine != "sglang") << e.engine << ": " << e.reason;
    if (e.engine == "sglang") {
      EXPECT_NE(e.reason.find("W4A16_NVFP4 raises"), std::string::npos) << e.reason;
    }
  }
}

// TensorRT-LLM parses a compressed-tensors config but its Llama and DeepSeek V3 loaders read only
// ModelOpt's tensor names, and its parser raises on a weight-only group: it refuses the layout, both
// flavours, where vLLM and SGLang load it. The same model in ModelOpt's layout it loads.
TEST(EngineContractFamilies, TrtllmRefusesCompressedTensors) {
  for (const char* family : {"llama-tiny", "dsv3-tiny", "qwen3-moe-tiny"}) {
    for (const bool weight_only : {false, true}) {
      const std::string args = std::string(family == std::string("dsv3-tiny") ? "" : "--recipe all-linear ") +
                               "--format compressed-tensors" + (weight_only ? " --weight-only" : "");
      SCOPED_TRACE(std::string(family) + " " + args);
      verify::VerifyOptions o;
      o.checkpoint = converted_family(family, args);
      o.numerics = false;
      o.engines_named = true;
      const verify::VerifyReport r = verify::verify_checkpoint(o);
      expect_caught_by_engines(r, "engine.layout_refused", {"trtllm"},
                               weight_only ? "compressed-tensors weight-only NVFP4 does not load: " : "compressed-tensors NVFP4 does not load: ");
      EXPECT_EQ(engine_findings(r, "trtllm"), 1u) << describe(r);
      EXPECT_EQ(engine_findings(r, "vllm"), 0u) << describe(r);
      EXPECT_EQ(engine_findings(r, "sglang"), 0u) << describe(r);
    }
  }
  const verify::VerifyReport modelopt = verify_dir(converted_family("llama-tiny", "--recipe all-linear"), false);
  EXPECT_EQ(engine_findings(modelopt, "trtllm", "engine.layout_refused"), 0u) << describe(modelopt);
  EXPECT_TRUE(modelopt.passed()) << describe(modelopt);
}

void set_scale(const std::string& dir, const std::string& name, float factor) { set_f32(dir, name, factor * get_f32(dir, name)); }

std::vector<std::byte> zeros(size_t n) { return std::vector<std::byte>(n, std::byte{0}); }

// A 0-d F32 scale rewritten as the same value in a [1] tensor.
void reshape_scalar_to_one(const std::string& dir, const std::string& name) {
  const float v = get_f32(dir, name);
  put_tensor(dir, name, name, DType::F32, {1}, std::as_bytes(std::span(&v, 1)));
}

struct Failure {
  std::string name, family, args;
  std::function<void(const std::string&)> edit;
  std::string check;
  std::string text;  // in the message after "<engine>: "
  std::vector<std::string> engines;
};


std::vector<Failure> failures() {
  const std::string modelopt = "--recipe all-linear", ct = "--recipe all-linear --format compressed-tensors";
  return {
      {"LlamaQkvSiblingWithAnotherGlobalScale", "llama-tiny", modelopt,
       [](const std::string& d) { set_scale(d, kL0 + "self_attn.k_proj.weight_scale_2", 2.0f); }, "engine.fused_scale",
       "self_attn.qkv_proj", kAll},
      {"LlamaGateUpSiblingWithAnotherInputScale", "llama-tiny", modelopt,
       [](const std::string& d) { set_scale(d, kL0 + "mlp.up_proj.input_scale", 1.5f); }, "engine.fused_scale", "mlp.gate_up_proj", kAll},
      {"DeepseekV3FusedQkvASiblingWithAnotherGlobalScale", "dsv3-tiny", modelopt,
       [](const std::string& d) { set_scale(d, kL0 + "self_attn.kv_a_proj_with_mqa.weight_scale_2", 0.5f); }, "engine.fused_scale",
       "'model.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_2' is", {"vllm", "sglang"}},
      {"DeepseekV3ExpertW3WithAnotherGlobalScale", "dsv3-tiny", "",
       [](const std::string& d) { set_scale(d, kExpert + "up_proj.weight_scale_2", 2.0f); }, "engine.fused_scale", "w13", {"vllm"}},
      {"LlamaMissingInputScale", "llama-tiny", modelopt, [](const std::string& d) { remove_tensor(d, kL0 + "mlp.down_proj.input_scale"); },
       "engine.parameter_unfilled", "'model.layers.0.mlp.down_proj.input_scale'", kAll},
      {"DeepseekV3RenamedExpertTensor", "dsv3-tiny", "",
       [](const std::string& d) { rename_tensor(d, kExpert + "down_proj.weight", kExpert + "w2.weight"); }, "engine.tensor_unconsumed",
       "'model.layers.1.mlp.experts.2.w2.weight'", kAll},
      {"DeepseekV3RenamedExpertLeavesItsParameterUnfilled", "dsv3-tiny", "",
       [](const std::string& d) { rename_tensor(d, kExpert + "down_proj.weight", kExpert + "w2.weight"); }, "engine.parameter_unfilled",
       "'model.layers.1.mlp.experts.2.down_proj.weight'", kAll},
      {"MissingQuantAlgoInConfig", "llama-tiny", modelopt,
       [](const std::string& d) { edit_json(d + "/config.json", [](nlohmann::json& j) { j["quantization_config"].erase("quant_algo"); }); },
       "engine.config_field", "config.json /quantization_config/quant_algo is missing", {"vllm", "sglang"}},
      {"WithoutInlineConfigHfQuantConfigNeedsGroupSize", "llama-tiny", "--recipe all-linear --weight-only",
       [](const std::string& d) {
         edit_json(d + "/config.json", [](nlohmann::json& j) { j.erase("quantization_config"); });
         edit_json(d + "/hf_quant_config.json", [](nlohmann::json& j) { j["quantization"].erase("group_size"); });
       },
       "engine.config_field", "hf_quant_config.json /quantization/group_size is missing", {"vllm"}},
      {"BlockScalesPer32", "llama-tiny", modelopt,
       [](const std::string& d) {
         put_tensor(d, kL0 + "mlp.down_proj.weight", kL0 + "mlp.down_proj.weight_scale", DType::F8_E4M3, {64, 5}, zeros(64 * 5));
       },
       "engine.shape", "expects [64, 10] (one E4M3 scale per 16 values)", kAll},
      {"ScaleWithWrongDtype", "llama-tiny", modelopt,
       [](const std::string& d) {
         put_tensor(d, kL0 + "self_attn.o_proj.weight", kL0 + "self_attn.o_proj.weight_scale_2", DType::BF16, {}, zeros(2));
       },
       "engine.dtype", "is BF16 [], but", kAll},
      {"DeepseekV3RouterBiasWithoutNoauxTc", "dsv3-tiny", "--weight-only",
       [](const std::string& d) { edit_json(d + "/config.json", [](nlohmann::json& j) { j.erase("topk_method"); }); },
       "engine.tensor_unconsumed", "topk_method", {"vllm"}},
      {"WeightOnlyCompressedTensorsWithInputScale", "llama-tiny", ct + " --weight-only",
       [](const std::string& d) {
         const float one = 1.0f;
         put_tensor(d, kL0 + "self_attn.o_proj.weight_packed", kL0 + "self_attn.o_proj.input_global_scale", DType::F32, {1},
                    std::as_bytes(std::span(&one, 1)));
       },
       "engine.tensor_unconsumed", "no slot for '.input_global_scale'", {"vllm", "sglang"}},
      {"WeightOnlyCompressedTensorsExpertMissingGlobalScale", "qwen3-moe-tiny", ct + " --weight-only",
       [](const std::string& d) { remove_tensor(d, kExpert + "down_proj.weight_global_scale"); }, "engine.parameter_unfilled",
       "'model.layers.1.mlp.experts.2.down_proj.weight_global_scale'", {"vllm", "sglang"}},
      {"SglangQuantMethodModelOptFp8", "llama-tiny", modelopt,
       [](const std::string& d) {
         edit_json(d + "/config.json", [](nlohmann::json& j) { j["quantization_config"]["quant_method"] = "modelopt_fp8"; });
       },
       "engine.config_field", "config.json /quantization_config/quant_method is \"modelopt_fp8\"", {"sglang"}},
      {"VllmQuantMethodNotModelOpt", "llama-tiny", modelopt,
       [](const std::string& d) { edit_json(d + "/config.json", [](nlohmann::json& j) { j["quantization_config"]["quant_method"] = "nvfp4"; }); },
       "engine.config_field", "config.json /quantization_config/quant_method is \"nvfp4\", the loader needs a string starting with \"modelopt\"",
       {"vllm"}},
      {"CompressedTensorsMissingInputGlobalScale", "dsv3-tiny", "--format compressed-tensors",
       [](const std::string& d) { remove_tensor(d, kExpert + "gate_proj.input_global_scale"); }, "engine.parameter_unfilled",
       "input_global_scale", {"vllm", "sglang"}},
      {"CompressedTensorsExpertGlobalScaleUnderModelOptName", "qwen3-moe-tiny", ct,
       [](const std::string& d) { rename_tensor(d, kExpert + "down_proj.weight_global_scale", kExpert + "down_proj.weight_scale_2"); },
       "engine.tensor_unconsumed", "'model.layers.1.mlp.experts.2.down_proj.weight_scale_2'", {"vllm", "sglang"}},
      {"CompressedTensorsPackedWeightAsModelOptWeight", "llama-tiny", ct,
       [](const std::string& d) { rename_tensor(d, kL0 + "self_attn.o_proj.weight_packed", kL0 + "self_attn.o_proj.weight"); },
       "engine.parameter_unfilled", "'model.layers.0.self_attn.o_proj.weight_packed'", {"vllm", "sglang"}},
      {"DeepseekV3FusedQkvAScaleShapedOne", "dsv3-tiny", modelopt,
       [](const std::string& d) { reshape_scalar_to_one(d, kL0 + "self_attn.q_a_proj.weight_scale_2"); }, "engine.shape",
       "has shape [1], but self_attn.fused_qkv_a_proj_with_mqa", {"sglang"}},
      {"ConfigWithAbsurdLayerCount", "llama-tiny", modelopt,
       [](const std::string& d) { edit_json(d + "/config.json", [](nlohmann::json& j) { j["num_hidden_layers"] = 1000000000; }); },
       "engine.config_field", "num_hidden_layers", kAll},
  };
}

// A copy of every file of a converted checkpoint (its single shard may be model.safetensors).
std::string copy_converted(const std::string& dir, const std::string& tag) {
  const std::string out = fresh_temp_dir(tag);
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file() && e.path().filename().string()[0] != '.') std::filesystem::copy_file(e.path(), out + "/" + e.path().filename().string());
  return out;
}

class EngineContractFamilyFailure : public ::testing::TestWithParam<Failure> {};

TEST_P(EngineContractFamilyFailure, IsCaughtWithTheEngineNamed) {
  const Failure& f = GetParam();
  const std::string dir = copy_converted(converted_family(f.family, f.args), "engine-family-" + f.name);
  {
    // The edit, not the base, is what fails. (A DeepSeek V3 all-linear base already fails SGLang and
    // TensorRT-LLM on its NVFP4 MLA projections: only the check under test is held to zero there.)
    const verify::VerifyReport before = verify_dir(dir, false);
    EXPECT_EQ(engine_findings(before, "vllm"), 0u) << describe(before);
    for (const std::string& engine : f.engines) ASSERT_EQ(engine_findings(before, engine, f.check), 0u) << engine << describe(before);
  }
  f.edit(dir);
  expect_caught_by_engines(verify_dir(dir, false), f.check, f.engines, f.text);
}

INSTANTIATE_TEST_SUITE_P(LoadFailures, EngineContractFamilyFailure, ::testing::ValuesIn(failures()),
                         [](const auto& param_info) { return param_info.param.name; });

// vLLM dequantizes an NVFP4 kv_b_proj and fuses q_a_proj / kv_a_proj_with_mqa with their scales;
// SGLang's MLA takes kv_b_proj.weight as it is, and TensorRT-LLM reads fused_a and kv_b_proj as plain
// (or FP8 block) weights: all-linear DeepSeek V3 loads only in vLLM, the experts-only recipe in all.
TEST(EngineContractFamilies, DeepseekV3MlaProjectionsInNvfp4LoadOnlyInVllm) {
  // compressed-tensors all-linear: SGLang reads kv_b_proj as a plain weight too, and its [1]-shaped
  // q_a_proj / kv_a_proj_with_mqa global scales cannot share fused_qkv_a_proj_with_mqa's one slot.
  // Weight-only the same: CompressedTensorsW4A16Fp4 builds the same parameters but the input scales.
  for (const char* args : {"--recipe all-linear --format compressed-tensors", "--recipe all-linear --format compressed-tensors --weight-only"}) {
    SCOPED_TRACE(args);
    const verify::VerifyReport ct = verify_dir(converted_family("dsv3-tiny", args), false);
    EXPECT_EQ(engine_findings(ct, "vllm"), 0u) << describe(ct);
    expect_caught_by_engines(ct, "engine.tensor_unconsumed", {"sglang"}, "'model.layers.0.self_attn.kv_b_proj.weight_packed'");
    expect_caught_by_engines(ct, "engine.parameter_unfilled", {"sglang"}, "'model.layers.0.self_attn.kv_b_proj.weight'");
    expect_caught_by_engines(ct, "engine.shape", {"sglang"}, "'model.layers.0.self_attn.q_a_proj.weight_global_scale' has shape [1]");
  }

  // ModelOpt weight-only all-linear: TensorRT-LLM's fused_a and kv_b_proj take no NVFP4 scale either
  // (SGLang refuses W4A16_NVFP4 and is skipped).
  for (const char* args : {"--recipe all-linear --weight-only", "--recipe all-linear --weight-only --scales mse"}) {
    SCOPED_TRACE(args);
    const verify::VerifyReport a16 = verify_dir(converted_family("dsv3-tiny", args), false);
    EXPECT_EQ(engine_findings(a16, "vllm"), 0u) << describe(a16);
    EXPECT_EQ(engine_findings(a16, "sglang"), 0u) << describe(a16);
    expect_caught_by_engines(a16, "engine.tensor_unconsumed", {"trtllm"}, "'model.layers.0.self_attn.kv_b_proj.weight_scale'");
    expect_caught_by_engines(a16, "engine.dtype", {"trtllm"}, "'model.layers.0.self_attn.kv_a_proj_with_mqa.weight' is U8");
    EXPECT_EQ(find_engine_finding(a16, "engine.tensor_unconsumed", "trtllm", "o_proj"), nullptr) << describe(a16);
  }

  const verify::VerifyReport r = verify_dir(converted_family("dsv3-tiny", "--recipe all-linear"), false);
  EXPECT_FALSE(r.passed());
  EXPECT_EQ(engine_findings(r, "vllm"), 0u) << describe(r);
  for (const auto& e : r.engines) EXPECT_TRUE(e.checked) << e.engine << ": " << e.reason;
  expect_caught_by_engines(r, "engine.tensor_unconsumed", {"sglang", "trtllm"}, "'model.layers.0.self_attn.kv_b_proj.weight_scale'");
  expect_caught_by_engines(r, "engine.dtype", {"sglang", "trtllm"}, "'model.layers.0.self_attn.kv_b_proj.weight' is U8");
  expect_caught_by_engines(r, "engine.tensor_unconsumed", {"trtllm"}, "'model.layers.0.self_attn.q_a_proj.input_scale'");
  expect_caught_by_engines(r, "engine.dtype", {"trtllm"}, "'model.layers.0.self_attn.kv_a_proj_with_mqa.weight' is U8");
  EXPECT_EQ(find_engine_finding(r, "engine.tensor_unconsumed", "sglang", "q_a_proj"), nullptr) << describe(r);
  // The other linears load quantized in every engine, and TensorRT-LLM never reads fused_a's scales.
  for (const std::string& engine : kAll) {
    EXPECT_EQ(find_engine_finding(r, "engine.tensor_unconsumed", engine, "o_proj"), nullptr) << engine;
    EXPECT_EQ(find_engine_finding(r, "engine.tensor_unconsumed", engine, "q_b_proj"), nullptr) << engine;
  }
  EXPECT_EQ(engine_findings(r, "trtllm", "engine.fused_scale"), 0u) << describe(r);
}

// TensorRT-LLM's W4A16_NVFP4 linear has no input_scale parameter and fails to load one; its W4A16
// fused MoE reads an expert's input_scale when there is one. vLLM's W4A16 keeps a slot for both.
TEST(EngineContractFamilies, TrtllmW4a16LinearTakesNoInputScale) {
  const float one = 1.0f;
  const std::string dir = copy_converted(converted_family("llama-tiny", "--recipe all-linear --weight-only"), "engine-family-w4a16-input");
  put_tensor(dir, kL0 + "mlp.down_proj.weight", kL0 + "mlp.down_proj.input_scale", DType::F32, {}, std::as_bytes(std::span(&one, 1)));
  const verify::VerifyReport r = verify_dir(dir, false);
  expect_caught_by_engines(r, "engine.tensor_unconsumed", {"trtllm"}, "'model.layers.0.mlp.down_proj.input_scale'");
  expect_caught_by_engines(r, "engine.tensor_unconsumed", {"trtllm"}, "no input scale parameter");
  EXPECT_EQ(engine_findings(r, "trtllm"), 1u) << describe(r);
  EXPECT_EQ(engine_findings(r, "vllm"), 0u) << describe(r);

  const std::string moe = copy_converted(converted_family("qwen3-moe-tiny", "--weight-only"), "engine-family-w4a16-expert-input");
  put_tensor(moe, kExpert + "down_proj.weight", kExpert + "down_proj.input_scale", DType::F32, {}, std::as_bytes(std::span(&one, 1)));
  const verify::VerifyReport m = verify_dir(moe, false);
  EXPECT_EQ(engine_findings(m), 0u) << describe(m);
  for (const auto& e : m.engines)
    if (e.engine != "sglang") {
      EXPECT_TRUE(e.checked) << e.engine << ": " << e.reason;
    }
}

// SGLang's ModelOptFp4Config reads hf_quant_config.json's quant_algo and group_size and defaults the
// rest; vLLM's also requires kv_cache_quant_algo; TensorRT-LLM reads only that file's quant_algo.
TEST(EngineContractFamilies, HfQuantConfigFieldsFollowEachEngine) {
  const std::string dir = copy_converted(converted_family("llama-tiny", "--recipe all-linear"), "engine-family-hf-quant");
  edit_json(dir + "/config.json", [](nlohmann::json& j) { j.erase("quantization_config"); });
  edit_json(dir + "/hf_quant_config.json", [](nlohmann::json& j) { j["quantization"].erase("kv_cache_quant_algo"); });
  const verify::VerifyReport no_kv = verify_dir(dir, false);
  expect_caught_by_engines(no_kv, "engine.config_field", {"vllm"}, "hf_quant_config.json /quantization/kv_cache_quant_algo is missing");
  EXPECT_EQ(engine_findings(no_kv, "sglang"), 0u) << describe(no_kv);
  EXPECT_EQ(engine_findings(no_kv, "trtllm"), 0u) << describe(no_kv);
  edit_json(dir + "/hf_quant_config.json", [](nlohmann::json& j) { j["quantization"].erase("group_size"); });
  expect_caught_by_engines(verify_dir(dir, false), "engine.config_field", {"vllm", "sglang"},
                           "hf_quant_config.json /quantization/group_size is missing");
  EXPECT_EQ(engine_findings(verify_dir(dir, false), "trtllm"), 0u);
}

// SGLang takes the fused q_a_proj / kv_a_proj_with_mqa per-tensor scales only 0-d; vLLM's
// MergedColumnParallelLinear takes [] or [1], and TensorRT-LLM reads no NVFP4 scale of fused_a.
TEST(EngineContractFamilies, OnlySglangRejectsOneElementFusedQkvAScales) {
  const std::string dir = copy_converted(converted_family("dsv3-tiny", "--recipe all-linear"), "engine-family-qkv-a-shape");
  for (const char* module : {"q_a_proj", "kv_a_proj_with_mqa"})
    for (const char* scale : {".weight_scale_2", ".input_scale"}) reshape_scalar_to_one(dir, kL0 + "self_attn." + module + scale);
  const verify::VerifyReport r = verify_dir(dir, false);
  EXPECT_EQ(engine_findings(r, "vllm"), 0u) << describe(r);
  EXPECT_EQ(engine_findings(r, "trtllm", "engine.shape"), 0u) << describe(r);
  EXPECT_EQ(engine_findings(r, "sglang", "engine.shape"), 4u) << describe(r);
  expect_caught_by_engines(r, "engine.shape", {"sglang"}, "two 0-d scales load as q_a_proj's");
}

// SGLang reads an inline quantization_config without quant_method as ModelOpt's; vLLM needs quant_method modelopt.
TEST(EngineContractFamilies, SglangReadsAnInlineConfigWithoutQuantMethodAsModelOpt) {
  const std::string dir = copy_converted(converted_family("llama-tiny", "--recipe all-linear"), "engine-family-no-quant-method");
  edit_json(dir + "/config.json", [](nlohmann::json& j) { j["quantization_config"].erase("quant_method"); });
  const verify::VerifyReport r = verify_dir(dir, false);
  expect_caught_by_engines(r, "engine.config_field", {"vllm"}, "config.json /quantization_config/quant_method is missing");
  EXPECT_EQ(engine_findings(r, "sglang"), 0u) << describe(r);
  for (const auto& e : r.engines) EXPECT_TRUE(e.checked) << e.engine << ": " << e.reason;
}

// quant_method modelopt_fp4 names ModelOptFp4Config in SGLang and ModelOptNvFp4Config in vLLM, whose
// override also claims any quant_method starting with modelopt when quant_algo holds FP4.
TEST(EngineContractFamilies, VllmAndSglangTakeQuantMethodModelOptFp4) {
  const std::string dir = copy_converted(converted_family("llama-tiny", "--recipe all-linear"), "engine-family-modelopt-fp4");
  edit_json(dir + "/config.json", [](nlohmann::json& j) { j["quantization_config"]["quant_method"] = "modelopt_fp4"; });
  const verify::VerifyReport r = verify_dir(dir, false);
  for (const auto& e : r.engines) EXPECT_TRUE(e.checked) << e.engine << ": " << e.reason;
  EXPECT_TRUE(r.passed()) << describe(r);
  EXPECT_EQ(engine_findings(r), 0u) << describe(r);
  edit_json(dir + "/config.json", [](nlohmann::json& j) { j["quantization_config"]["quant_method"] = "modelopt_fp8"; });
  const verify::VerifyReport fp8 = verify_dir(dir, false);
  EXPECT_EQ(engine_findings(fp8, "vllm"), 0u) << describe(fp8);
  expect_caught_by_engines(fp8, "engine.config_field", {"sglang"}, "/quantization_config/quant_method is \"modelopt_fp8\"");
}

TEST(EngineContractFamilies, VerifyExitsOneNamingTheEngine) {
  const std::string dir = copy_converted(converted_family("llama-tiny", "--recipe all-linear"), "engine-family-cli");
  set_scale(dir, kL0 + "self_attn.v_proj.weight_scale_2", 4.0f);
  const CommandResult bad = run_fp4kit("verify " + dir + " --structure-only --engine trtllm");
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_NE(bad.output.find("[engine.fused_scale] trtllm: "), std::string::npos) << bad.output;
  const CommandResult good = run_fp4kit("verify " + converted_family("llama-tiny", "--recipe all-linear") + " --structure-only --engine sglang");
  EXPECT_EQ(good.exit_code, 0) << good.output;
  for (const char* family : {"llama-tiny", "qwen3-moe-tiny"}) {
    const std::string ct = converted_family(family, "--recipe all-linear --format compressed-tensors --weight-only");
    const CommandResult a16 = run_fp4kit("verify " + ct + " --structure-only --engine vllm --engine sglang");
    EXPECT_EQ(a16.exit_code, 0) << family << "\n" << a16.output;
    const CommandResult trtllm = run_fp4kit("verify " + ct + " --structure-only --engine trtllm");
    EXPECT_EQ(trtllm.exit_code, 1) << family << "\n" << trtllm.output;
    EXPECT_NE(trtllm.output.find("[engine.layout_refused] trtllm: "), std::string::npos) << trtllm.output;
  }
}

}  // namespace
}  // namespace fp4kit::testing
