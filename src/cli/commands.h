#pragma once
// Each command lives in its own file and registers itself here; main() adds them all to the app.
// The callback does the work and throws on failure (see main.cpp for the exit codes).
#include <CLI/CLI.hpp>

namespace fp4kit::cli {

using AddCommand = void (*)(CLI::App& app);

// `order` sorts the commands in --help: the order a user meets them in.
struct CommandRegistration {
  CommandRegistration(int order, AddCommand add);
};
void add_registered_commands(CLI::App& app);

// Thrown by a command to end with a specific exit code after it has printed its own message.
struct ExitCode {
  int code;
};

}  // namespace fp4kit::cli
