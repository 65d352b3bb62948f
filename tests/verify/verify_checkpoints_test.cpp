// verify on whole checkpoints: every layout `convert` writes from the tiny fixture passes, with the
// numbers the numerics contract predicts; the exporter's goldens pass; checkpoints written by other
// tools (ModelOpt names, compressed-tensors names, a w1/w3 pair split over two shards as ModelOpt's V4
// exporter writes it) are judged right; the report does not depend on the thread count; exit codes.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "verify/report_json.h"
#include "verify_test_util.h"

namespace fp4kit::testing {
namespace {

namespace fs = std::filesystem;

struct ConvertCase {
  std::string name, args;
  bool lossless;
};

class VerifyConvertOutput : public ::testing::TestWithParam<ConvertCase> {};

TEST_P(VerifyConvertOutput, PassesWithTheExpectedNumerics) {
  const ConvertCase& c = GetParam();
  const verify::VerifyReport r = verify_dir(converted_tiny(c.args), true);
  EXPECT_TRUE(r.passed()) << describe(r);
  EXPECT_EQ(r.layout, "modelopt-v4-mixed");
  ASSERT_EQ(r.numerics.size(), 96u);  // 4 layers x 8 experts x 3
  EXPECT_EQ(r.quantized_accounted, 96u);
  EXPECT_EQ(r.dropped_accounted, 96u);  // the E8M0 scales
  EXPECT_EQ(r.kept_identical, r.kept);
  EXPECT_GT(r.kept, 200u);
  for (const verify::TensorNumerics& n : r.numerics) {
    ASSERT_TRUE(n.compared) << n.name;
    EXPECT_EQ(n.source_storage, "mxfp4");
    EXPECT_EQ(n.nan_values + n.inf_values, 0u);
    ASSERT_TRUE(n.expected_sqnr_db) << n.name;
    EXPECT_EQ(n.expected_exact, c.lossless) << n.name;
    if (c.lossless) {
      EXPECT_FALSE(n.sqnr_db) << n.name << " should be exact";
      EXPECT_EQ(n.exact_values, n.values);
    } else {
      ASSERT_TRUE(n.sqnr_db);
      EXPECT_GE(*n.sqnr_db, *n.expected_sqnr_db - 1.0) << n.name;
      EXPECT_LT(n.exact_values, n.values);
      EXPECT_GT(n.rel_rms, 0.0);
    }
  }
  // Block scales were counted, one per 16 values.
  uint64_t blocks = 0;
  for (uint64_t c2 : r.block_scale_histogram) blocks += c2;
  EXPECT_EQ(blocks, 96u * 128 * 128 / 16);
}

INSTANTIATE_TEST_SUITE_P(Tiny, VerifyConvertOutput,
                         ::testing::Values(ConvertCase{"Cast", cast_args(), true},
                                           ConvertCase{"ModelOpt", modelopt_args(), false},
                                           ConvertCase{"CastWeightOnly", "--numerics cast --weight-only", true},
                                           ConvertCase{"ModelOptWeightOnly", "--numerics modelopt --weight-only", false}),
                         [](const auto& param_info) { return param_info.param.name; });

TEST(VerifyConvertOutput, WeightOnlyIsAWarningNotAFailure) {
  const verify::VerifyReport r = verify_dir(converted_tiny("--numerics cast --weight-only"), false);
  EXPECT_TRUE(r.passed());
  const verify::Finding* f = find_finding(r, "nvfp4.no_input_scale", "weight-only");
  ASSERT_NE(f, nullptr) << describe(r);
  EXPECT_EQ(f->severity, verify::Severity::Warn);
}

TEST(VerifyGolden, ModelOptExporterOutputsPass) {
  for (const char* mode : {"cast", "requant"}) {
    const verify::VerifyReport r = verify_dir(oracle_dir(mode), true);
    EXPECT_TRUE(r.passed()) << mode << "\n" << describe(r);
    // The exporter copies the source's stale total_size: a warning.
    EXPECT_NE(find_finding(r, "index.total_size", "4898438"), nullptr) << describe(r);
    size_t exact = 0;
    for (const auto& n : r.numerics) exact += !n.sqnr_db.has_value();
    EXPECT_EQ(exact, std::string(mode) == "cast" ? 96u : 0u) << mode;
  }
}

// ModelOpt's V4 exporter pairs w1/w3 only within a shard: a pair split over two shards gets two
// weight_scale_2 values, each self-consistent. Made here from the golden cast output: w3 moves to
// another shard with weight_scale_2 doubled and every block scale halved (E4M3 byte - 8), so that
// its own dequant is unchanged. Only the fused-group check can see it.
TEST(VerifyGolden, SplitPairWithItsOwnGlobalScaleIsFlagged) {
  const std::string dir = copy_checkpoint(oracle_dir("cast"), "verify-split");
  const std::string w3 = "layers.1.ffn.experts.3.w3";
  set_f32(dir, w3 + ".weight_scale_2", 2.0f * get_f32(dir, w3 + ".weight_scale_2"));
  {
    const io::Checkpoint c = io::Checkpoint::open(dir);
    const auto [file, info] = c.find(w3 + ".weight_scale");
    std::vector<std::byte> bytes = file->read_all(*info);
    for (std::byte& b : bytes) {
      ASSERT_GE(static_cast<uint8_t>(b), 0x50) << "a block scale too small to halve exactly";
      b = static_cast<std::byte>(static_cast<uint8_t>(b) - 8);
    }
    write_tensor_bytes(dir, w3 + ".weight_scale", 0, bytes.data(), bytes.size());
  }
  const std::string other = "model-00003-of-00003.safetensors";
  ASSERT_NE(shard_holding(dir, w3 + ".weight"), dir + "/" + other);
  move_tensors(dir, {w3 + ".weight", w3 + ".weight_scale", w3 + ".weight_scale_2", w3 + ".input_scale"}, other);

  const verify::VerifyReport r = verify_dir(dir, true);
  EXPECT_FALSE(r.passed());
  const verify::Finding* f = find_finding(r, "fusion.global_scale", w3 + ".weight_scale_2' in " + other);
  ASSERT_NE(f, nullptr) << describe(r);
  EXPECT_NE(f->message.find("factor 2"), std::string::npos) << f->message;
  // Each tensor is still exact on its own: no numerics finding hides behind the structural one.
  for (const auto& n : r.numerics) EXPECT_FALSE(n.sqnr_db) << n.name;
  size_t fails = r.count(verify::Severity::Fail);
  EXPECT_EQ(fails, 1u) << describe(r);
}

TEST(VerifyReportJson, ThreadCountDoesNotChangeANumber) {
  const std::string dir = converted_tiny(modelopt_args());
  nlohmann::json a = verify::report_to_json(verify_dir(dir, true, 1));
  nlohmann::json b = verify::report_to_json(verify_dir(dir, true, 5));
  for (nlohmann::json* j : {&a, &b}) {
    j->erase("seconds");
    j->erase("threads");
  }
  EXPECT_EQ(a, b);
  EXPECT_GT(a["tensors_numerics"].size(), 0u);
}

TEST(VerifyReportJson, ChunkSizeDoesNotChangeANumber) {
  const std::string dir = converted_tiny(modelopt_args());
  auto run = [&](size_t chunk_values) {
    verify::VerifyOptions o;
    o.checkpoint = dir;
    o.source = test_data("dsv4-tiny");
    o.threads = 2;
    o.chunk_values = chunk_values;
    nlohmann::json j = verify::report_to_json(verify::verify_checkpoint(o));
    j.erase("seconds");
    return j;
  };
  // Whole tensors in one chunk, against chunks of a few rows.
  const nlohmann::json whole = run(size_t{1} << 30), chunked = run(3000);
  EXPECT_EQ(whole, chunked);
  EXPECT_GT(whole["tensors_numerics"].size(), 0u);
}

// Checkpoints another tool wrote: one model.safetensors from `quantize-tensors` (ModelOpt's or
// compressed-tensors' names) of a BF16 checkpoint, with the config files those tools write.
class VerifyForeignLayout : public ::testing::TestWithParam<bool> {};

TEST_P(VerifyForeignLayout, PassesAndMeasuresTheErrorAgainstBf16) {
  const bool ct = GetParam();
  const std::string src = fresh_temp_dir("verify-bf16-src");
  fs::copy_file(test_data("dsv4-tiny/dequant_bf16.safetensors"), src + "/model.safetensors");
  nlohmann::json config = load_json(test_data("dsv4-tiny/config.json"));
  config.erase("quantization_config");
  save_json(src + "/config.json", config);

  const std::string out = fresh_temp_dir(ct ? "verify-ct" : "verify-mo");
  // vLLM loads DeepSeek's wq_a and wkv into one fused GEMM: they share a global scale too.
  std::string fuse;
  const io::SafetensorsFile bf16 = io::SafetensorsFile::open(src + "/model.safetensors");
  for (const io::TensorInfo& t : bf16.tensors())
    if (t.name.ends_with(".attn.wq_a.weight"))
      fuse += " --fuse " + t.name + "," + t.name.substr(0, t.name.size() - std::string("wq_a.weight").size()) + "wkv.weight";
  ASSERT_FALSE(fuse.empty());
  const CommandResult q = run_fp4kit("quantize-tensors " + src + "/model.safetensors " + out + "/model.safetensors --quiet" +
                                     fuse + " --numerics " + (ct ? "compressed-tensors" : "modelopt"));
  ASSERT_EQ(q.exit_code, 0) << q.output;
  nlohmann::json weights = {{"num_bits", 4}, {"type", "float"}, {"group_size", 16}, {"dynamic", false}};
  if (ct) {
    weights["strategy"] = "tensor_group";
    weights["symmetric"] = true;
    config["quantization_config"] = {{"quant_method", "compressed-tensors"}, {"format", "nvfp4-pack-quantized"},
                                     {"config_groups", {{"group_0", {{"targets", {"Linear"}}, {"weights", weights},
                                                                     {"input_activations", nullptr}}}}},
                                     {"ignore", nlohmann::json::array()}};
  } else {
    config["quantization_config"] = {{"quant_method", "modelopt"}, {"quant_algo", "W4A16_NVFP4"},
                                     {"config_groups", {{"group_0", {{"targets", {"Linear"}}, {"weights", weights}}}}},
                                     {"ignore", nlohmann::json::array()}};
    save_json(out + "/hf_quant_config.json",
              {{"producer", {{"name", "modelopt"}, {"version", "0.45.0"}}},
               {"quantization", {{"quant_algo", "W4A16_NVFP4"}, {"kv_cache_quant_algo", nullptr}, {"group_size", 16},
                                 {"exclude_modules", nlohmann::json::array()}}}});
  }
  save_json(out + "/config.json", config);

  verify::VerifyOptions o;
  o.checkpoint = out;
  o.source = src;
  o.threads = 2;
  const verify::VerifyReport r = verify::verify_checkpoint(o);
  EXPECT_TRUE(r.passed()) << describe(r);
  EXPECT_EQ(r.layout, ct ? "compressed-tensors" : "modelopt");
  ASSERT_GT(r.numerics.size(), 40u);
  for (const auto& n : r.numerics) {
    ASSERT_TRUE(n.compared) << n.name;
    EXPECT_EQ(n.source_storage, "bf16");
    ASSERT_TRUE(n.sqnr_db && n.expected_sqnr_db) << n.name;
    EXPECT_GT(*n.sqnr_db, 15.0) << n.name;  // NVFP4 on Gaussian-like weights: ~20 dB
    EXPECT_FALSE(n.expected_exact);
  }

  // The same tensors under the other layout's config: named as a layout mismatch.
  nlohmann::json wrong = config;
  if (ct) wrong["quantization_config"] = {{"quant_method", "modelopt"}, {"quant_algo", "NVFP4"}, {"group_size", 16}, {"ignore", nlohmann::json::array()}};
  else wrong["quantization_config"] = config["quantization_config"], wrong["quantization_config"]["quant_method"] = "compressed-tensors",
       wrong["quantization_config"]["format"] = "nvfp4-pack-quantized";
  save_json(out + "/config.json", wrong);
  fs::remove(out + "/hf_quant_config.json");
  o.source.reset();
  const verify::VerifyReport bad = verify::verify_checkpoint(o);
  EXPECT_NE(find_finding(bad, "nvfp4.layout_mismatch", ct ? "compressed-tensors names" : "ModelOpt names"), nullptr)
      << describe(bad);
}

INSTANTIATE_TEST_SUITE_P(QuantizeTensors, VerifyForeignLayout, ::testing::Values(false, true),
                         [](const auto& param_info) { return param_info.param ? "CompressedTensors" : "ModelOpt"; });

TEST(VerifyCli, ExitCodesAndJson) {
  const std::string good = converted_tiny(modelopt_args());
  const std::string dir = fresh_temp_dir("verify-cli");
  const CommandResult pass = run_fp4kit("verify " + good + " --source " + test_data("dsv4-tiny") + " --json " + dir + "/r.json");
  EXPECT_EQ(pass.exit_code, 0) << pass.output;
  EXPECT_NE(pass.output.find("PASS: 0 failed checks"), std::string::npos) << pass.output;
  const nlohmann::json j = load_json(dir + "/r.json");
  EXPECT_TRUE(j["passed"].get<bool>());
  EXPECT_EQ(j["tensors_numerics"].size(), 96u);
  // Worst first: the terminal's first tensor line is the JSON's first tensor.
  const std::string worst = j["tensors_numerics"][0]["name"];
  const size_t at = pass.output.find("worst first");
  ASSERT_NE(at, std::string::npos);
  EXPECT_LT(pass.output.find(worst, at), pass.output.find("\n", pass.output.find("\n", pass.output.find("\n", at) + 1) + 1));

  const CommandResult strict = run_fp4kit("verify " + good + " --source " + test_data("dsv4-tiny") + " --fail-below-sqnr 30");
  EXPECT_EQ(strict.exit_code, 1) << strict.output;
  EXPECT_NE(strict.output.find("[numerics.below_threshold]"), std::string::npos) << strict.output;
  EXPECT_NE(strict.output.find("FAIL:"), std::string::npos);

  const std::string broken = copy_checkpoint(good, "verify-cli-broken");
  set_f32(broken, "layers.0.ffn.experts.0.w3.weight_scale_2", 1.0f);
  const CommandResult fail = run_fp4kit("verify " + broken);
  EXPECT_EQ(fail.exit_code, 1) << fail.output;
  EXPECT_NE(fail.output.find("[fusion.global_scale]"), std::string::npos) << fail.output;

  EXPECT_EQ(run_fp4kit("verify " + dir).exit_code, 2);  // not a checkpoint
  EXPECT_EQ(run_fp4kit("verify " + dir + "/nothing-here").exit_code, 2);
}

}  // namespace
}  // namespace fp4kit::testing
