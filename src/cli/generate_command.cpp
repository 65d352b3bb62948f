// fp4kit generate MODEL: greedy decoding with the f32 reference forward pass, or on the GPU (the
// checkpoint resident where it fits), each with its attention caches; parsing and printing only.
// The last line of stdout is the new token ids.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "base/error.h"
#include "cli/commands.h"
#include "cuda/device.h"
#include "engine/engine.h"
#include "engine/layer_runner.h"
#include "engine/generate.h"
#include "engine/token_ids.h"
#include "gpu_engine/gpu_layer_runner.h"

namespace fp4kit::cli {

// Named, not anonymous: the command files compile as one unit (unity build).
namespace generate_command {

struct GenerateArgs {
  std::string model, ids, ids_file, device = "cpu", precision, gpu_memory;
  int64_t max_new_tokens = 16;
  unsigned threads = 0;
  bool no_cache = false, ignore_eos = false, profile = false;
};

// Where a decode step's time goes, per step, by stage: the device's time and the host's (stderr).
void print_decode_profile(const engine::Generation& g) {
  const double steps = static_cast<double>(g.tokens.size()) - 1;
  if (steps < 1 || g.decode_stages.empty()) {
    std::fprintf(stderr, "profile: no decode step was measured (the CPU engine does not split its time by stage)\n");
    return;
  }
  double device = 0, host = 0;
  std::fprintf(stderr, "decode step by stage, ms per step (%.0f steps; %.3f ms each in all):\n", steps,
               1e3 * g.decode_seconds / steps);
  std::fprintf(stderr, "  %-22s %10s %10s\n", "stage", "device", "host");
  for (const engine::Generation::Stage& s : g.decode_stages) {
    std::fprintf(stderr, "  %-22s %10.3f %10.3f\n", s.name.empty() ? "(start)" : s.name.c_str(),
                 1e3 * s.device_seconds / steps, 1e3 * s.host_seconds / steps);
    device += s.device_seconds, host += s.host_seconds;
  }
  std::fprintf(stderr, "  %-22s %10.3f %10.3f\n", "sum", 1e3 * device / steps, 1e3 * host / steps);
  std::fprintf(stderr, "host time by call, ms per step: embed_next %.3f, run_layer (all layers) %.3f, head %.3f\n",
               1e3 * g.decode_embed_seconds / steps, 1e3 * g.decode_layers_seconds / steps,
               1e3 * g.decode_head_seconds / steps);
  // A mean hides a slow first step: the steps' spread too.
  std::vector<double> sorted = g.decode_step_seconds;
  std::sort(sorted.begin(), sorted.end());
  if (!sorted.empty())
    std::fprintf(stderr, "step wall time, ms: first %.3f, median %.3f, min %.3f, max %.3f\n",
                 1e3 * g.decode_step_seconds.front(), 1e3 * sorted[sorted.size() / 2], 1e3 * sorted.front(),
                 1e3 * sorted.back());
}

void run(const GenerateArgs& a) {
  const ForwardDevice d = resolve_forward_device(a.device, a.precision, a.gpu_memory);
  const engine::TokenBatch ids = engine::token_ids_from_options(a.ids, a.ids_file);
  if (ids.batch != 1) throw InputError("generate: give one prompt (got " + std::to_string(ids.batch) + " sequences)");
  engine::EngineOptions o;
  o.threads = a.threads;
  const std::unique_ptr<engine::LayerRunner> runner =
      d.gpu ? gpu_engine::make_gpu_runner(a.model, o, d.precision, d.memory)
             : engine::make_cpu_runner(a.model, o);
  const std::optional<int64_t> eos = a.ignore_eos ? std::nullopt : engine::config_eos_token_id(runner->config().base.raw);
  const engine::Generation g = engine::generate_greedy(*runner, ids.ids, a.max_new_tokens, !a.no_cache, eos);
  std::string mode = d.gpu ? std::string(", GPU ") + gpu_engine::precision_name(d.precision) : std::string();
  if (a.no_cache) mode += ", no cache";
  std::printf("prompt: %zu tokens, generated %zu (greedy%s)\n", ids.ids.size(), g.tokens.size(), mode.c_str());
  // Timings on stderr, so that stdout stays the two lines scripts read.
  if (!g.tokens.empty()) {
    const double decoded = static_cast<double>(g.tokens.size() - 1);
    std::fprintf(stderr, "prompt + first token: %.3f s (%.1f prompt tokens/s); next %zu tokens: %.3f s (%.2f tokens/s)\n",
                 g.prompt_seconds, static_cast<double>(ids.ids.size()) / std::max(g.prompt_seconds, 1e-9),
                 g.tokens.size() - 1, g.decode_seconds, decoded > 0 ? decoded / std::max(g.decode_seconds, 1e-9) : 0.0);
  }
  if (a.profile) print_decode_profile(g);
  std::string line;
  for (size_t i = 0; i < g.tokens.size(); ++i) {
    if (i) line += ' ';
    line += std::to_string(g.tokens[i]);
  }
  std::printf("%s\n", line.c_str());
}

void add_command(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  auto* cmd = app.add_subcommand("generate",
                                 "Greedy generation with the f32 reference forward pass and a KV cache (sliding window "
                                 "and compressed caches), or on the GPU. The last line of output is the new token ids.");
  cmd->add_option("MODEL", args->model, "Checkpoint directory")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--ids", args->ids, "Prompt token ids, e.g. \"0 15 7\"");
  cmd->add_option("--ids-file", args->ids_file, "Prompt ids: safetensors input_ids [1,S] or a text file");
  cmd->add_option("--max-new-tokens", args->max_new_tokens, "Tokens to generate")->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  cmd->add_option("--threads", args->threads, "Worker threads (default: all cores)");
  cmd->add_flag("--no-cache", args->no_cache, "Rerun the whole sequence for every token (slow; for checking)");
  cmd->add_option("--device", args->device,
                  "cpu (the f32 reference) or cuda (the GPU forward pass, its caches on the device; a checkpoint "
                  "that fits in half the GPU memory stays resident, else every step streams it)")
      ->capture_default_str();
  add_gpu_memory_option(cmd, args->gpu_memory);
  add_precision_option(cmd, args->precision);
  cmd->add_flag("--ignore-eos", args->ignore_eos, "Do not stop at the config's eos_token_id");
  cmd->add_flag("--profile", args->profile,
                "Print where a decode step's time goes by stage, device and host milliseconds per step (GPU; stderr)");
  cmd->callback([args] { run(*args); });
}

const CommandRegistration kRegistration(72, add_command);

}  // namespace generate_command

}  // namespace fp4kit::cli
