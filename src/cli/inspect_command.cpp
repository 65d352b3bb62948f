#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "inspect/checkpoint_summary.h"

namespace fp4kit::cli {

// Named, not anonymous: the command files compile as one unit (unity build).
namespace inspect_command {
struct InspectArgs {
  std::string dir;
  bool json = false;
};

std::string human_bytes(uint64_t b) {
  char buf[32];
  const double v = static_cast<double>(b);
  if (v >= 1e9) std::snprintf(buf, sizeof buf, "%.2f GB", v / 1e9);
  else if (v >= 1e6) std::snprintf(buf, sizeof buf, "%.2f MB", v / 1e6);
  else if (v >= 1e3) std::snprintf(buf, sizeof buf, "%.1f kB", v / 1e3);
  else std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  return buf;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void print_text(const CheckpointSummary& s) {
  std::printf("checkpoint   %s\n", s.dir.c_str());
  std::printf("architecture %s\n", s.architecture.empty() ? "(unknown)" : s.architecture.c_str());
  for (const auto& [k, v] : s.key_config.items())
    if (k != "compress_ratios") std::printf("  %-26s %s\n", k.c_str(), v.dump().c_str());
  std::printf("shards %zu  tensors %zu  %s  (read in %.2f s)\n", s.shards, s.tensors, human_bytes(s.bytes).c_str(), s.seconds);

  std::printf("\nbytes per dtype\n");
  for (const auto& [dtype, bytes] : s.bytes_per_dtype) std::printf("  %-10s %12s\n", dtype.c_str(), human_bytes(bytes).c_str());
  std::printf("\nbytes per role\n");
  for (const auto& [role, bytes] : s.bytes_per_role)
    std::printf("  %-22s %12s  %7zu tensors\n", role.c_str(), human_bytes(bytes).c_str(), s.tensors_per_role.at(role));
  std::printf("\nquantized weights\n");
  if (s.quantized_weights.empty()) std::printf("  none\n");
  for (const auto& [storage, n] : s.quantized_weights) std::printf("  %-22s %7zu\n", storage.c_str(), n);
  std::printf("\ncounts\n");
  for (const auto& [what, n] : s.counts) std::printf("  %-22s %7zu\n", what.c_str(), n);

  std::printf("\n%6s  %-8s %-16s %-18s %10s  %s\n", "count", "dtype", "shape", "storage", "bytes", "pattern");
  for (const auto& p : s.patterns)
    std::printf("%6zu  %-8s %-16s %-18s %10s  %s\n", p.count, p.dtype.c_str(), shape_text(p.shape).c_str(),
                p.storage.c_str(), human_bytes(p.bytes).c_str(), p.pattern.c_str());
  std::printf("\n%zu anomalies\n", s.anomalies.size());
  for (const auto& an : s.anomalies) std::printf("  ! %s\n", an.c_str());
}

void run(const InspectArgs& a) {
  const CheckpointSummary s = summarize_checkpoint(a.dir);
  if (a.json) std::printf("%s\n", to_json(s).dump(2).c_str());
  else print_text(s);
  if (!s.anomalies.empty()) throw ExitCode{1};
}

void add_command(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  auto* cmd = app.add_subcommand("inspect",
                                 "Summarize a checkpoint from its config, index and shard headers (no tensor data is read): "
                                 "name patterns, dtypes, storage formats, bytes per role, counts and anomalies. "
                                 "Exit 0 clean, 1 anomalies found, 2 not a checkpoint.");
  cmd->add_option("MODEL_DIR", args->dir, "Checkpoint directory (index + shards, or model.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_flag("--json", args->json, "Print one JSON document instead of text");
  cmd->callback([args] { run(*args); });
}

const CommandRegistration kRegistration(10, add_command);

}  // namespace inspect_command

}  // namespace fp4kit::cli
