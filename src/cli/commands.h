#pragma once
// Each command adds its subcommand to the root app; the callback does the work and throws on failure.
#include <CLI/CLI.hpp>

namespace fp4kit::cli {

void add_inspect_command(CLI::App& app);
void add_quantize_tensors_command(CLI::App& app);

// Thrown by a command to end with a specific exit code after it has printed its own message.
struct ExitCode {
  int code;
};

}  // namespace fp4kit::cli
