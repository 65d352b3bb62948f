// `fp4kit convert` beyond the routed experts: --recipe all-linear in ModelOpt's general layout and in
// compressed-tensors' nvfp4-pack-quantized, checked by dequantizing every output against the source
// (exact for cast experts, within NVFP4's error for requantized matrices), against ModelOpt's own
// quantizer on its golden FP8 tensors, and --include/--exclude, --strict, non-finite sources, a full
// disk, the shard hashes and kill + resume.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <string>

#include "checkpoint_edit.h"
#include "convert/convert_plan.h"
#include "convert/convert_test_util.h"
#include "convert/dequant_test_util.h"
#include "formats/e2m1.h"
#include "formats/fp8_block.h"
#include "formats/mxfp4.h"
#include "formats/nvfp4.h"
#include "io/checkpoint_index.h"
#include "oracle_file.h"
#include "run_command.h"

namespace fp4kit {
namespace {

namespace fs = std::filesystem;
using testing::read_checkpoint;
using testing::read_json_file;
using testing::read_tree;
using testing::run_fp4kit;
using testing::StoredTensor;
using testing::test_data;

using Checkpoint = std::map<std::string, StoredTensor>;

float f32_of(const std::vector<uint8_t>& b) {
  float f;
  std::memcpy(&f, b.data(), 4);
  return f;
}

// The source matrix of module `m` as f32: DeepSeek's official dequant (FP8 blocks, MXFP4) or the values.
std::vector<float> source_values(const Checkpoint& src, const std::string& m, size_t& rows, size_t& cols) {
  const StoredTensor& w = src.at(m + ".weight");
  rows = static_cast<size_t>(w.shape[0]);
  std::vector<float> out;
  if (w.dtype == DType::F8_E4M3) {
    cols = static_cast<size_t>(w.shape[1]);
    const StoredTensor& s = src.at(m + ".scale");
    out.resize(rows * cols);
    const Fp8BlockShape shape{rows, cols, s.dtype == DType::F32 ? Fp8ScaleKind::F32 : Fp8ScaleKind::E8M0};
    fp8_block_ref::dequantize_f32(w.bytes.data(), s.bytes.data(), shape, 0, rows, out.data());
  } else if (src.count(m + ".scale")) {
    cols = static_cast<size_t>(w.shape[1]) * 2;
    out.resize(rows * cols);
    mxfp4_ref::dequantize_f32(w.bytes.data(), src.at(m + ".scale").bytes.data(), rows * cols, out.data());
  } else {
    cols = static_cast<size_t>(w.shape[1]);
    const FloatSpan v{w.bytes.data(), w.dtype, rows * cols};
    for (size_t i = 0; i < rows * cols; ++i) out.push_back(v.at(i));
  }
  return out;
}

struct ModuleCheck {
  size_t modules = 0, exact_modules = 0;
};

// Every NVFP4 module of `out` dequantized against its source: exact where `exact(m)`, else every
// element within NVFP4's rounding error of its block (half the widest E2M1 step, or what the
// saturation at 6 loses).
ModuleCheck expect_dequant_matches(const Checkpoint& src, const Checkpoint& out, bool compressed_tensors,
                                   const std::function<bool(const std::string&)>& exact) {
  ModuleCheck check;
  const std::string packed_suffix = compressed_tensors ? ".weight_packed" : ".weight";
  const std::string global_suffix = compressed_tensors ? ".weight_global_scale" : ".weight_scale_2";
  for (const auto& [name, t] : out) {
    if (!name.ends_with(global_suffix)) continue;
    const std::string m = name.substr(0, name.size() - global_suffix.size());
    size_t rows = 0, cols = 0;
    const std::vector<float> want = source_values(src, m, rows, cols);
    const Nvfp4Scaling scaling{compressed_tensors ? Nvfp4Numerics::CompressedTensors : Nvfp4Numerics::ModelOpt,
                               f32_of(t.bytes), DType::BF16};
    const StoredTensor& packed = out.at(m + packed_suffix);
    const StoredTensor& scales = out.at(m + ".weight_scale");
    EXPECT_EQ(packed.shape, (std::vector<int64_t>{static_cast<int64_t>(rows), static_cast<int64_t>(cols / 2)})) << m;
    std::vector<float> got(rows * cols);
    nvfp4_ref::dequantize(packed.bytes.data(), scales.bytes.data(), rows * cols, scaling, got.data());
    ++check.modules;
    if (exact(m)) {
      size_t differ = 0;
      for (size_t i = 0; i < got.size(); ++i) differ += !(got[i] == want[i]);
      EXPECT_EQ(differ, 0u) << m << ": transcoded values differ from the source";
      check.exact_modules += differ == 0;
      continue;
    }
    size_t outside = 0;
    for (size_t b = 0; b < rows * cols / 16 && outside < 3; ++b) {
      const float step = nvfp4_dequant_multiplier(scales.bytes[b], scaling);
      float amax = 0;
      for (size_t j = 0; j < 16; ++j) amax = std::max(amax, std::fabs(want[b * 16 + j]));
      const float bound = std::max(step, amax - 6.0f * step) * 1.0001f + 1e-30f;
      for (size_t j = 0; j < 16; ++j) {
        const size_t i = b * 16 + j;
        if (std::fabs(got[i] - want[i]) <= bound) continue;
        ++outside;
        ADD_FAILURE() << m << " element " << i << ": " << got[i] << " vs " << want[i] << " (bound " << bound << ")";
      }
    }
  }
  return check;
}

// Every tensor of `src` that `out` holds under the same name with the same dtype is a kept one:
// it must be byte-identical. Returns how many there were.
size_t expect_kept_identical(const Checkpoint& src, const Checkpoint& out) {
  size_t kept = 0;
  for (const auto& [name, t] : out) {
    const auto s = src.find(name);
    if (s == src.end() || s->second.dtype != t.dtype) continue;
    EXPECT_TRUE(testing::BytesEqual(t.bytes, s->second.bytes)) << name;
    ++kept;
  }
  return kept;
}

size_t count_suffix(const Checkpoint& c, const std::string& suffix) {
  size_t n = 0;
  for (const auto& [name, t] : c) n += name.ends_with(suffix);
  return n;
}

// Every module with a scale in the tiny checkpoint, with an input amax each.
std::string all_linear_calibration(const std::string& path) {
  std::map<std::string, float> values;
  for (const auto& [name, t] : read_checkpoint(test_data("dsv4-tiny")))
    if (name.ends_with(".scale")) values[name.substr(0, name.size() - 6)] = 1.5f + static_cast<float>(values.size() % 7);
  testing::write_calibration(path, values);
  return path;
}

TEST(ConvertAllLinear, ModelOptLayoutDequantizesToTheSource) {
  const std::string dir = testing::fresh_temp_dir("convert-all-linear");
  const std::string calib = all_linear_calibration(dir + "/calib.safetensors");
  const Checkpoint src = read_checkpoint(test_data("dsv4-tiny"));
  for (const char* numerics : {"cast", "modelopt"}) {
    SCOPED_TRACE(numerics);
    const std::string out = dir + "/out-" + numerics;
    const auto r = run_fp4kit("convert " + test_data("dsv4-tiny") + " " + out + " --recipe all-linear --calib " + calib +
                              " --numerics " + numerics + " --quiet --json " + dir + "/r.json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const Checkpoint got = read_checkpoint(out);
    EXPECT_EQ(count_suffix(got, ".scale"), 0u);  // every scaled weight converted, MTP included
    EXPECT_EQ(count_suffix(got, ".weight_scale_2"), count_suffix(src, ".scale"));
    EXPECT_EQ(count_suffix(got, ".input_scale"), count_suffix(src, ".scale"));
    const bool cast = std::string_view(numerics) == "cast";
    const ModuleCheck check = expect_dequant_matches(src, got, false, [&](const std::string& m) {
      return cast && m.find(".experts.") != std::string::npos && m.find("shared") == std::string::npos;
    });
    EXPECT_EQ(check.modules, count_suffix(src, ".scale"));
    // Always kept: embeddings, head, norms, router, mHC, sinks, compressor and indexer projections, ape.
    EXPECT_EQ(expect_kept_identical(src, got), src.size() - 2 * count_suffix(src, ".scale"));
    for (const char* kept : {"embed.weight", "head.weight", "layers.1.attn.compressor.wkv.weight",
                             "layers.1.attn.indexer.weights_proj.weight", "layers.0.ffn.gate.weight",
                             "layers.1.attn.compressor.ape", "layers.0.hc_attn_fn", "layers.0.attn.attn_sink"})
      EXPECT_EQ(got.at(kept).bytes, src.at(kept).bytes) << kept;
    // w1/w3 of the shared experts share their global and input scales.
    EXPECT_EQ(got.at("layers.0.ffn.shared_experts.w1.weight_scale_2").bytes,
              got.at("layers.0.ffn.shared_experts.w3.weight_scale_2").bytes);
    EXPECT_EQ(got.at("layers.0.ffn.shared_experts.w1.input_scale").bytes,
              got.at("layers.0.ffn.shared_experts.w3.input_scale").bytes);
    const auto hf = read_json_file(out + "/hf_quant_config.json");
    EXPECT_EQ(hf.at("quantization").at("quant_algo"), "NVFP4");
    const auto config = read_json_file(out + "/config.json");
    EXPECT_EQ(config.at("quantization_config").at("quant_method"), "modelopt");
    EXPECT_EQ(config.at("quantization_config").at("quant_algo"), "NVFP4");
    EXPECT_TRUE(config.at("quantization_config").at("config_groups").at("group_0").contains("input_activations"));
    const auto ignore = config.at("quantization_config").at("ignore");
    EXPECT_NE(std::find(ignore.begin(), ignore.end(), "head"), ignore.end()) << ignore.dump();
  }
}

TEST(ConvertAllLinear, WeightOnlyIsW4A16AndExcludeMakesItMixed) {
  const std::string dir = testing::fresh_temp_dir("convert-all-linear-wo");
  const auto r = run_fp4kit("convert " + test_data("dsv4-tiny") + " " + dir + "/a --recipe all-linear --weight-only "
                            "--quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_json_file(dir + "/a/hf_quant_config.json").at("quantization").at("quant_algo"), "W4A16_NVFP4");
  const auto q = read_json_file(dir + "/a/config.json").at("quantization_config");
  EXPECT_EQ(q.at("quant_algo"), "W4A16_NVFP4");
  EXPECT_FALSE(q.at("config_groups").at("group_0").contains("input_activations"));

  // --exclude keeps the attention in FP8: a mixed checkpoint whose config keeps the FP8 block description.
  const auto m = run_fp4kit("convert " + test_data("dsv4-tiny") + " " + dir + "/m --recipe all-linear --weight-only "
                            "--exclude '\\.attn\\.' --quiet");
  ASSERT_EQ(m.exit_code, 0) << m.output;
  const Checkpoint got = read_checkpoint(dir + "/m");
  const Checkpoint src = read_checkpoint(test_data("dsv4-tiny"));
  EXPECT_EQ(got.at("layers.0.attn.wq_a.weight").bytes, src.at("layers.0.attn.wq_a.weight").bytes);
  EXPECT_TRUE(got.count("layers.0.attn.wq_a.scale"));
  EXPECT_TRUE(got.count("layers.0.ffn.shared_experts.w1.weight_scale_2"));
  const auto mq = read_json_file(dir + "/m/config.json").at("quantization_config");
  EXPECT_EQ(mq.at("quant_algo"), "MIXED_PRECISION");
  EXPECT_EQ(mq.at("quant_method"), "fp8");
  EXPECT_TRUE(mq.at("quantized_layers").contains("layers.0.ffn.shared_experts.w1"));

  // --include on an always-kept tensor is refused, naming it.
  const auto bad = run_fp4kit("convert " + test_data("dsv4-tiny") + " " + dir + "/b --weight-only --include '^head'");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("'head.weight'"), std::string::npos) << bad.output;
}

TEST(ConvertAllLinear, DryRunCountsAndLayoutFiles) {
  const std::string dir = testing::fresh_temp_dir("convert-all-linear-dry");
  const auto dry = run_fp4kit("convert " + test_data("dsv4-tiny") + " " + dir + "/out --recipe all-linear "
                              "--weight-only --dry-run --format compressed-tensors");
  ASSERT_EQ(dry.exit_code, 0) << dry.output;
  EXPECT_FALSE(fs::exists(dir + "/out"));
  // 96 routed + 96 MTP experts transcoded; 4 layers x 5 attention + 3 shared + 1 indexer (+ MTP) quantized.
  const size_t scaled = count_suffix(read_checkpoint(test_data("dsv4-tiny")), ".scale");
  char drop_line[64];
  std::snprintf(drop_line, sizeof drop_line, "%-9s %7zu tensors", "drop", scaled);  // every scale
  EXPECT_NE(dry.output.find(drop_line), std::string::npos) << dry.output;
  EXPECT_NE(dry.output.find("format compressed-tensors"), std::string::npos) << dry.output;
  EXPECT_EQ(dry.output.find("hf_quant_config.json"), std::string::npos) << dry.output;
  EXPECT_NE(dry.output.find("config.json"), std::string::npos) << dry.output;
}

// The measured calibration of the tiny checkpoint (attention, shared and routed experts of layers
// 0-3), with values added for the modules it has none for (indexer wq_b, the MTP block).
std::map<std::string, float> measured_calibration_values() {
  std::map<std::string, float> values;
  const io::SafetensorsFile f = io::SafetensorsFile::open(test_data("calib/oracle/amax_routed.safetensors"));
  for (const io::TensorInfo& t : f.tensors()) {
    float v = 0;
    f.read(t, std::as_writable_bytes(std::span(&v, 1)));
    values[t.name.substr(0, t.name.size() - std::string(".input_amax").size())] = v;
  }
  for (const auto& [name, t] : read_checkpoint(test_data("dsv4-tiny")))
    if (name.ends_with(".scale")) values.try_emplace(name.substr(0, name.size() - 6), 3.25f);
  return values;
}

// vLLM loads wq_a/wkv of V4's attention (fused_wqa_wkv) and w1/w3 into one GEMM with one global and
// one input scale; `fp4kit verify` fails a checkpoint whose pairs differ. Both layouts, weight-only
// and calibrated, must pass it against the source.
TEST(ConvertAllLinear, FusedPairsShareTheirScalesAndVerifyPasses) {
  const std::string dir = testing::fresh_temp_dir("convert-all-linear-fused");
  std::map<std::string, float> values = measured_calibration_values();
  // wq_a and wkv see the same activation, so a calibration measures one value for both; make them
  // differ, either way round, so that the max rule shows.
  values.at("layers.0.attn.wkv") *= 1.5f;
  values.at("layers.3.attn.wq_a") *= 2.0f;
  values.at("mtp.0.attn.wkv") *= 1.25f;
  const std::string calib = dir + "/calib.safetensors";
  testing::write_calibration(calib, values);
  for (const bool ct : {false, true}) {
    for (const bool weight_only : {true, false}) {
      const std::string out = dir + "/out-" + (ct ? "ct" : "mo") + (weight_only ? "-wo" : "-calib");
      SCOPED_TRACE(out);
      const auto r = run_fp4kit("convert " + test_data("dsv4-tiny") + " " + out + " --recipe all-linear --quiet" +
                                (ct ? " --format compressed-tensors" : "") +
                                (weight_only ? std::string(" --weight-only") : " --calib " + calib));
      ASSERT_EQ(r.exit_code, 0) << r.output;
      const auto v = run_fp4kit("verify " + out + " --source " + test_data("dsv4-tiny"));
      EXPECT_EQ(v.exit_code, 0) << v.output;
      const Checkpoint got = read_checkpoint(out);
      const std::string global = ct ? ".weight_global_scale" : ".weight_scale_2";
      const std::string input = ct ? ".input_global_scale" : ".input_scale";
      for (const std::string parent : {"layers.0.attn", "layers.3.attn", "mtp.0.attn"}) {
        EXPECT_EQ(got.at(parent + ".wq_a" + global).bytes, got.at(parent + ".wkv" + global).bytes) << parent;
        if (weight_only) {
          EXPECT_FALSE(got.count(parent + ".wq_a" + input)) << parent;
          continue;
        }
        EXPECT_EQ(got.at(parent + ".wq_a" + input).bytes, got.at(parent + ".wkv" + input).bytes) << parent;
        if (!ct) {  // ModelOpt: f32(max(amax_wq_a, amax_wkv) / 2688)
          EXPECT_EQ(f32_of(got.at(parent + ".wkv.input_scale").bytes),
                    std::max(values.at(parent + ".wq_a"), values.at(parent + ".wkv")) / kNvfp4ScaleDenominator)
              << parent;
        }
      }
      // The global scale comes from the larger weight amax of the two: the other half's blocks
      // then never need a scale above the largest E4M3 step.
      EXPECT_EQ(got.at("layers.1.ffn.shared_experts.w1" + global).bytes,
                got.at("layers.1.ffn.shared_experts.w3" + global).bytes);
    }
  }

  // --recipe moe takes the same file: the values of modules it keeps are reported as unused.
  const auto moe = run_fp4kit("convert " + test_data("dsv4-tiny") + " " + dir + "/moe --calib " + calib);
  ASSERT_EQ(moe.exit_code, 0) << moe.output;
  EXPECT_NE(moe.output.find("not used ('layers.0.attn.wkv'"), std::string::npos) << moe.output;
  EXPECT_EQ(run_fp4kit("verify " + dir + "/moe --source " + test_data("dsv4-tiny")).exit_code, 0);

  // Half a fused pair cannot become NVFP4: it is refused, naming both.
  const auto split = run_fp4kit("convert " + test_data("dsv4-tiny") + " " + dir + "/split --recipe all-linear "
                                "--weight-only --exclude 'attn\\.wkv'");
  EXPECT_EQ(split.exit_code, 2) << split.output;
  EXPECT_NE(split.output.find("'layers.0.attn.wq_a.weight'"), std::string::npos) << split.output;
  EXPECT_NE(split.output.find("'layers.0.attn.wkv.weight'"), std::string::npos) << split.output;
  EXPECT_FALSE(fs::exists(dir + "/split"));
}

// compressed-tensors matches `ignore` entries exactly, or with a "re:" prefix as a regex from the
// start of the name (Python's re.match); a glob such as "layers.*.ffn.gate" would match nothing.
TEST(ConvertCompressedTensors, IgnoreEntriesAreExactNamesOrAnchoredRegexes) {
  const std::string dir = testing::fresh_temp_dir("convert-ct-ignore");
  ASSERT_EQ(run_fp4kit("convert " + test_data("dsv4-tiny") + " " + dir + "/out --recipe all-linear --format "
                       "compressed-tensors --weight-only --quiet").exit_code, 0);
  const auto ignore = read_json_file(dir + "/out/config.json").at("quantization_config").at("ignore");
  std::set<std::string> kept, converted;  // linear modules by name
  for (const auto& [name, t] : read_checkpoint(dir + "/out")) {
    if (name.ends_with(".weight_packed")) converted.insert(name.substr(0, name.size() - 14));
    else if (name.ends_with(".weight") && t.shape.size() == 2) kept.insert(name.substr(0, name.size() - 7));
  }
  std::set<std::string> matched;
  size_t regexes = 0;
  for (const auto& entry : ignore) {
    const std::string e = entry.get<std::string>();
    EXPECT_EQ(e.find('*') == std::string::npos || e.starts_with("re:"), true) << e;
    if (!e.starts_with("re:")) {
      EXPECT_TRUE(kept.count(e)) << e << " names no kept module";
      matched.insert(e);
      continue;
    }
    ++regexes;
    const std::regex re(e.substr(3));
    size_t hits = 0;
    auto match = [&](const std::string& name) {
      return std::regex_search(name, re, std::regex_constants::match_continuous);  // re.match
    };
    for (const std::string& m : kept)
      if (match(m)) {
        matched.insert(m);
        ++hits;
      }
    EXPECT_GT(hits, 0u) << e;
    for (const std::string& m : converted) EXPECT_FALSE(match(m)) << e << " matches the NVFP4 module " << m;
  }
  EXPECT_GT(regexes, 0u);
  EXPECT_EQ(matched, kept);  // every kept linear module is ignored
  EXPECT_TRUE(matched.count("layers.2.ffn.gate"));
}

TEST(ConvertCompressedTensors, AllLinearDequantizesToTheSource) {
  const std::string dir = testing::fresh_temp_dir("convert-ct");
  const std::string calib = all_linear_calibration(dir + "/calib.safetensors");
  const Checkpoint src = read_checkpoint(test_data("dsv4-tiny"));
  const std::string out = dir + "/out";
  const auto r = run_fp4kit("convert " + test_data("dsv4-tiny") + " " + out + " --recipe all-linear --format "
                            "compressed-tensors --calib " + calib + " --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Checkpoint got = read_checkpoint(out);
  EXPECT_EQ(count_suffix(got, ".weight_packed"), count_suffix(src, ".scale"));
  EXPECT_EQ(count_suffix(got, ".input_global_scale"), count_suffix(src, ".scale"));
  EXPECT_EQ(count_suffix(got, ".weight_scale_2"), 0u);
  EXPECT_EQ(got.at("layers.0.attn.wq_a.weight_global_scale").shape, (std::vector<int64_t>{1}));
  const ModuleCheck check = expect_dequant_matches(src, got, true, [](const std::string& m) {
    return m.find(".experts.") != std::string::npos && m.find("shared") == std::string::npos;
  });
  EXPECT_EQ(check.modules, count_suffix(src, ".scale"));
  EXPECT_GT(check.exact_modules, 0u);
  EXPECT_EQ(expect_kept_identical(src, got), src.size() - 2 * count_suffix(src, ".scale"));
  EXPECT_FALSE(fs::exists(out + "/hf_quant_config.json"));
  const auto q = read_json_file(out + "/config.json").at("quantization_config");
  EXPECT_EQ(q.at("quant_method"), "compressed-tensors");
  EXPECT_EQ(q.at("format"), "nvfp4-pack-quantized");
  EXPECT_EQ(q.at("config_groups").at("group_0").at("input_activations").at("dynamic"), "local");

  // Weight-only: NVFP4A16 (no input_activations), and the moe recipe (FP8 blocks left) is refused.
  ASSERT_EQ(run_fp4kit("convert " + test_data("dsv4-tiny") + " " + dir + "/wo --recipe all-linear --format "
                       "compressed-tensors --weight-only --quiet").exit_code, 0);
  EXPECT_TRUE(read_json_file(dir + "/wo/config.json")
                  .at("quantization_config").at("config_groups").at("group_0").at("input_activations").is_null());
  const auto moe = run_fp4kit("convert " + test_data("dsv4-tiny") + " " + dir + "/moe --format compressed-tensors "
                              "--weight-only");
  EXPECT_EQ(moe.exit_code, 2) << moe.output;
  EXPECT_NE(moe.output.find("all-linear"), std::string::npos) << moe.output;
}

// ModelOpt's quantizer on DeepSeek V4 FP8 blocks (the golden v4_* cases), through the whole command.
TEST(ConvertAllLinear, Fp8BlocksGiveModelOptsBytes) {
  const testing::OracleFile golden("oracles/nvfp4/deepseek_fp8_to_nvfp4.safetensors");
  const std::string dir = testing::fresh_temp_dir("convert-fp8-golden");
  const std::map<std::string, std::string> module_of = {{"v4_a", "layers.0.attn.wq_b"},
                                                        {"v4_b", "layers.0.attn.wo_a"},
                                                        {"v4_w1", "layers.0.ffn.shared_experts.w1"},
                                                        {"v4_w3", "layers.0.ffn.shared_experts.w3"}};
  std::vector<testing::FakeTensor> tensors;
  for (const auto& [c, m] : module_of) {
    const auto& w = golden.info("fp8." + c + ".weight");
    const auto& s = golden.info("fp8." + c + ".scale");
    tensors.push_back({m + ".weight", w.dtype, w.shape, golden.bytes("fp8." + c + ".weight")});
    tensors.push_back({m + ".scale", s.dtype, s.shape, golden.bytes("fp8." + c + ".scale")});
  }
  testing::write_checkpoint(dir + "/src", {tensors});
  const auto r = run_fp4kit("convert " + dir + "/src " + dir + "/out --recipe all-linear --weight-only --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Checkpoint got = read_checkpoint(dir + "/out");
  for (const auto& [c, m] : module_of)
    for (const char* part : {".weight", ".weight_scale", ".weight_scale_2"})
      EXPECT_TRUE(testing::BytesEqual(got.at(m + part).bytes, golden.bytes("out." + c + part))) << m << part;
}

// ---- bad input --------------------------------------------------------------------------------

TEST(ConvertBadSource, KNotAMultipleOf16IsKeptWithAWarningOrFailsWithStrict) {
  const std::string dir = testing::fresh_temp_dir("convert-k16");
  const std::string src = dir + "/src";
  // Two FP8 matrices of one 128x128 scale block; wq_a has K = 120.
  std::vector<uint8_t> finite = testing::random_bytes(128 * 128, 5);
  for (auto& b : finite) b &= 0x77;  // no E4M3 NaN
  testing::write_checkpoint(src, {{{"layers.0.attn.wq_a.weight", DType::F8_E4M3, {128, 120}, {}},
                                   {"layers.0.attn.wq_a.scale", DType::F8_E8M0, {1, 1}, {127}},
                                   {"layers.0.attn.wo_b.weight", DType::F8_E4M3, {128, 128}, finite},
                                   {"layers.0.attn.wo_b.scale", DType::F8_E8M0, {1, 1}, {120}}}},
                            std::string(R"({"quantization_config": {"quant_method": "fp8"}})"));
  const auto warned = run_fp4kit("convert " + src + " " + dir + "/out --recipe all-linear --weight-only");
  ASSERT_EQ(warned.exit_code, 0) << warned.output;
  EXPECT_NE(warned.output.find("warning"), std::string::npos) << warned.output;
  EXPECT_NE(warned.output.find("'layers.0.attn.wq_a.weight'"), std::string::npos) << warned.output;
  const Checkpoint got = read_checkpoint(dir + "/out");
  EXPECT_EQ(got.at("layers.0.attn.wq_a.weight").dtype, DType::F8_E4M3);
  EXPECT_TRUE(got.count("layers.0.attn.wq_a.scale"));
  EXPECT_EQ(read_json_file(dir + "/out/config.json").at("quantization_config").at("quant_algo"), "MIXED_PRECISION");

  const auto strict = run_fp4kit("convert " + src + " " + dir + "/strict --recipe all-linear --weight-only --strict");
  EXPECT_EQ(strict.exit_code, 2) << strict.output;
  EXPECT_NE(strict.output.find("'layers.0.attn.wq_a.weight'"), std::string::npos) << strict.output;
  EXPECT_TRUE(testing::final_outputs(dir + "/strict").empty());
}

TEST(ConvertBadSource, NonFiniteFp8WeightFailsNamingItUnlessAllowed) {
  const std::string dir = testing::fresh_temp_dir("convert-nan-fp8");
  const std::string src = testing::copy_tiny(dir);
  testing::poke_tensor_byte(src, "layers.1.attn.wo_b.weight", 77, 0x7F);  // E4M3 NaN
  const auto r = run_fp4kit("convert " + src + " " + dir + "/out --recipe all-linear --weight-only");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("'layers.1.attn.wo_b.weight'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--allow-nonfinite"), std::string::npos) << r.output;
  EXPECT_EQ(run_fp4kit("convert " + src + " " + dir + "/ok --recipe all-linear --weight-only --allow-nonfinite "
                       "--quiet").exit_code, 0);
  // The moe recipe copies that tensor as it is.
  EXPECT_EQ(run_fp4kit("convert " + src + " " + dir + "/moe --weight-only --quiet").exit_code, 0);
}

// Runs the binary with a file-size limit (as a full disk would stop it), SIGXFSZ ignored so that
// the write fails with EFBIG; returns the exit status and the output.
std::pair<int, std::string> run_with_file_size_limit(const std::string& args, rlim_t limit, const std::string& log) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::signal(SIGXFSZ, SIG_IGN);
    const rlimit rl{limit, limit};
    ::setrlimit(RLIMIT_FSIZE, &rl);
    const std::string cmd = testing::fp4kit_binary() + " " + args + " > " + log + " 2>&1";
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  std::ifstream in(log);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
          std::string(std::istreambuf_iterator<char>(in), {})};
}

TEST(ConvertBadSource, FullDiskFailsCleanlyAndResumes) {
  const std::string dir = testing::fresh_temp_dir("convert-full-disk");
  const std::string out = dir + "/out", want = dir + "/want";
  const std::string args = "convert " + test_data("dsv4-tiny") + " " + out + " --weight-only --quiet";
  ASSERT_EQ(run_fp4kit("convert " + test_data("dsv4-tiny") + " " + want + " --weight-only --quiet").exit_code, 0);
  // The first shard (about 1.7 MB) fits, the second does not.
  const auto [code, output] = run_with_file_size_limit(args, 1700000, dir + "/log.txt");
  EXPECT_EQ(code, 3) << output;
  EXPECT_NE(output.find("model-00002-of-00003.safetensors"), std::string::npos) << output;
  EXPECT_NE(output.find("--resume"), std::string::npos) << output;
  EXPECT_EQ(testing::final_outputs(out).size(), 1u);  // no half-written shard under a final name
  const auto resumed = run_fp4kit(args + " --resume --json " + dir + "/r.json");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(read_json_file(dir + "/r.json").at("shards_skipped"), 1);
  EXPECT_TRUE(read_tree(out) == read_tree(want));
}

// ---- resume -----------------------------------------------------------------------------------

TEST(ConvertResume, AllLinearKilledRunResumesToIdenticalOutput) {
  const std::string dir = testing::fresh_temp_dir("convert-resume-all-linear");
  const std::string want = dir + "/want", out = dir + "/out";
  const std::string args = " --recipe all-linear --format compressed-tensors --weight-only --quiet";
  ASSERT_EQ(run_fp4kit("convert " + test_data("dsv4-tiny") + " " + want + args).exit_code, 0);
  ::setenv(kCrashAfterShardsEnv, "2", 1);
  const auto killed = run_fp4kit("convert " + test_data("dsv4-tiny") + " " + out + args);
  ::unsetenv(kCrashAfterShardsEnv);
  EXPECT_EQ(killed.exit_code, 137) << killed.output;
  EXPECT_EQ(testing::final_outputs(out).size(), 2u);
  const auto other = run_fp4kit("convert " + test_data("dsv4-tiny") + " " + out + " --weight-only --resume --quiet");
  EXPECT_EQ(other.exit_code, 2) << other.output;  // another recipe and format
  EXPECT_NE(other.output.find("--format"), std::string::npos) << other.output;
  const auto resumed = run_fp4kit("convert " + test_data("dsv4-tiny") + " " + out + args + " --resume --json " + dir + "/r.json");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(read_json_file(dir + "/r.json").at("shards_skipped"), 2);
  EXPECT_TRUE(read_tree(out) == read_tree(want));
}

TEST(ConvertResume, ShardWhoseHashNoLongerMatchesIsWrittenAgain) {
  const std::string dir = testing::fresh_temp_dir("convert-resume-hash");
  const std::string out = dir + "/out", want = dir + "/want";
  const std::string args = " --weight-only --quiet";
  ASSERT_EQ(run_fp4kit("convert " + test_data("dsv4-tiny") + " " + want + args).exit_code, 0);
  ::setenv(kCrashAfterShardsEnv, "2", 1);
  EXPECT_EQ(run_fp4kit("convert " + test_data("dsv4-tiny") + " " + out + args).exit_code, 137);
  ::unsetenv(kCrashAfterShardsEnv);
  const auto plan = read_json_file(out + "/" + std::string(kConvertPlanFileName));
  ASSERT_TRUE(plan.at("finished_shards").contains("model-00001-of-00003.safetensors")) << plan.dump();
  EXPECT_EQ(plan.at("finished_shards").at("model-00001-of-00003.safetensors").at("xxh3_64").get<std::string>().size(), 16u);
  // A flipped data byte in the first shard: same header, same size, another hash.
  const std::string shard = out + "/model-00001-of-00003.safetensors";
  uint64_t at = 0;
  {
    const io::SafetensorsFile f = io::SafetensorsFile::open(shard);
    at = f.header().data_offset + 100;
  }
  std::fstream file(shard, std::ios::in | std::ios::out | std::ios::binary);
  file.seekg(static_cast<std::streamoff>(at));
  const char old = static_cast<char>(file.get());
  file.seekp(static_cast<std::streamoff>(at));
  file.put(static_cast<char>(~old));
  file.close();
  const auto resumed = run_fp4kit("convert " + test_data("dsv4-tiny") + " " + out + args + " --resume --json " + dir + "/r.json");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(read_json_file(dir + "/r.json").at("shards_skipped"), 1);
  EXPECT_TRUE(read_tree(out) == read_tree(want));
}

}  // namespace
}  // namespace fp4kit
