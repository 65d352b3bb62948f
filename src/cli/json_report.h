#pragma once
// Writes a command's --json report: to stdout for "-", else to the named file.
#include <string>

#include <nlohmann/json.hpp>

namespace fp4kit::cli {

void write_json_report(const std::string& path, const nlohmann::json& report);

}  // namespace fp4kit::cli
