#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "inspect/checkpoint_summary.h"

namespace fp4kit::cli {

namespace {
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

void run(const InspectArgs& a) {
  const CheckpointSummary s = summarize_checkpoint(a.dir);
  if (a.json) {
    std::printf("%s\n", to_json(s).dump(2).c_str());
  } else {
    std::printf("checkpoint  %s\n", s.dir.c_str());
    if (s.config.is_object()) {
      auto get = [&](const char* k) { return s.config.contains(k) ? s.config[k].dump() : std::string("-"); };
      std::printf("model_type  %s  layers %s  hidden %s  experts %s (top %s)\n", get("model_type").c_str(),
                  get("num_hidden_layers").c_str(), get("hidden_size").c_str(), get("n_routed_experts").c_str(),
                  get("num_experts_per_tok").c_str());
      if (s.config.contains("quantization_config"))
        std::printf("quantization %s\n", s.config["quantization_config"].dump().c_str());
    }
    std::printf("shards %zu  tensors %zu  %s\n\n", s.shards, s.tensors, human_bytes(s.bytes).c_str());
    for (const auto& [dtype, bytes] : s.bytes_per_dtype)
      std::printf("  %-8s %12s\n", dtype.c_str(), human_bytes(bytes).c_str());
    std::printf("\n%6s  %-8s %-14s %10s  %s\n", "count", "dtype", "shape", "bytes", "pattern");
    for (const auto& p : s.patterns)
      std::printf("%6zu  %-8s %-14s %10s  %s\n", p.count, p.dtype.c_str(), shape_text(p.shape).c_str(),
                  human_bytes(p.bytes).c_str(), p.pattern.c_str());
    std::printf("\n%zu anomalies\n", s.anomalies.size());
    for (const auto& an : s.anomalies) std::printf("  ! %s\n", an.c_str());
  }
  if (!s.anomalies.empty()) throw ExitCode{1};
}

void add_command(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  auto* cmd = app.add_subcommand("inspect",
                                 "Summarize a checkpoint from its config and shard headers (no tensor data is read). "
                                 "Exit 1 if anomalies are found.");
  cmd->add_option("MODEL_DIR", args->dir, "Checkpoint directory (index + shards, or model.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_flag("--json", args->json, "Print one JSON document instead of text");
  cmd->callback([args] { run(*args); });
}

}  // namespace

const CommandRegistration kRegistration(10, add_command);

}  // namespace fp4kit::cli
