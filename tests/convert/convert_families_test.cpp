// `fp4kit convert` on other model families than DeepSeek V4, on tiny checkpoints that Hugging Face
// transformers wrote (tests/data/families, scripts/reference/family_fixtures.py): Llama (dense,
// grouped-query attention), Qwen3-MoE (experts under Hugging Face names, router mlp.gate) and
// DeepSeek V3 (FP8 blocks with F32 scales, MLA, an MTP layer, fused partners in different shards).
// Checked: which tensors each recipe converts, the layout files, the fused groups' shared scales,
// the NVFP4 bytes against an independent computation with ModelOpt's numerics, kept FP8 blocks
// written as DeepSeek's official BF16 dequant, `fp4kit verify --source`, and kill + resume.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "convert/convert_plan.h"
#include "convert/convert_test_util.h"
#include "convert/dequant_test_util.h"
#include "convert/output_directory.h"
#include "formats/bf16.h"
#include "formats/fp8_block.h"
#include "formats/nvfp4.h"
#include "io/safetensors_writer.h"
#include "models/fused_groups.h"
#include "models/model_family.h"
#include "run_command.h"

namespace fp4kit {
namespace {

using testing::read_checkpoint;
using testing::read_json_file;
using testing::read_tree;
using testing::run_fp4kit;
using testing::source_values;
using testing::SourceValues;
using testing::StoredTensor;
using testing::test_data;
using Checkpoint = std::map<std::string, StoredTensor>;

std::string family(const std::string& name) { return test_data("families/" + name); }

Checkpoint read_source(const std::string& dir) { return testing::read_source_checkpoint(dir); }

float f32_of(const std::vector<uint8_t>& b) {
  float f;
  std::memcpy(&f, b.data(), 4);
  return f;
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// The module's NVFP4 tensors must be ModelOpt's quantization (weight_scale_2 computed on the GPU,
// as its exporters do for these families) of its values with the fused group's largest amax.
void expect_modelopt_bytes(const Checkpoint& src, const Checkpoint& out, const std::string& module) {
  SCOPED_TRACE(module);
  const SourceValues v = source_values(src, module);
  float amax = v.amax;
  for (const std::string& sibling : fused_siblings_of(module)) amax = std::max(amax, source_values(src, sibling).amax);
  const Nvfp4Scaling sc = nvfp4_scaling(amax, Nvfp4Numerics::ModelOptCuda, DType::BF16);
  ASSERT_TRUE(out.count(module + ".weight_scale_2"));
  EXPECT_EQ(bits_of(f32_of(out.at(module + ".weight_scale_2").bytes)), bits_of(sc.global));
  std::vector<uint8_t> packed(v.rows * v.cols / 2), scales(v.rows * v.cols / 16);
  nvfp4_kernels(Isa::Scalar).quantize(v.span(), Nvfp4Scaling{sc.numerics, sc.global, v.dtype}, packed.data(), scales.data());
  EXPECT_EQ(out.at(module + ".weight").dtype, DType::U8);
  EXPECT_TRUE(out.at(module + ".weight").bytes == packed);
  EXPECT_TRUE(out.at(module + ".weight_scale").bytes == scales);
}

void expect_verify_passes(const std::string& out, const std::string& src, const std::string& engines = "") {
  const auto v = run_fp4kit("verify " + out + " --source " + src + engines);
  EXPECT_EQ(v.exit_code, 0) << v.output;
}

// A calibration file with one input amax per module.
std::string write_calibration(const std::string& path, const std::map<std::string, float>& values) {
  io::SafetensorsWriter w(path);
  for (const auto& [module, v] : values) w.declare(module + ".input_amax", DType::F32, {});
  w.begin();
  for (const io::TensorInfo& t : w.layout()) {
    const float v = values.at(t.name.substr(0, t.name.size() - std::string(".input_amax").size()));
    w.write(t.name, std::as_bytes(std::span(&v, 1)));
  }
  w.commit();
  return path;
}

TEST(ModelFamily, DetectsTheFamilyAndTheRolesOfItsModules) {
  const nlohmann::json v3 = {{"model_type", "deepseek_v3"}, {"num_hidden_layers", 61}};
  const ModelDescriptor d3 = ModelDescriptor::detect(&v3, {});
  EXPECT_EQ(d3.family(), ModelFamily::DeepseekV3);
  EXPECT_TRUE(d3.is_routed_expert("model.layers.60.mlp.experts.255.down_proj"));
  EXPECT_FALSE(d3.is_routed_expert("model.layers.61.mlp.experts.0.gate_proj"));  // the MTP layer
  EXPECT_TRUE(d3.is_mtp_expert("model.layers.61.mlp.experts.0.gate_proj"));
  EXPECT_TRUE(d3.is_linear("model.layers.3.self_attn.kv_a_proj_with_mqa"));
  EXPECT_TRUE(d3.is_linear("model.layers.3.mlp.shared_experts.up_proj"));
  EXPECT_TRUE(d3.is_linear("model.layers.3.self_attn.indexer.wq_b"));
  for (const char* kept : {"model.layers.3.mlp.gate", "model.layers.61.eh_proj", "model.layers.61.shared_head.head",
                           "lm_head", "model.embed_tokens", "model.layers.3.self_attn.kv_a_layernorm",
                           "model.layers.3.self_attn.indexer.wk", "model.layers.3.self_attn.indexer.weights_proj"}) {
    EXPECT_TRUE(d3.is_always_kept(kept)) << kept;
    EXPECT_FALSE(d3.is_linear(kept)) << kept;
  }

  const nlohmann::json qwen = {{"model_type", "qwen3_moe"}};
  const ModelDescriptor dq = ModelDescriptor::detect(&qwen, {});
  EXPECT_EQ(dq.family(), ModelFamily::LlamaLike);
  EXPECT_TRUE(dq.is_routed_expert("model.layers.0.mlp.experts.7.up_proj"));
  EXPECT_TRUE(dq.is_routed_expert("model.layers.0.block_sparse_moe.experts.7.w3"));  // Mixtral
  EXPECT_FALSE(dq.is_routed_expert("model.layers.0.mlp.up_proj"));
  EXPECT_TRUE(dq.is_linear("model.layers.0.self_attn.q_proj"));
  EXPECT_TRUE(dq.is_linear("model.layers.0.mlp.up_proj"));
  for (const char* kept : {"model.layers.0.mlp.gate", "model.layers.0.block_sparse_moe.gate", "lm_head",
                           "model.layers.0.mlp.shared_expert_gate", "model.layers.0.self_attn.q_norm"})
    EXPECT_TRUE(dq.is_always_kept(kept)) << kept;
  EXPECT_FALSE(dq.is_linear("vision_tower.encoder.layers.0.mlp.fc1"));  // not a decoder layer

  const ModelDescriptor d4 = ModelDescriptor::detect(nullptr, {"embed.weight", "layers.0.ffn.experts.0.w1.weight"});
  EXPECT_EQ(d4.family(), ModelFamily::DeepseekV4);
  EXPECT_TRUE(d4.is_routed_expert("layers.0.ffn.experts.0.w1"));
  EXPECT_TRUE(d4.is_mtp_expert("mtp.0.ffn.experts.0.w1"));
  EXPECT_FALSE(d4.is_routed_expert("mtp.0.ffn.experts.0.w1"));
  EXPECT_TRUE(d4.is_linear("layers.2.attn.wkv"));
  EXPECT_TRUE(d4.is_always_kept("layers.2.ffn.gate"));
  EXPECT_EQ(ModelDescriptor::detect(nullptr, {"model.layers.0.self_attn.kv_a_proj_with_mqa.weight"}).family(),
            ModelFamily::DeepseekV3);
  EXPECT_EQ(ModelDescriptor::detect(nullptr, {"model.layers.0.self_attn.q_proj.weight"}).family(), ModelFamily::LlamaLike);
}

TEST(FusedGroups, SiblingsShareOneGroupKey) {
  EXPECT_EQ(fused_siblings_of("model.layers.0.self_attn.k_proj"),
            (std::vector<std::string>{"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"}));
  EXPECT_EQ(fused_siblings_of("layers.1.ffn.experts.3.w3"), (std::vector<std::string>{"layers.1.ffn.experts.3.w1"}));
  EXPECT_EQ(fused_siblings_of("x.kv_a_proj_with_mqa"), (std::vector<std::string>{"x.q_a_proj"}));
  EXPECT_TRUE(fused_siblings_of("model.layers.0.mlp.down_proj").empty());
  EXPECT_TRUE(fused_siblings_of("layers.0.ffn.gate").empty());  // the router is no "gate_proj"
  EXPECT_EQ(fused_group_of("a.q_proj"), fused_group_of("a.v_proj"));
  EXPECT_EQ(fused_group_of("a.v_proj").members, "q_proj/k_proj/v_proj");
  EXPECT_NE(fused_group_of("a.q_proj"), fused_group_of("b.q_proj"));
  EXPECT_TRUE(fused_group_of("a.o_proj").members.empty());
}

TEST(ConvertFamilies, LlamaAllLinearQuantizesEveryProjectionWithSharedQkvScales) {
  const std::string dir = testing::fresh_temp_dir("convert-llama");
  const std::string src = family("llama-tiny"), out = dir + "/out";
  // q/k/v and gate/up see the same input: their input scales must come out as the group's max.
  std::map<std::string, float> amax;
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    amax[p + "self_attn.q_proj"] = 3.0f;
    amax[p + "self_attn.k_proj"] = 5.0f + static_cast<float>(l);  // the group's max
    amax[p + "self_attn.v_proj"] = 4.0f;
    amax[p + "self_attn.o_proj"] = 1.5f;
    amax[p + "mlp.gate_proj"] = 2.0f;  // up_proj uncalibrated: takes gate_proj's value
    amax[p + "mlp.down_proj"] = 7.0f;
  }
  const std::string calib = write_calibration(dir + "/amax.safetensors", amax);
  const auto r = run_fp4kit("convert " + src + " " + out + " --recipe all-linear --calib " + calib + " --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Checkpoint s = read_source(src), o = read_checkpoint(out);
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (const char* m : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                          "mlp.up_proj", "mlp.down_proj"}) {
      expect_modelopt_bytes(s, o, p + m);
      EXPECT_FALSE(o.count(p + m + ".weight_scale_inv"));
    }
    const float qkv = (5.0f + static_cast<float>(l)) / kNvfp4ScaleDenominator;
    for (const char* m : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"})
      EXPECT_EQ(bits_of(f32_of(o.at(p + m + ".input_scale").bytes)), bits_of(qkv)) << p << m;
    EXPECT_EQ(f32_of(o.at(p + "mlp.up_proj.input_scale").bytes), 2.0f / kNvfp4ScaleDenominator);
    EXPECT_EQ(f32_of(o.at(p + "mlp.down_proj.input_scale").bytes), 7.0f / kNvfp4ScaleDenominator);
    EXPECT_EQ(o.at(p + "input_layernorm.weight").bytes, s.at(p + "input_layernorm.weight").bytes);
  }
  for (const char* kept : {"lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"}) {
    EXPECT_EQ(o.at(kept).dtype, DType::BF16) << kept;
    EXPECT_EQ(o.at(kept).bytes, s.at(kept).bytes) << kept;
  }
  const nlohmann::json q = read_json_file(out + "/hf_quant_config.json").at("quantization");
  EXPECT_EQ(q.at("quant_algo"), "NVFP4");
  EXPECT_EQ(q.at("group_size"), 16);
  EXPECT_EQ(q.at("exclude_modules"), (nlohmann::json{"lm_head", "model.embed_tokens"}));
  const nlohmann::json config = read_json_file(out + "/config.json");
  EXPECT_EQ(config.at("quantization_config").at("quant_method"), "modelopt");
  EXPECT_EQ(config.at("model_type"), "llama");
  expect_verify_passes(out, src);

  // A dense model has no routed experts: the default recipe says so and what to use.
  const auto moe = run_fp4kit("convert " + src + " " + dir + "/moe --weight-only --quiet");
  EXPECT_EQ(moe.exit_code, 2);
  EXPECT_NE(moe.output.find("--recipe all-linear"), std::string::npos) << moe.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/moe/model.safetensors"));
}

TEST(ConvertFamilies, QwenMoeRecipeConvertsTheExpertsAndKeepsRouterAndAttention) {
  const std::string dir = testing::fresh_temp_dir("convert-qwen-moe");
  const std::string src = family("qwen3-moe-tiny"), out = dir + "/out";
  const auto r = run_fp4kit("convert " + src + " " + out + " --weight-only --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Checkpoint s = read_source(src), o = read_checkpoint(out);
  size_t experts = 0;
  for (const auto& [name, t] : s) {
    if (!name.ends_with(".weight")) continue;
    const std::string module = name.substr(0, name.size() - 7);
    if (module.find(".mlp.experts.") != std::string::npos) {
      expect_modelopt_bytes(s, o, module);
      EXPECT_FALSE(o.count(module + ".input_scale"));
      ++experts;
    } else {
      EXPECT_EQ(o.at(name).bytes, t.bytes) << name;  // router, attention, norms, embeddings, head
    }
  }
  EXPECT_EQ(experts, 2u * 4u * 3u);
  EXPECT_EQ(o.at("model.layers.1.mlp.experts.2.gate_proj.weight_scale_2").bytes,
            o.at("model.layers.1.mlp.experts.2.up_proj.weight_scale_2").bytes);
  const nlohmann::json q = read_json_file(out + "/hf_quant_config.json").at("quantization");
  EXPECT_EQ(q.at("quant_algo"), "W4A16_NVFP4");
  const auto& exclude = q.at("exclude_modules");
  for (const char* e : {"lm_head", "model.layers.*.mlp.gate", "model.layers.*.self_attn.q_proj"})
    EXPECT_NE(std::find(exclude.begin(), exclude.end(), e), exclude.end()) << e << " in " << exclude.dump();
  expect_verify_passes(out, src);

  // The same model in compressed-tensors' layout, every linear converted.
  const std::string ct = dir + "/ct";
  ASSERT_EQ(run_fp4kit("convert " + src + " " + ct + " --recipe all-linear --format compressed-tensors --weight-only --quiet")
                .exit_code,
            0);
  const nlohmann::json qc = read_json_file(ct + "/config.json").at("quantization_config");
  EXPECT_EQ(qc.at("format"), "nvfp4-pack-quantized");
  EXPECT_TRUE(read_checkpoint(ct).count("model.layers.0.self_attn.v_proj.weight_packed"));
  // TensorRT-LLM refuses compressed-tensors NVFP4 (docs/verify.md): the engines that load it.
  expect_verify_passes(ct, src, " --engine vllm --engine sglang");
}

TEST(ConvertFamilies, DeepseekV3WritesKeptFp8BlocksAsTheOfficialBf16Dequant) {
  const std::string dir = testing::fresh_temp_dir("convert-dsv3-moe");
  const std::string src = family("dsv3-tiny"), out = dir + "/out";
  const auto r = run_fp4kit("convert " + src + " " + out + " --weight-only --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Checkpoint s = read_source(src), o = read_checkpoint(out);
  size_t dequantized = 0;
  for (const auto& [name, t] : s) {
    SCOPED_TRACE(name);
    if (name.ends_with(".weight_scale_inv")) {
      EXPECT_FALSE(o.count(name));
      continue;
    }
    const std::string module = name.substr(0, name.size() - 7);
    if (module.starts_with("model.layers.1.mlp.experts.")) {
      expect_modelopt_bytes(s, o, module);
      continue;
    }
    if (t.dtype != DType::F8_E4M3) {
      EXPECT_EQ(o.at(name).bytes, t.bytes);
      continue;
    }
    // Attention, dense MLP, shared experts and the MTP layer's experts: BF16 = kernel.py's weight_dequant.
    const size_t rows = static_cast<size_t>(t.shape[0]), cols = static_cast<size_t>(t.shape[1]);
    std::vector<uint16_t> want(rows * cols);
    fp8_block_kernels(Isa::Scalar)
        .dequantize_bf16(t.bytes.data(), s.at(module + ".weight_scale_inv").bytes.data(),
                         Fp8BlockShape{rows, cols, Fp8ScaleKind::F32}, 0, rows, want.data());
    ASSERT_EQ(o.at(name).dtype, DType::BF16);
    EXPECT_EQ(o.at(name).shape, t.shape);
    EXPECT_EQ(std::memcmp(o.at(name).bytes.data(), want.data(), want.size() * 2), 0);
    ++dequantized;
  }
  EXPECT_EQ(dequantized, 3u * 5u + 3u + 2u * 3u + 3u * 4u);  // attention of 3 layers, dense MLP, 2 shared, MTP experts
  // Nothing FP8 is left, so nothing may claim it: ModelOpt's quantization_config replaces the source's.
  const nlohmann::json config = read_json_file(out + "/config.json");
  EXPECT_EQ(config.at("quantization_config").at("quant_method"), "modelopt");
  EXPECT_EQ(config.at("quantization_config").at("quant_algo"), "W4A16_NVFP4");
  EXPECT_FALSE(config.at("quantization_config").contains("weight_block_size"));
  const auto v = run_fp4kit("verify " + out + " --source " + src + " --json " + dir + "/v.json");
  EXPECT_EQ(v.exit_code, 0) << v.output;
  EXPECT_EQ(read_json_file(dir + "/v.json").at("dequantized_exact"), dequantized);
  // One BF16 value off the official dequant is found and named.
  testing::poke_tensor_byte(out, "model.layers.0.self_attn.o_proj.weight", 1001,
                            static_cast<uint8_t>(o.at("model.layers.0.self_attn.o_proj.weight").bytes[1001] ^ 0x01));
  const auto bad = run_fp4kit("verify " + out + " --source " + src);
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_NE(bad.output.find("source.dequant_mismatch"), std::string::npos) << bad.output;
  EXPECT_NE(bad.output.find("model.layers.0.self_attn.o_proj.weight"), std::string::npos) << bad.output;

  // --include-mtp-experts: the MTP layer's experts too.
  const auto mtp = run_fp4kit("convert " + src + " " + dir + "/mtp --weight-only --include-mtp-experts --quiet");
  ASSERT_EQ(mtp.exit_code, 0) << mtp.output;
  const Checkpoint m = read_checkpoint(dir + "/mtp");
  expect_modelopt_bytes(s, m, "model.layers.2.mlp.experts.3.down_proj");
}

TEST(ConvertFamilies, DeepseekV3AllLinearFollowsModelOptsV3ScriptAcrossShards) {
  const std::string dir = testing::fresh_temp_dir("convert-dsv3-all");
  const std::string src = family("dsv3-tiny"), out = dir + "/out";
  const auto r = run_fp4kit("convert " + src + " " + out + " --recipe all-linear --weight-only --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Checkpoint s = read_source(src), o = read_checkpoint(out);
  // The fixture puts every layer-1 expert's up_proj in the first shard and its gate_proj in the second.
  ASSERT_NE(s.at("model.layers.1.mlp.experts.0.up_proj.weight").file, s.at("model.layers.1.mlp.experts.0.gate_proj.weight").file);
  size_t quantized = 0;
  for (const auto& [name, t] : s) {
    if (t.dtype != DType::F8_E4M3) continue;
    expect_modelopt_bytes(s, o, name.substr(0, name.size() - 7));
    ++quantized;
  }
  EXPECT_EQ(quantized, 48u);
  EXPECT_EQ(o.at("model.layers.0.self_attn.q_a_proj.weight_scale_2").bytes,
            o.at("model.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_2").bytes);
  for (const char* kept : {"model.layers.2.eh_proj.weight", "model.layers.2.shared_head.head.weight", "model.layers.1.mlp.gate.weight",
                           "model.layers.1.mlp.gate.e_score_correction_bias"})
    EXPECT_EQ(o.at(kept).bytes, s.at(kept).bytes) << kept;
  EXPECT_EQ(read_json_file(out + "/hf_quant_config.json").at("quantization").at("quant_algo"), "W4A16_NVFP4");
  // All-linear DeepSeek V3 loads in vLLM alone: TensorRT-LLM reads fused_a and kv_b_proj as plain
  // weights, and SGLang raises for W4A16_NVFP4 (docs/verify.md).
  expect_verify_passes(out, src, " --engine vllm");
}

TEST(ConvertFamilies, DeepseekV3KilledRunResumesToIdenticalOutput) {
  const std::string dir = testing::fresh_temp_dir("convert-dsv3-resume");
  const std::string src = family("dsv3-tiny"), want = dir + "/want", out = dir + "/out";
  const std::string args = " --weight-only --quiet";
  ASSERT_EQ(run_fp4kit("convert " + src + " " + want + args).exit_code, 0);
  ::setenv(kCrashAfterShardsEnv, "1", 1);
  const auto killed = run_fp4kit("convert " + src + " " + out + args);
  ::unsetenv(kCrashAfterShardsEnv);
  EXPECT_EQ(killed.exit_code, 137) << killed.output;
  const auto resumed = run_fp4kit("convert " + src + " " + out + args + " --resume --json " + dir + "/r.json");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(read_json_file(dir + "/r.json").at("shards_skipped"), 1);
  EXPECT_TRUE(read_tree(out) == read_tree(want));
}

TEST(ConvertFamilies, StackedExpertTensorsAreKeptWithAWarning) {
  const std::string dir = testing::fresh_temp_dir("convert-stacked-experts");
  testing::write_checkpoint(dir + "/src",
                            {{{"model.layers.0.mlp.experts.gate_up_proj", DType::BF16, {4, 32, 16}, {}},
                              {"model.layers.0.self_attn.q_proj.weight", DType::BF16, {16, 16}, {}}}},
                            std::string(R"({"model_type": "qwen3_moe"})"));
  const auto r = run_fp4kit("convert " + dir + "/src " + dir + "/out --recipe all-linear --weight-only --dry-run");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("'model.layers.0.mlp.experts.gate_up_proj': [4, 32, 16] holds several experts"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("quantize        1 tensors"), std::string::npos) << r.output;  // q_proj only
}

}  // namespace
}  // namespace fp4kit
