// fp4kit verify CHECKPOINT [--source SRC]: parsing and printing only; the checks are verify/.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "base/parallel.h"
#include "cli/commands.h"
#include "cli/json_report.h"
#include "io/atomic_file.h"
#include "verify/report_html.h"
#include "verify/report_json.h"
#include "verify/report_text.h"
#include "verify/verify.h"

namespace fp4kit::cli {

// Named, not anonymous: the command files compile as one unit (unity build).
namespace verify_command {

struct VerifyArgs {
  std::string checkpoint, source, json_path, html_path;
  unsigned threads = 0;
  double fail_below_sqnr = 0.0;
  bool has_threshold = false, structure_only = false, quiet = false;
  double margin = 1.0;
  size_t worst = 10;
  std::vector<std::string> engines;  // empty: all
};

void run(const VerifyArgs& a) {
  verify::VerifyOptions o;
  o.checkpoint = a.checkpoint;
  if (!a.source.empty()) o.source = a.source;
  o.threads = a.threads ? a.threads : default_threads();
  o.numerics = !a.structure_only;
  if (a.has_threshold) o.fail_below_sqnr_db = a.fail_below_sqnr;
  o.sqnr_margin_db = a.margin;
  if (!a.engines.empty()) {
    o.engines.clear();
    for (const std::string& name : a.engines) o.engines.push_back(*engine_from_name(name));
    o.engines_named = true;
  }

  const verify::VerifyReport report = verify::verify_checkpoint(o);
  if (!a.quiet) std::fputs(verify::report_to_text(report, a.worst).c_str(), stdout);
  else std::printf("%s\n", report.passed() ? "PASS" : "FAIL");
  if (!a.json_path.empty() || !a.html_path.empty()) {
    const nlohmann::json j = verify::report_to_json(report);
    if (!a.json_path.empty()) write_json_report(a.json_path, j);
    if (!a.html_path.empty()) io::write_file_atomic(a.html_path, verify::report_to_html(j));
  }
  if (!report.passed()) throw ExitCode{1};
}

void add_command(CLI::App& app) {
  auto args = std::make_shared<VerifyArgs>();
  auto* cmd = app.add_subcommand(
      "verify",
      "Prove an NVFP4 checkpoint (fp4kit's, ModelOpt's, compressed-tensors', NVIDIA's DeepSeek V4 release layout) "
      "complete, consistent, loadable and accurate: files and index, scale tensors, config files, shared scales of "
      "fused groups, and with --source every source tensor accounted for and the error of every quantized tensor. "
      "Exit 0 pass, 1 failed checks, 2 could not run. docs/verify.md lists every check.");
  cmd->add_option("CHECKPOINT", args->checkpoint, "NVFP4 checkpoint directory")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--source", args->source, "The checkpoint it was made from: account for every tensor, measure the error")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--json", args->json_path, "Write every number to this file ('-' for stdout)");
  cmd->add_option("--html", args->html_path, "Write a self-contained HTML report with plots to this file");
  auto* threshold = cmd->add_option("--fail-below-sqnr", args->fail_below_sqnr,
                                    "Fail any quantized tensor whose SQNR against the source is below this many dB");
  cmd->add_option("--sqnr-margin", args->margin,
                  "Fail a tensor whose SQNR is more than this many dB below a fresh NVFP4 quantization's (default 1)");
  cmd->add_option("--engine", args->engines,
                  "Walk the checkpoint through this engine's loader contract (vllm, sglang, trtllm; repeat for several; "
                  "default all three). An engine whose table does not cover the checkpoint's layout is skipped with the "
                  "reason, and so is one known to refuse it, unless named here: then it fails (engine.layout_refused)")
      ->check(CLI::IsMember({"vllm", "sglang", "trtllm"}));
  cmd->add_flag("--structure-only", args->structure_only, "Skip the pass over tensor data (headers, scalars, configs only)");
  cmd->add_option("--threads", args->threads, "Worker threads (default: all cores); never changes a number");
  cmd->add_option("--worst", args->worst, "How many of the worst tensors to print (default 10)");
  cmd->add_flag("--quiet", args->quiet, "Print only PASS or FAIL");
  cmd->callback([args, threshold] {
    args->has_threshold = threshold->count() > 0;
    run(*args);
  });
}

const CommandRegistration kRegistration(60, add_command);

}  // namespace verify_command

}  // namespace fp4kit::cli
