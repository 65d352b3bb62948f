#include "cli/json_report.h"

#include <cstdio>

#include "base/error.h"

namespace fp4kit::cli {

void write_json_report(const std::string& path, const nlohmann::json& report) {
  const std::string text = report.dump(2) + "\n";
  if (path == "-") {
    std::fputs(text.c_str(), stdout);
    return;
  }
  FILE* f = std::fopen(path.c_str(), "w");
  const bool ok = f && std::fputs(text.c_str(), f) >= 0;
  if (f && std::fclose(f) != 0) throw Error(path + ": cannot write the JSON report");
  if (!ok) throw Error(path + ": cannot write the JSON report");
}

}  // namespace fp4kit::cli
