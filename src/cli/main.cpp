// fp4kit: convert and verify NVFP4 checkpoints. The CLI only parses, calls the library and prints.
// Exit codes: 0 success, 1 the work ran and found a problem, 2 bad usage or bad input, 3 I/O or
// internal failure.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "base/error.h"
#include "cli/commands.h"
#include "formats/isa.h"

namespace {

// What --version says about the CPU fast paths: the ISA this run uses and those the CPU offers.
std::string version_text() {
  std::string runs;
  for (fp4kit::Isa isa : fp4kit::simd_isas()) runs += " " + std::string(fp4kit::isa_name(isa));
  return "fp4kit 0.1.0\nCPU fast paths: " + std::string(fp4kit::isa_name(fp4kit::preferred_isa())) +
         " (this CPU runs:" + (runs.empty() ? std::string(" none") : runs) + ", and scalar; FP4KIT_ISA chooses)";
}

// FP4KIT_ISA naming an ISA this CPU cannot run is ignored (the best one runs), but said.
void warn_about_isa_choice() {
  const char* want = std::getenv("FP4KIT_ISA");
  if (want == nullptr) return;
  const auto isa = fp4kit::isa_from_name(want);
  if (isa && fp4kit::isa_supported(*isa)) return;
  std::fprintf(stderr, "fp4kit: warning: FP4KIT_ISA=%s is %s; using %s\n", want,
               isa ? "not an ISA this CPU runs" : "not an ISA name (scalar, avx2, avx512, neon, sve, sve2)",
               std::string(fp4kit::isa_name(fp4kit::preferred_isa())).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fp4kit: convert DeepSeek-class MoE checkpoints to NVFP4, exactly, and prove the result.",
               "fp4kit"};
  app.set_version_flag("--version", version_text());
  warn_about_isa_choice();
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
