// The run, generate and compare commands as a user runs them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>
#include <span>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "cuda/device.h"
#include "engine/token_ids.h"
#include "engine_test_util.h"
#include "run_command.h"

namespace fp4kit::testing {
namespace {

std::string last_line(const std::string& text) {
  std::string t = text;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  const size_t nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

TEST(EngineCli, RunWritesTheLogitsOfABatch) {
  const std::string out = fresh_temp_dir("engine-run") + "/logits.safetensors";
  const std::string ref_file = test_data("dsv4-tiny/reference.safetensors");
  const CommandResult r = run_fp4kit("run " + tiny_dir() + " --ids-file " + ref_file + " --out " + out + " --threads 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["batch"], 2);
  EXPECT_EQ(j["seq"], 144);
  const io::SafetensorsFile f = io::SafetensorsFile::open(out);
  EXPECT_EQ(f.at("logits").shape, (std::vector<int64_t>{2, 144, 1024}));
  std::vector<float> logits(2 * 144 * 1024);
  f.read(f.at("logits"), std::as_writable_bytes(std::span<float>(logits)));
  EXPECT_TRUE(finite_below(max_abs_diff(logits, Reference().f32("logits")), 5e-5f));
  // The printed top token of sequence 1 is the argmax of its last row.
  const float* last = &logits[(2 * 144 - 1) * 1024];
  EXPECT_EQ(j["last_position"][1]["top"][0]["id"].get<int64_t>(), std::max_element(last, last + 1024) - last);
}

// Where there is no GPU (or the build has no CUDA): checks that the command exited 2 naming
// --device cuda, and returns why there is none; nullopt where there is a GPU.
std::optional<std::string> refused_without_gpu(const CommandResult& r) {
  std::string why_not;
  if (cuda::probe(0, &why_not)) return std::nullopt;
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--device cuda"), std::string::npos) << r.output;
  return why_not;
}

// `run --device cuda` gives transformers' logits too where there is a GPU, and exit 2 with the reason
// where there is none (or the build has no CUDA).
TEST(EngineCli, RunOnTheGpuMatchesTransformersOrSaysWhyNot) {
  const std::string out = fresh_temp_dir("engine-run-gpu") + "/logits.safetensors";
  const std::string ref_file = test_data("dsv4-tiny/reference.safetensors");
  const CommandResult r = run_fp4kit("run " + tiny_dir() + " --ids-file " + ref_file + " --out " + out + " --device cuda --precision f32 --json");
  if (const std::optional<std::string> why_not = refused_without_gpu(r))
    GTEST_SKIP() << "no GPU to run on (" << *why_not << "); checked the exit code and the message";
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["device"], "cuda");
  EXPECT_EQ(j["precision"], "f32");
  const io::SafetensorsFile f = io::SafetensorsFile::open(out);
  std::vector<float> logits(2 * 144 * 1024);
  f.read(f.at("logits"), std::as_writable_bytes(std::span<float>(logits)));
  const std::vector<float> want = Reference().f32("logits");
  ASSERT_EQ(want.size(), logits.size());
  float worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_TRUE(std::isfinite(logits[i])) << i;
    worst = std::max(worst, std::fabs(logits[i] - want[i]));
  }
  EXPECT_LT(worst, 1e-4f);
}

TEST(EngineCli, GenerateMatchesTransformersFromATextPrompt) {
  Reference ref;
  const std::vector<int64_t> prompt = ref.i64("gen.prompt_ids"), output = ref.i64("gen.output_ids");
  const std::string file = fresh_temp_dir("engine-gen") + "/prompt.txt";
  {
    std::ofstream f(file);
    for (int64_t id : prompt) f << id << ' ';
    f << '\n';
  }
  const CommandResult r = run_fp4kit("generate " + tiny_dir() + " --ids-file " + file + " --max-new-tokens 16");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string expected;
  for (size_t i = prompt.size(); i < output.size(); ++i) {
    if (!expected.empty()) expected += ' ';
    expected += std::to_string(output[i]);
  }
  EXPECT_EQ(last_line(r.output), expected);
}

// `generate --device cuda --precision f32` gives transformers' greedy tokens and step logits where
// there is a GPU (the GPU pass reruns the sequence for each token), and exit 2 with the reason where
// there is none.
TEST(EngineCli, GenerateOnTheGpuMatchesTransformersOrSaysWhyNot) {
  Reference ref;
  const std::vector<int64_t> prompt = ref.i64("gen.prompt_ids"), output = ref.i64("gen.output_ids");
  std::string ids;
  for (int64_t id : prompt) ids += (ids.empty() ? "" : " ") + std::to_string(id);
  const int64_t n = static_cast<int64_t>(output.size() - prompt.size());
  const CommandResult r = run_fp4kit("generate " + tiny_dir() + " --ids \"" + ids + "\" --max-new-tokens " +
                                     std::to_string(n) + " --device cuda --precision f32");
  if (const std::optional<std::string> why_not = refused_without_gpu(r))
    GTEST_SKIP() << "no GPU to run on (" << *why_not << "); checked the exit code and the message";
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string expected;
  for (size_t i = prompt.size(); i < output.size(); ++i) expected += (expected.empty() ? "" : " ") + std::to_string(output[i]);
  EXPECT_EQ(last_line(r.output), expected);
}

// `generate --profile`: on the CPU one line saying there is no split; on the GPU the stage table,
// the host time by call and the steps' spread, with numbers in order (min <= median <= max).
TEST(EngineCli, GenerateProfileSplitsAGpuStepOrSaysWhyNot) {
  const std::string args = "generate " + tiny_dir() + " --ids \"0 5 9 33\" --max-new-tokens 5 --ignore-eos --profile";
  const CommandResult cpu = run_fp4kit(args);
  ASSERT_EQ(cpu.exit_code, 0) << cpu.output;
  EXPECT_NE(cpu.output.find("profile: no decode step was measured"), std::string::npos) << cpu.output;
  const CommandResult r = run_fp4kit(args + " --device cuda --precision f32");
  if (const std::optional<std::string> why_not = refused_without_gpu(r))
    GTEST_SKIP() << "no GPU to run on (" << *why_not << "); the CPU's line was checked";
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(last_line(r.output), last_line(cpu.output));  // f32 on both: the same greedy tokens
  for (const char* row : {"decode step by stage", "embed.gather", "attention.core", "moe.routed", "  sum ",
                          "host time by call, ms per step: embed_next"})
    EXPECT_NE(r.output.find(row), std::string::npos) << row << "\n" << r.output;
  const size_t at = r.output.find("step wall time, ms: first ");
  ASSERT_NE(at, std::string::npos) << r.output;
  double first = NAN, median = NAN, lo = NAN, hi = NAN;
  ASSERT_EQ(std::sscanf(r.output.c_str() + at, "step wall time, ms: first %lf, median %lf, min %lf, max %lf", &first,
                        &median, &lo, &hi),
            4)
      << r.output.substr(at);
  EXPECT_TRUE(lo > 0 && lo <= median && median <= hi && lo <= first && first <= hi)  // false on NaN
      << first << " " << median << " " << lo << " " << hi;
}

TEST(EngineCli, CompareSourceWithItsLosslessNvfp4Cast) {
  // The default conversion casts MXFP4 experts to NVFP4 losslessly, so the converted model's logits
  // equal the source's exactly: KL 0, full top-1 agreement. This also runs NVFP4 storage end to end.
  const std::string dst = fresh_temp_dir("engine-compare") + "/nvfp4";
  const CommandResult conv = run_fp4kit("convert " + tiny_dir() + " " + dst + " --calib " +
                                        test_data("oracles/dsv4-tiny-modelopt/calib_amax.safetensors") + " --quiet");
  ASSERT_EQ(conv.exit_code, 0) << conv.output;
  const CommandResult r = run_fp4kit("compare " + tiny_dir() + " " + dst + " --ids \"0 5 99 7 1000 3 3 3\" --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["summary"]["max_kl"].get<double>(), 0.0);
  EXPECT_EQ(j["summary"]["top1_agreement"].get<double>(), 1.0);
  EXPECT_EQ(j["positions"].size(), 8u);
}

TEST(EngineCli, TokenIdParsing) {
  const engine::TokenBatch b = engine::parse_token_ids("0 1,2\n\n3 4 5\n", "ids");
  EXPECT_EQ(b.batch, 2);
  EXPECT_EQ(b.ids, (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
  EXPECT_THROW(engine::parse_token_ids("1 2\n3\n", "ids"), fp4kit::InputError);
  EXPECT_THROW(engine::parse_token_ids("1 x2", "ids"), fp4kit::InputError);
  EXPECT_THROW(engine::parse_token_ids("  \n", "ids"), fp4kit::InputError);
  const CommandResult r = run_fp4kit("run " + tiny_dir());
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

}  // namespace
}  // namespace fp4kit::testing
