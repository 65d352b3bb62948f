#pragma once
// The tiny V4 checkpoint's NVFP4 conversions that the GPU forward tests read: the default (experts
// cast losslessly, ModelOpt calibration), every linear requantized, and the compressed-tensors layout.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "run_command.h"
#include "test_data.h"

namespace fp4kit::testing {

// (convert flags, output directory) of each conversion, made under a fresh temp dir named by `tag`;
// a failed convert fails the calling test.
inline std::vector<std::pair<std::string, std::string>> tiny_nvfp4_conversions(const std::string& tag) {
  const std::string dir = fresh_temp_dir(tag);
  const std::string calib = test_data("oracles/dsv4-tiny-modelopt/calib_amax.safetensors");
  std::vector<std::pair<std::string, std::string>> made;
  for (const std::string& flags : {" --calib " + calib, std::string(" --recipe all-linear --weight-only"),
                                   std::string(" --recipe all-linear --format compressed-tensors --weight-only")}) {
    const std::string out = dir + "/m" + std::to_string(made.size());
    const auto r = run_fp4kit("convert " + test_data("dsv4-tiny") + " " + out + flags + " --quiet");
    EXPECT_EQ(r.exit_code, 0) << flags << ": " << r.output;
    made.emplace_back(flags, out);
  }
  return made;
}

}  // namespace fp4kit::testing
