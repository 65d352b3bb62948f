// fp4kit dequant SRC DST: parsing and printing only; the job is convert/dequant.
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
#include "convert/dequant.h"
#include "io/shard_plan.h"

namespace fp4kit::cli {

// Named, not anonymous: the command files compile as one unit (unity build).
namespace dequant_command {
struct DequantArgs {
  std::string src, dst, shard_size = "5GB", json_path;
  unsigned threads = 0;
  bool no_direct_io = false;
  bool resume = false, progress = false, quiet = false;
};

double gb_per_s(uint64_t bytes, double seconds) { return seconds > 0 ? static_cast<double>(bytes) / seconds / 1e9 : 0.0; }

nlohmann::json kind_json(const DequantKindStats& s) {
  return {{"tensors", s.tensors},
          {"tensors_written", s.tensors_written},
          {"input_bytes", s.input_bytes},
          {"output_bytes", s.output_bytes},
          {"seconds", s.seconds},
          {"output_gb_per_s", gb_per_s(s.output_bytes, s.seconds)}};
}

void write_json(const DequantArgs& a, const DequantReport& r) {
  nlohmann::json j = {{"source", a.src},
                      {"output", a.dst},
                      {"resumed", a.resume},
                      {"shards", r.shards},
                      {"shards_written", r.shards_written},
                      {"shards_skipped", r.shards_skipped},
                      {"scales_dropped", r.scales_dropped},
                      {"files_copied", r.files_copied},
                      {"config_written", r.config_written},
                      {"input_bytes", r.input_bytes},
                      {"output_bytes", r.output_bytes},
                      {"seconds", r.seconds},
                      {"input_gb_per_s", gb_per_s(r.input_bytes, r.seconds)},
                      {"output_gb_per_s", gb_per_s(r.output_bytes, r.seconds)}};
  for (DequantKind k : {DequantKind::Fp8Block, DequantKind::Mxfp4, DequantKind::Copy})
    j["kinds"][std::string(dequant_kind_name(k))] = kind_json(r.stats(k));
  write_json_report(a.json_path, j);
}

void run(const DequantArgs& a) {
  DequantOptions o;
  o.threads = a.threads ? a.threads : default_threads();
  o.direct_io = !a.no_direct_io;
  o.shard_bytes = parse_byte_size(a.shard_size, "--shard-size");
  o.resume = a.resume;
  Progress progress("dequant", !a.quiet && (a.progress || stderr_is_terminal()));
  const DequantReport r = dequant_checkpoint(a.src, a.dst, o, [&](uint64_t d, uint64_t t) { progress.update(d, t); });
  progress.finish();
  if (!a.quiet) {
    for (DequantKind k : {DequantKind::Fp8Block, DequantKind::Mxfp4, DequantKind::Copy}) {
      const DequantKindStats& s = r.stats(k);
      std::fprintf(stderr, "  %-9s %6zu tensors (%zu written)  %10.3f GB out  %7.2f s  %6.2f GB/s\n",
                   std::string(dequant_kind_name(k)).c_str(), s.tensors, s.tensors_written,
                   static_cast<double>(s.output_bytes) / 1e9, s.seconds, gb_per_s(s.output_bytes, s.seconds));
    }
    std::fprintf(stderr,
                 "dequant: %zu shards (%zu written, %zu already done), %zu scales dropped, %zu files copied; "
                 "%.3f GB read, %.3f GB written in %.2f s (%.2f GB/s out): %s\n",
                 r.shards, r.shards_written, r.shards_skipped, r.scales_dropped, r.files_copied,
                 static_cast<double>(r.input_bytes) / 1e9, static_cast<double>(r.output_bytes) / 1e9, r.seconds,
                 gb_per_s(r.output_bytes, r.seconds), a.dst.c_str());
  }
  if (!a.json_path.empty()) write_json(a, r);
}

void add_command(CLI::App& app) {
  auto args = std::make_shared<DequantArgs>();
  auto* cmd = app.add_subcommand(
      "dequant",
      "Write a BF16 checkpoint from a DeepSeek checkpoint (V4 FP8 + MXFP4 experts, the FP8 repack, V3 FP8 "
      "with weight_scale_inv, or plain BF16), dequantized exactly as DeepSeek's official code does. Scales are "
      "dropped, every other tensor and file is copied as is, config.json loses quantization_config and "
      "expert_dtype. Streams in bounded memory; shards are published atomically; --resume continues after a kill.");
  cmd->add_option("SRC", args->src, "Source checkpoint directory")->required();
  cmd->add_option("DST", args->dst, "Output directory (new, empty, or an earlier run's with --resume)")->required();
  cmd->add_option("--threads", args->threads, "Worker threads (default: all cores); never changes the output");
  cmd->add_flag("--no-direct-io", args->no_direct_io,
                "Read and write through the page cache (default: around it, O_DIRECT, where the file system "
                "allows); never changes the output");
  cmd->add_option("--shard-size", args->shard_size, "Output shard size limit, e.g. 5GB (default), 500MB, 4GiB");
  cmd->add_flag("--resume", args->resume,
                "Continue an interrupted run into DST: finished shards are kept, the rest written; the result is "
                "identical to an uninterrupted run");
  cmd->add_option("--json", args->json_path, "Write a JSON report to this file ('-' for stdout)");
  cmd->add_flag("--progress", args->progress, "Show progress even when stderr is not a terminal");
  cmd->add_flag("--quiet", args->quiet, "Print nothing but errors");
  cmd->callback([args] { run(*args); });
}

const CommandRegistration kRegistration(40, add_command);

}  // namespace dequant_command

}  // namespace fp4kit::cli
