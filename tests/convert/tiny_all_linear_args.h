#pragma once
// The convert command line the scale-search and GPTQ tests share: the tiny V4 checkpoint with
// every GEMM weight requantized (--recipe all-linear), no input scales, the given --scales.
#include <string>

#include "test_data.h"

namespace fp4kit::testing {

inline std::string tiny_all_linear_args(const std::string& out, const std::string& scales) {
  return "convert " + test_data("dsv4-tiny") + " " + out + " --recipe all-linear --weight-only --quiet --scales " +
         scales;
}

}  // namespace fp4kit::testing
