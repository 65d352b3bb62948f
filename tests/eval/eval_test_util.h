#pragma once
// Shared by the eval tests: `fp4kit eval` runs on the tiny fixture against its conversions, and their
// JSON reports.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "io/safetensors_file.h"
#include "verify/verify_test_util.h"

namespace fp4kit::testing {

// The calibration batch of the tiny fixture, 4 x 96 token ids.
inline std::string eval_ids() { return test_data("calib/oracle/calib_ids.safetensors"); }
inline std::vector<int64_t> eval_token_ids() {
  const io::SafetensorsFile f = io::SafetensorsFile::open(eval_ids());
  const io::TensorInfo& t = f.at("input_ids");
  std::vector<int64_t> v(static_cast<size_t>(t.numel()));
  f.read(t, std::as_writable_bytes(std::span<int64_t>(v)));
  return v;
}
inline std::string tiny() { return test_data("dsv4-tiny"); }

struct EvalRun {
  CommandResult command;
  nlohmann::json report;  // null when no report was written
};

// `fp4kit eval QUANTIZED --base BASE DATA --json F ARGS`; DATA: 2 x 48 of the calibration ids (94 scored
// positions), which keeps the tests fast.
inline std::string small_data() { return "--data " + eval_ids() + " --samples 2 --seq-len 48"; }
inline std::string full_data() { return "--data " + eval_ids() + " --samples 4 --seq-len 96"; }
inline EvalRun run_eval(const std::string& quantized, const std::string& base, const std::string& args = "",
                        const std::string& data = small_data()) {
  const std::string json = fresh_temp_dir("eval-json") + "/report.json";
  EvalRun r;
  r.command = run_fp4kit("eval " + quantized + " --base " + base + " " + data + " --quiet --json " + json + " " + args);
  if (std::filesystem::exists(json)) r.report = load_json(json);
  return r;
}

}  // namespace fp4kit::testing
