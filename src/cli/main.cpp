// fp4kit: convert and verify NVFP4 checkpoints. The CLI only parses, calls the library and prints.
// Exit codes: 0 success, 1 the work ran and found a problem, 2 bad usage or bad input, 3 I/O or
// internal failure.
#include <cstdio>
#include <exception>

#include "base/error.h"
#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"fp4kit: convert DeepSeek-class MoE checkpoints to NVFP4, exactly, and prove the result.",
               "fp4kit"};
  app.set_version_flag("--version", "fp4kit 0.1.0");
  app.require_subcommand(1);
  fp4kit::cli::add_registered_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  } catch (const fp4kit::cli::ExitCode& e) {
    return e.code;
  } catch (const fp4kit::InputError& e) {
    std::fprintf(stderr, "fp4kit: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fp4kit: error: %s\n", e.what());
    return 3;
  }
  return 0;
}
