// fp4kit compare A B: the same token ids through two checkpoints (e.g. a source and its NVFP4
// conversion), logits compared position by position with A as the reference; printing only.
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "cli/commands.h"
#include "cli/json_report.h"
#include "cuda/device.h"
#include "engine/engine.h"
#include "gpu_engine/gpu_forward.h"
#include "engine/logit_compare.h"
#include "engine/token_ids.h"

namespace fp4kit::cli {

// Named, not anonymous: the command files compile as one unit (unity build).
namespace compare_command {

struct CompareArgs {
  std::string a, b, ids, ids_file, device = "cpu", precision, gpu_memory;
  unsigned threads = 0;
  bool json = false;
};

// The logits of one checkpoint for `ids` on the chosen device, and its vocab size.
std::vector<float> logits_of(const std::string& model, const CompareArgs& args, const engine::TokenBatch& ids, bool gpu,
                             gpu_engine::Precision precision, int64_t* vocab) {
  if (gpu) {
    gpu_engine::GpuForwardOptions o;
    o.precision = precision;
    o.gpu_memory = gpu_engine::parse_gpu_memory(args.gpu_memory);
    gpu_engine::GpuForward g(model, o);
    *vocab = g.config().base.vocab_size;
    return g.forward(ids.ids, ids.batch);
  }
  engine::EngineOptions o;
  o.threads = args.threads;
  engine::Engine e(model, o);
  *vocab = e.config().base.vocab_size;
  return e.forward(ids.ids, ids.batch);
}

void run(const CompareArgs& args) {
  const ForwardDevice d = resolve_forward_device(args.device, args.precision, args.gpu_memory);
  const bool gpu = d.gpu;
  const gpu_engine::Precision precision = d.precision;
  const engine::TokenBatch ids = engine::token_ids_from_options(args.ids, args.ids_file);
  int64_t vocab = 0, vocab_b = 0;
  const std::vector<float> logits_a = logits_of(args.a, args, ids, gpu, precision, &vocab);
  const std::vector<float> logits_b = logits_of(args.b, args, ids, gpu, precision, &vocab_b);
  if (vocab_b != vocab)
    throw InputError(args.b + ": vocab_size " + std::to_string(vocab_b) + " differs from " + args.a + "'s " +
                     std::to_string(vocab));
  const engine::LogitComparison c = engine::compare_logits(logits_a, logits_b, vocab);
  const int64_t S = ids.seq();
  if (args.json) {
    nlohmann::json positions = nlohmann::json::array();
    for (size_t r = 0; r < c.positions.size(); ++r) {
      const auto& p = c.positions[r];
      positions.push_back({{"sequence", static_cast<int64_t>(r) / S}, {"position", static_cast<int64_t>(r) % S},
                           {"kl", p.kl}, {"rel_error", p.rel_error}, {"top_a", p.top_a}, {"top_b", p.top_b}});
    }
    write_json_report("-", {{"reference", args.a},
                            {"candidate", args.b},
                            {"device", std::string(cuda::device_name(gpu ? cuda::Device::Cuda : cuda::Device::Cpu))},
                            {"precision", gpu_engine::precision_name(precision)},
                            {"batch", ids.batch},
                            {"seq", S},
                            {"summary",
                             {{"mean_kl", c.mean_kl},
                              {"max_kl", c.max_kl},
                              {"max_kl_sequence", c.max_kl_position / S},
                              {"max_kl_position", c.max_kl_position % S},
                              {"top1_agreement", c.top1_agreement},
                              {"mean_rel_error", c.mean_rel_error},
                              {"max_rel_error", c.max_rel_error}}},
                            {"positions", positions}});
    return;
  }
  std::printf("%8s %8s %12s %12s %8s %8s\n", "sequence", "position", "kl", "rel_error", "top_a", "top_b");
  for (size_t r = 0; r < c.positions.size(); ++r) {
    const auto& p = c.positions[r];
    std::printf("%8lld %8lld %12.4e %12.4e %8lld %8lld%s\n", static_cast<long long>(static_cast<int64_t>(r) / S),
                static_cast<long long>(static_cast<int64_t>(r) % S), p.kl, p.rel_error, static_cast<long long>(p.top_a),
                static_cast<long long>(p.top_b), p.top_a == p.top_b ? "" : "  *");
  }
  std::printf("summary: %zu positions, mean KL %.4e nats, max KL %.4e (sequence %lld, position %lld), top-1 agreement "
              "%.2f%%, relative logit error mean %.4e max %.4e\n",
              c.positions.size(), c.mean_kl, c.max_kl, static_cast<long long>(c.max_kl_position / S),
              static_cast<long long>(c.max_kl_position % S), 100.0 * c.top1_agreement, c.mean_rel_error,
              c.max_rel_error);
}

void add_command(CLI::App& app) {
  auto args = std::make_shared<CompareArgs>();
  auto* cmd = app.add_subcommand("compare",
                                 "Run the same token ids through checkpoints A (reference) and B with fp4kit's forward "
                                 "pass (the f32 CPU engine, or the GPU's): per-position KL(A||B), top-1 agreement, "
                                 "relative logit error, summary.");
  cmd->add_option("A", args->a, "Reference checkpoint directory")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("B", args->b, "Checkpoint to compare with A")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--ids", args->ids, "Token ids, e.g. \"0 15 7\" (newlines separate sequences)");
  cmd->add_option("--ids-file", args->ids_file, "safetensors input_ids [B,S] or a text file, one sequence per line");
  cmd->add_option("--threads", args->threads, "Worker threads (default: all cores)");
  cmd->add_option("--device", args->device, "cpu (the f32 reference engine) or cuda (one GPU, layers streamed from disk)");
  add_precision_option(cmd, args->precision);
  add_gpu_memory_option(cmd, args->gpu_memory);
  cmd->add_flag("--json", args->json, "Print one JSON document instead of text");
  cmd->callback([args] { run(*args); });
}

const CommandRegistration kRegistration(74, add_command);

}  // namespace compare_command

}  // namespace fp4kit::cli
