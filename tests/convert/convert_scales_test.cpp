// `fp4kit convert --scales mse|four-over-six`: the searched block scales of every requantized
// weight (BF16 Llama, FP8 DeepSeek V3) equal the library's search with the fused group's amax and
// ModelOpt's GPU arithmetic; the output verifies; the lossless cast of V4's MXFP4 experts is
// untouched; bad combinations and a resume with other scales are refused.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "convert/convert_test_util.h"
#include "formats/nvfp4.h"
#include "formats/nvfp4_scale_search.h"
#include "io/safetensors_file.h"
#include "models/fused_groups.h"
#include "run_command.h"

namespace fp4kit {
namespace {

using testing::read_checkpoint;
using testing::read_json_file;
using testing::run_fp4kit;
using testing::StoredTensor;
using testing::test_data;
using Checkpoint = std::map<std::string, StoredTensor>;

std::string family(const std::string& name) { return test_data("families/" + name); }

Checkpoint read_source(const std::string& dir) { return testing::read_source_checkpoint(dir); }

uint32_t bits_of(const std::vector<uint8_t>& b) {
  uint32_t u;
  std::memcpy(&u, b.data(), 4);
  return u;
}

void expect_searched_bytes(const Checkpoint& src, const Checkpoint& out, const std::string& module,
                           Nvfp4ScaleMethod method) {
  SCOPED_TRACE(module);
  const testing::SourceValues v = testing::source_values(src, module);
  float amax = v.amax;
  for (const std::string& sibling : fused_siblings_of(module))
    amax = std::max(amax, testing::source_values(src, sibling).amax);
  const Nvfp4SearchScaling sc = nvfp4_search_scaling(amax, method, Nvfp4Numerics::ModelOptCuda, v.dtype);
  std::vector<uint8_t> packed(v.span().size / 2), scales(v.span().size / 16);
  nvfp4_search_quantize(v.span(), sc, packed.data(), scales.data(), /*full_sweep=*/true);
  ASSERT_TRUE(out.count(module + ".weight_scale_2"));
  uint32_t want_global;
  std::memcpy(&want_global, &sc.weight_scale_2, 4);
  EXPECT_EQ(bits_of(out.at(module + ".weight_scale_2").bytes), want_global);
  EXPECT_TRUE(out.at(module + ".weight").bytes == packed);
  EXPECT_TRUE(out.at(module + ".weight_scale").bytes == scales);
}

TEST(ConvertScales, LlamaAllLinearMseAndFourOverSix) {
  const std::string dir = testing::fresh_temp_dir("convert-scales-llama");
  const std::string src = family("llama-tiny");
  const Checkpoint s = read_source(src);
  for (Nvfp4ScaleMethod method : {Nvfp4ScaleMethod::Mse, Nvfp4ScaleMethod::FourOverSix}) {
    const std::string name(scale_method_name(method));
    const std::string out = dir + "/" + name;
    const auto r = run_fp4kit("convert " + src + " " + out + " --recipe all-linear --weight-only --scales " + name +
                              " --quiet --json " + dir + "/" + name + ".json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(read_json_file(dir + "/" + name + ".json").at("scales"), name);
    const Checkpoint o = read_checkpoint(out);
    for (int l = 0; l < 2; ++l)
      for (const char* m : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                            "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"})
        expect_searched_bytes(s, o, "model.layers." + std::to_string(l) + "." + m, method);
    // The engines read the same layout: nothing in the layout files says how the scales were chosen.
    EXPECT_EQ(read_json_file(out + "/hf_quant_config.json").at("quantization").at("quant_algo"), "W4A16_NVFP4");
    const auto v = run_fp4kit("verify " + out + " --source " + src);
    EXPECT_EQ(v.exit_code, 0) << v.output;
    // The plan file records the method; resuming without it is refused and names the flag.
    EXPECT_EQ(read_json_file(out + "/.fp4kit-convert.json").at("options").at("scales"), name);
    const auto again = run_fp4kit("convert " + src + " " + out + " --recipe all-linear --weight-only --resume --quiet");
    EXPECT_EQ(again.exit_code, 2) << again.output;
    EXPECT_NE(again.output.find("--scales"), std::string::npos) << again.output;
  }
  // The default writes no "scales" into the plan file, as before.
  const std::string plain = dir + "/max";
  ASSERT_EQ(run_fp4kit("convert " + src + " " + plain + " --recipe all-linear --weight-only --quiet").exit_code, 0);
  EXPECT_FALSE(read_json_file(plain + "/.fp4kit-convert.json").at("options").contains("scales"));
  const auto resume_mse = run_fp4kit("convert " + src + " " + plain + " --recipe all-linear --weight-only --resume --scales mse --quiet");
  EXPECT_EQ(resume_mse.exit_code, 2) << resume_mse.output;
  EXPECT_NE(resume_mse.output.find("without --scales"), std::string::npos) << resume_mse.output;
}

TEST(ConvertScales, DeepseekV3FromFp8Blocks) {
  const std::string dir = testing::fresh_temp_dir("convert-scales-dsv3");
  const std::string src = family("dsv3-tiny"), out = dir + "/out";
  const auto r = run_fp4kit("convert " + src + " " + out + " --recipe all-linear --weight-only --scales mse --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Checkpoint s = read_source(src), o = read_checkpoint(out);
  size_t quantized = 0;
  for (const auto& [name, t] : s) {
    if (t.dtype != DType::F8_E4M3) continue;
    expect_searched_bytes(s, o, name.substr(0, name.size() - 7), Nvfp4ScaleMethod::Mse);
    ++quantized;
  }
  EXPECT_GT(quantized, 0u);
  // All-linear DeepSeek V3 loads in vLLM alone (docs/verify.md): TensorRT-LLM reads fused_a and
  // kv_b_proj as plain weights.
  const auto v = run_fp4kit("verify " + out + " --source " + src + " --engine vllm");
  EXPECT_EQ(v.exit_code, 0) << v.output;
}

// V4's routed experts are MXFP4: the default recipe casts them, and a search has nothing to do there.
TEST(ConvertScales, CastExpertsKeepTheirScales) {
  const std::string dir = testing::fresh_temp_dir("convert-scales-v4");
  const std::string src = test_data("dsv4-tiny");
  const auto plain = run_fp4kit("convert " + src + " " + dir + "/max --weight-only --quiet");
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  const auto mse = run_fp4kit("convert " + src + " " + dir + "/mse --weight-only --scales mse");
  ASSERT_EQ(mse.exit_code, 0) << mse.output;
  EXPECT_NE(mse.output.find("cast losslessly"), std::string::npos) << mse.output;
  const Checkpoint a = read_checkpoint(dir + "/max"), b = read_checkpoint(dir + "/mse");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) EXPECT_TRUE(b.at(name).bytes == t.bytes) << name;
}

// V4 with everything requantized: the MXFP4 experts from their BF16 dequant, the attention from its
// E8M0-scaled FP8 blocks, both with ModelOpt's CPU export arithmetic; the output verifies.
TEST(ConvertScales, DeepseekV4RequantizedVerifies) {
  const std::string dir = testing::fresh_temp_dir("convert-scales-v4-all");
  const std::string src = test_data("dsv4-tiny"), out = dir + "/out";
  const auto r = run_fp4kit("convert " + src + " " + out + " --recipe all-linear --numerics modelopt --weight-only "
                            "--scales four-over-six --quiet --json " + dir + "/r.json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_json_file(dir + "/r.json").at("scales"), "four-over-six");
  const auto v = run_fp4kit("verify " + out + " --source " + src);
  EXPECT_EQ(v.exit_code, 0) << v.output;
}

TEST(ConvertScales, BadScales) {
  const std::string dir = testing::fresh_temp_dir("convert-scales-bad");
  const std::string src = family("llama-tiny");
  const auto unknown = run_fp4kit("convert " + src + " " + dir + "/a --recipe all-linear --weight-only --scales gptq");
  EXPECT_EQ(unknown.exit_code, 2) << unknown.output;
  EXPECT_NE(unknown.output.find("--scales gptq: unknown (max, mse, four-over-six, hessian)"), std::string::npos)
      << unknown.output;
  const auto ct = run_fp4kit("convert " + src + " " + dir + "/b --recipe all-linear --weight-only --scales mse "
                             "--format compressed-tensors");
  EXPECT_EQ(ct.exit_code, 2) << ct.output;
  EXPECT_NE(ct.output.find("--format compressed-tensors"), std::string::npos) << ct.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/a"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/b"));
}

}  // namespace
}  // namespace fp4kit
