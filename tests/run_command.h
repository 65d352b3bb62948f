#pragma once
// Runs the fp4kit binary as a user would and captures its exit code and output.
#include <string>

namespace fp4kit::testing {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// `args` is appended to the binary's path as is (quote paths with spaces yourself).
CommandResult run_fp4kit(const std::string& args);

}  // namespace fp4kit::testing
