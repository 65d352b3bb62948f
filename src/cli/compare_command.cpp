// fp4kit compare A B: the same token ids through two checkpoints (e.g. a source and its NVFP4
// conversion), logits compared position by position with A as the reference; printing only.
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "cli/commands.h"
#include "cli/json_report.h"
#include "engine/engine.h"
#include "engine/logit_compare.h"
#include "engine/token_ids.h"

namespace fp4kit::cli {

namespace {

struct CompareArgs {
  std::string a, b, ids, ids_file;
  unsigned threads = 0;
  bool json = false;
};

void run(const CompareArgs& args) {
  const engine::TokenBatch ids = engine::token_ids_from_options(args.ids, args.ids_file);
  engine::EngineOptions o;
  o.threads = args.threads;
  std::vector<float> logits_a, logits_b;
  int64_t vocab = 0;
  {
    engine::Engine ea(args.a, o);
    vocab = ea.config().base.vocab_size;
    logits_a = ea.forward(ids.ids, ids.batch);
  }
  {
    engine::Engine eb(args.b, o);
    if (eb.config().base.vocab_size != vocab)
      throw InputError(args.b + ": vocab_size " + std::to_string(eb.config().base.vocab_size) + " differs from " +
                       args.a + "'s " + std::to_string(vocab));
    logits_b = eb.forward(ids.ids, ids.batch);
  }
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
                                 "Run the same token ids through checkpoints A (reference) and B with the f32 reference "
                                 "forward pass: per-position KL(A||B), top-1 agreement, relative logit error, summary.");
  cmd->add_option("A", args->a, "Reference checkpoint directory")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("B", args->b, "Checkpoint to compare with A")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--ids", args->ids, "Token ids, e.g. \"0 15 7\" (newlines separate sequences)");
  cmd->add_option("--ids-file", args->ids_file, "safetensors input_ids [B,S] or a text file, one sequence per line");
  cmd->add_option("--threads", args->threads, "Worker threads (default: all cores)");
  cmd->add_flag("--json", args->json, "Print one JSON document instead of text");
  cmd->callback([args] { run(*args); });
}

}  // namespace

const CommandRegistration kRegistration(74, add_command);

}  // namespace fp4kit::cli
