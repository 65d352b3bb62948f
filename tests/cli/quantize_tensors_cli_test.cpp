// `fp4kit quantize-tensors` end to end: the reference inputs in, the reference bytes out.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "io/safetensors_writer.h"
#include "oracle_file.h"
#include "run_command.h"

namespace fp4kit {
namespace {

using testing::BytesEqual;
using testing::OracleFile;
using testing::run_fp4kit;

const char* const kCases[] = {"normal_s1", "normal_s1e-3", "normal_s300", "student_t3", "zero_blocks",
                              "scale_edges", "underflow", "neg_zero", "ties", "all_zero",
                              "fp32_normal", "gate", "up"};

// A file holding only the reference inputs `in.<case>`, as a user would hand them over.
std::string write_inputs(const OracleFile& oracle, const std::string& dir) {
  const std::string path = dir + "/inputs.safetensors";
  io::SafetensorsWriter w(path);
  for (const std::string c : kCases) {
    const auto& t = oracle.info("in." + c);
    w.declare(t.name, t.dtype, t.shape);
  }
  w.begin();
  for (const auto& t : w.layout()) {
    const auto bytes = oracle.bytes(t.name);
    w.write(t.name, std::as_bytes(std::span(bytes)));
  }
  w.commit();
  return path;
}

struct LayoutCase {
  const char* numerics;
  const char* oracle;
  const char* prefix;  // oracle tensor prefix
  const char* packed;
  const char* global;
};

class QuantizeTensorsCli : public ::testing::TestWithParam<LayoutCase> {};

TEST_P(QuantizeTensorsCli, MatchesReferenceBytes) {
  const LayoutCase lc = GetParam();
  const OracleFile oracle(std::string("oracles/nvfp4/") + lc.oracle);
  const std::string dir = testing::fresh_temp_dir("qt");
  const std::string in = write_inputs(oracle, dir);
  const std::string out = dir + "/out.safetensors";
  const auto r = run_fp4kit("quantize-tensors " + in + " " + out + " --numerics " + lc.numerics +
                            " --threads 3 --json " + dir + "/report.json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const io::SafetensorsFile result = io::SafetensorsFile::open(out);
  EXPECT_EQ(result.tensors().size(), 3 * std::size(kCases));
  for (const std::string c : kCases) {
    const std::string mine = "in." + c, theirs = std::string(lc.prefix) + c;
    for (auto [suffix_mine, suffix_theirs] : {std::pair{lc.packed, lc.packed}, std::pair{".weight_scale", ".weight_scale"},
                                              std::pair{lc.global, lc.global}}) {
      const auto& t = result.at(mine + suffix_mine);
      EXPECT_EQ(t.shape, oracle.info(theirs + suffix_theirs).shape) << mine + suffix_mine;
      EXPECT_EQ(t.dtype, oracle.info(theirs + suffix_theirs).dtype) << mine + suffix_mine;
      std::vector<uint8_t> got(t.nbytes());
      result.read(t, std::as_writable_bytes(std::span(got)));
      EXPECT_TRUE(BytesEqual(got, oracle.bytes(theirs + suffix_theirs))) << mine + suffix_mine;
    }
  }
  std::ifstream report(dir + "/report.json");
  const auto j = nlohmann::json::parse(report);
  EXPECT_EQ(j["tensors"].size(), std::size(kCases));
  bool gate_fused = false;
  for (const auto& t : j["tensors"])
    if (t["name"] == "in.gate") gate_fused = t.value("fused_with", "") == "in.up";
  EXPECT_TRUE(gate_fused);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, QuantizeTensorsCli,
    ::testing::Values(LayoutCase{"modelopt", "modelopt_nvfp4.safetensors", "out.", ".weight", ".weight_scale_2"},
                      LayoutCase{"modelopt-cuda", "modelopt_nvfp4.safetensors", "cuda.", ".weight", ".weight_scale_2"},
                      LayoutCase{"compressed-tensors", "compressed_tensors_nvfp4.safetensors", "out.",
                                 ".weight_packed", ".weight_global_scale"}),
    [](const auto& param_info) {
      std::string n = param_info.param.numerics;
      for (auto& ch : n)
        if (ch == '-') ch = '_';
      return n;
    });

TEST(QuantizeTensorsCliErrors, TruncatedInputNamesTheFileAndLeavesNoOutput) {
  const std::string dir = testing::fresh_temp_dir("qt-bad");
  const OracleFile oracle("oracles/nvfp4/modelopt_nvfp4.safetensors");
  const std::string in = write_inputs(oracle, dir);
  std::filesystem::resize_file(in, std::filesystem::file_size(in) - 1000);
  const std::string out = dir + "/out.safetensors";
  const auto r = run_fp4kit("quantize-tensors " + in + " " + out);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(in), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(out));
  for (const auto& e : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

TEST(QuantizeTensorsCliErrors, NotSafetensorsAndBadFlags) {
  const std::string dir = testing::fresh_temp_dir("qt-bad2");
  const std::string in = dir + "/junk.safetensors";
  std::ofstream(in) << "this is not a safetensors file at all";
  auto r = run_fp4kit("quantize-tensors " + in + " " + dir + "/o.safetensors");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("junk.safetensors"), std::string::npos) << r.output;
  r = run_fp4kit("quantize-tensors " + in + " " + dir + "/o.safetensors --numerics fp8");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = run_fp4kit("quantize-tensors --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("--numerics"), std::string::npos);
}

TEST(QuantizeTensorsCliErrors, OutputDirectoryMissing) {
  const std::string dir = testing::fresh_temp_dir("qt-bad3");
  const OracleFile oracle("oracles/nvfp4/modelopt_nvfp4.safetensors");
  const std::string in = write_inputs(oracle, dir);
  const auto r = run_fp4kit("quantize-tensors " + in + " " + dir + "/no/such/dir/o.safetensors");
  EXPECT_EQ(r.exit_code, 3) << r.output;  // an I/O failure, not bad usage
  EXPECT_NE(r.output.find("no/such/dir/o.safetensors"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace fp4kit
