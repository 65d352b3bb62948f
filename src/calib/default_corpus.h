#pragma once
// A small calibration corpus built into the binary, so that calibration runs without a download:
// prose, code, math, lists, tables and several languages, written for fp4kit.
#include <span>
#include <string_view>

namespace fp4kit::calib {

std::span<const std::string_view> default_corpus();

}  // namespace fp4kit::calib
