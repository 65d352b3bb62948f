#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "base/byte_size.h"
#include "base/error.h"
#include "base/parallel.h"
#include "cli/commands.h"
#include "cli/json_report.h"
#include "cli/progress.h"
#include "io/shard_plan.h"
#include "synth/synth.h"

namespace fp4kit::cli {

// Named, not anonymous: the command files compile as one unit (unity build).
namespace synth_command {
struct SynthArgs {
  std::string preset, dst, shard_size = "5GB", expert_dtype = "fp4", json_path;
  uint64_t seed = 0;
  unsigned threads = 0;
  bool hollow = false, progress = false, quiet = false;
};

nlohmann::json report_json(const SynthArgs& a, const DeepseekV4Config& config, const synth::SynthOptions& o,
                           const synth::SynthReport& r) {
  return {{"preset", a.preset},
          {"dst", r.dst},
          {"seed", o.seed},
          {"hollow", o.hollow},
          {"expert_dtype", config.expert_dtype},
          {"num_hidden_layers", config.num_hidden_layers},
          {"n_routed_experts", config.n_routed_experts},
          {"shard_bytes", o.shard_bytes},
          {"threads", o.threads},
          {"tensors", r.tensors},
          {"shards", r.shards},
          {"data_bytes", r.data_bytes},
          {"file_bytes", r.file_bytes},
          {"allocated_bytes", r.allocated_bytes},
          {"seconds", r.seconds},
          {"gb_per_s", r.seconds > 0 ? static_cast<double>(r.data_bytes) / r.seconds / 1e9 : 0.0},
          {"peak_rss_bytes", r.peak_rss_bytes}};
}

void run(const SynthArgs& a) {
  const DeepseekV4Config config = synth::synth_config(a.preset, a.expert_dtype);
  synth::SynthOptions o;
  o.seed = a.seed;
  o.hollow = a.hollow;
  o.shard_bytes = parse_byte_size(a.shard_size, "--shard-size");
  o.threads = a.threads ? a.threads : default_threads();

  Progress progress(a.hollow ? "synth (hollow)" : "synth", !a.quiet && (a.progress || stderr_is_terminal()));
  const synth::SynthReport r =
      synth::synthesize_checkpoint(config, a.dst, o, [&](uint64_t d, uint64_t t) { progress.update(d, t); });
  progress.finish();

  if (!a.quiet) {
    const double gbps = r.seconds > 0 ? static_cast<double>(r.data_bytes) / r.seconds / 1e9 : 0.0;
    std::fprintf(stderr, "%zu tensors in %zu shard%s, %.3f GB of tensor data%s, in %.2f s (%.2f GB/s), peak RSS %.0f MB: %s\n",
                 r.tensors, r.shards, r.shards == 1 ? "" : "s", static_cast<double>(r.data_bytes) / 1e9,
                 a.hollow ? " (hollow)" : "", r.seconds,
                 gbps, static_cast<double>(r.peak_rss_bytes) / 1e6, r.dst.c_str());
    std::fprintf(stderr, "files: %.3f GB logical, %.3f MB on disk\n", static_cast<double>(r.file_bytes) / 1e9,
                 static_cast<double>(r.allocated_bytes) / 1e6);
  }
  if (!a.json_path.empty()) write_json_report(a.json_path, report_json(a, config, o, r));
}

void add_command(CLI::App& app) {
  auto args = std::make_shared<SynthArgs>();
  auto* cmd = app.add_subcommand(
      "synth",
      "Write a synthetic DeepSeek V4 checkpoint in the official layout (real names, shapes, dtypes, FP8 and MXFP4 "
      "encodings) with weights that have a trained model's statistics, deterministic for a seed. --hollow writes "
      "true headers over sparse holes: the full V4 Pro in a few MB of disk, for header-only tools.");
  cmd->add_option("PRESET", args->preset,
                  "v4-flash, v4-pro or tiny, with overrides such as v4-pro:layers=1,experts=384 "
                  "(keys: layers, experts, mtp, hash_layers, vocab)")
      ->required();
  cmd->add_option("DST", args->dst, "Output directory (created; must not exist or be empty)")->required();
  cmd->add_option("--seed", args->seed, "Random seed (default 0)");
  cmd->add_flag("--hollow", args->hollow, "Headers only: leave every data section a hole in a sparse file");
  cmd->add_option("--shard-size", args->shard_size, "Largest shard, e.g. 5GB (default), 500MB, 4GiB");
  cmd->add_option("--expert-dtype", args->expert_dtype,
                  "fp4: MXFP4 experts as released (default); fp8: 128x128 FP8 blocks, E8M0 scales (the FP4->FP8 "
                  "repack layout)")
      ->check(CLI::IsMember({"fp4", "fp8"}));
  cmd->add_option("--threads", args->threads, "Worker threads (default: all cores); never changes the output");
  cmd->add_option("--json", args->json_path, "Write a JSON report to this file ('-' for stdout)");
  cmd->add_flag("--progress", args->progress, "Show progress even when stderr is not a terminal");
  cmd->add_flag("--quiet", args->quiet, "Print nothing but errors");
  cmd->callback([args] { run(*args); });
}

const CommandRegistration kRegistration(95, add_command);

}  // namespace synth_command

}  // namespace fp4kit::cli
