// fp4kit eval QUANTIZED --base SOURCE: parsing and printing only; the job is eval/evaluate.
#include <cstdio>
#include <memory>
#include <string>

#include "base/error.h"
#include "calib/model_data.h"
#include "cli/commands.h"
#include "cli/json_report.h"
#include "cuda/device.h"
#include "gpu_engine/gpu_layer_runner.h"
#include "eval/eval_report_html.h"
#include "eval/eval_report_json.h"
#include "eval/eval_verdict.h"
#include "eval/evaluate.h"
#include "io/atomic_file.h"

namespace fp4kit::cli {

// Named, not anonymous: the command files compile as one unit (unity build).
namespace eval_command {

struct EvalArgs {
  std::string quantized, base, data, data_format = "auto", tokenizer, device = "cpu", precision, gpu_memory, save_base_logits, base_logits, base_logits_dtype = "f32",
                                     json_path, html_path;
  int64_t samples = 16, seq_len = 512;
  bool samples_given = false, seq_len_given = false;
  unsigned threads = 0;
  eval::Thresholds thresholds;
  bool no_attribution = false, quiet = false;
};

void print_summary(const eval::EvalResult& r, const eval::Judgement& j, const eval::Thresholds& t) {
  const eval::KlStatistics& s = r.stats;
  std::printf("eval: %lld sequences x %lld tokens, %lld scored positions, %.2f s (%.1f tokens/s)\n",
              static_cast<long long>(r.batch), static_cast<long long>(r.seq), static_cast<long long>(s.positions),
              r.seconds, r.seconds > 0 ? static_cast<double>(r.tokens()) / r.seconds : 0.0);
  std::printf("Mean PPL(Q)                   : %12.6f ± %10.6f\n", s.ppl_q.mean, s.ppl_q.error);
  std::printf("Mean PPL(base)                : %12.6f ± %10.6f\n", s.ppl_base.mean, s.ppl_base.error);
  std::printf("Cor(ln(PPL(Q)), ln(PPL(base))): %11.2f%%\n", 100 * s.cor_ln_ppl);
  std::printf("Mean ln(PPL(Q)/PPL(base))     : %12.6f ± %10.6f\n", s.ln_ppl_ratio.mean, s.ln_ppl_ratio.error);
  std::printf("Mean PPL(Q)/PPL(base)         : %12.6f ± %10.6f\n", s.ppl_ratio.mean, s.ppl_ratio.error);
  std::printf("Mean KLD: %10.6f ± %10.6f   max %10.6f", s.kld.mean, s.kld.error, s.kld_max);
  for (const eval::Percentile& p : s.kld_percentiles) std::printf("   %g%% %10.6f", 100 * p.fraction, p.value);
  std::printf("\nMean Δp: %8.4f ± %7.4f %%   RMS Δp %7.4f ± %7.4f %%   min %8.4f%%   median %8.4f%%   max %8.4f%%\n",
              100 * s.p_diff.mean, 100 * s.p_diff.error, 100 * s.p_diff_rms.mean, 100 * s.p_diff_rms.error,
              100 * s.p_diff_min, 100 * s.p_diff_median, 100 * s.p_diff_max);
  std::printf("Same top-1: %8.4f ± %7.4f %%\n", 100 * s.top1.mean, 100 * s.top1.error);
  if (!r.attribution.empty()) {
    std::printf("%-22s %20s %12s %12s %8s   (only that layer or kind quantized)\n", "layer / kind",
                "residual rel. error", "mean KLD", "max KLD", "top-1");
    const auto row = [](const std::string& name, const eval::BranchScore& b, const char* mark) {
      if (b.logits_scored)
        std::printf("%-22s %20.4e %12.4e %12.4e %7.2f%%%s\n", name.c_str(), b.residual_rel_error, b.kld_mean, b.kld_max,
                    100 * b.top1, mark);
      else
        std::printf("%-22s %20.4e %12s %12s %8s%s\n", name.c_str(), b.residual_rel_error, "-", "-", "-", mark);
    };
    for (const eval::LayerAttribution& a : r.attribution) {
      const bool damaged = a.logits_scored ? a.kld_mean > 0 : a.residual_rel_error > 0;
      row("layer " + std::to_string(a.layer), a, &a == j.worst_layer && damaged ? "  <- worst layer" : "");
      for (const eval::KindAttribution& k : a.kinds) row("  " + k.kind, k, &k == j.worst_kind ? "  <- worst kind" : "");
    }
  }
  std::string line = std::string(eval::verdict_name(j.verdict)) + ": ";
  if (j.reasons.empty()) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "mean KLD %.6g <= --max-kld %g, top-1 %.4g%% >= --min-top1 %g%%", s.kld.mean,
                  t.max_kld, 100 * s.top1.mean, 100 * t.min_top1);
    line += buf;
  } else {
    for (size_t i = 0; i < j.reasons.size(); ++i) line += (i ? "; " : "") + j.reasons[i];
  }
  if (j.verdict != eval::Verdict::Pass) {
    if (j.worst_position)
      line += "; worst position: sequence " + std::to_string(j.worst_position->sequence) + ", position " +
              std::to_string(j.worst_position->position);
    if (j.worst_layer) line += "; worst layer: " + std::to_string(j.worst_layer->layer);
    if (j.worst_kind) line += " (" + j.worst_kind->kind + ")";
  }
  std::printf("%s\n", line.c_str());
}

void run(const EvalArgs& a) {
  const ForwardDevice d = resolve_forward_device(a.device, a.precision, a.gpu_memory);
  const bool gpu = d.gpu;
  const gpu_engine::Precision precision = d.precision;
  if (!a.save_base_logits.empty() && !a.base_logits.empty())
    throw InputError("--save-base-logits and --base-logits: give one of them");
  eval::require_same_model_type(a.quantized, a.base);
  const calib::CalibBatch data =
      calib::load_model_data({a.base, a.data, a.data_format, a.tokenizer, a.samples, a.seq_len, a.samples_given, a.seq_len_given});
  if (!a.quiet)
    for (const std::string& n : data.notes) std::fprintf(stderr, "eval: note: %s\n", n.c_str());
  if (data.rows == 0)
    throw InputError(data.source + ": too little data for one sequence of " + std::to_string(a.seq_len) + " tokens");

  eval::EvalOptions o;
  o.quantized = a.quantized;
  o.base = a.base;
  o.threads = a.threads;
  o.attribution = !a.no_attribution;
  if (gpu) {
    o.runner = gpu_engine::gpu_runner_factory(precision, d.memory);
    if (o.attribution && !a.quiet)
      std::fprintf(stderr, "eval: note: on the GPU the attribution is each layer's residual error (the quantized layer on "
                           "the base stream); the KL per layer and per kind of weight are CPU-only\n");
  }
  o.save_base_logits = a.save_base_logits;
  if (a.base_logits_dtype == "f16") o.save_dtype = eval::BaseLogitsDType::F16;
  else if (a.base_logits_dtype != "f32") throw InputError("--base-logits-dtype " + a.base_logits_dtype + ": f32 or f16");
  o.base_logits = a.base_logits;
  if (!a.quiet)
    std::fprintf(stderr, "eval: %s against %s, %lld sequences x %lld tokens from %s\n", a.quantized.c_str(),
                 a.base.c_str(), static_cast<long long>(data.rows), static_cast<long long>(data.seq_len),
                 data.source.c_str());
  const eval::EvalResult r = eval::evaluate(o, data.ids, data.rows, [&](int64_t done, int64_t total) {
    if (!a.quiet)
      std::fprintf(stderr, "eval: layer %lld/%lld\n", static_cast<long long>(done), static_cast<long long>(total));
  });
  const eval::Judgement j = eval::judge(r, a.thresholds);
  const nlohmann::json report = eval::eval_report_to_json(
      r, o, {data.source, a.base_logits.empty() ? a.save_base_logits : a.base_logits}, a.thresholds, j);
  if (!a.html_path.empty()) io::write_file_atomic(a.html_path, eval::eval_report_to_html(report));
  if (!a.json_path.empty()) write_json_report(a.json_path, report);
  if (a.json_path != "-") print_summary(r, j, a.thresholds);
  if (j.verdict == eval::Verdict::Fail) throw ExitCode{1};
}

void add_command(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand(
      "eval",
      "How much quantization cost: the same token sequences through QUANTIZED and its source (--base) with the f32 "
      "CPU forward pass (or the GPU's, --device cuda); PPL(Q), PPL(base), their ratio, KL divergence, Δp and top-1 agreement statistics as "
      "llama.cpp's llama-perplexity --kl-divergence prints them, and where the error comes from (each layer, and "
      "its attention, shared expert and routed experts, alone quantized; on the GPU each layer's residual error). Exit 0 PASS or WARN, 1 FAIL (a threshold broken), 2 bad input, 3 I/O or internal failure.");
  cmd->add_option("QUANTIZED", args->quantized, "Quantized checkpoint directory")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--base", args->base, "Source checkpoint it was converted from")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--data", args->data,
                  "Text (one sample per line), JSON lines {\"text\": ...}, token ids (.ids) or a safetensors "
                  "input_ids [B,S] tensor (default: the built-in corpus, tokenized with --base's tokenizer.json)");
  cmd->add_option("--data-format", args->data_format, "auto (default), text, jsonl, ids, safetensors");
  cmd->add_option("--tokenizer", args->tokenizer, "tokenizer.json for text data (default: BASE/tokenizer.json)");
  auto* samples = cmd->add_option("--samples", args->samples,
                                  "Sequences (default 16; with token-id data, every sequence the file holds)")
                      ->check(CLI::PositiveNumber);
  auto* seq_len = cmd->add_option("--seq-len", args->seq_len,
                                  "Tokens per sequence (default 512; with token-id data, the stored length)")
                      ->check(CLI::PositiveNumber);
  cmd->add_option("--device", args->device, "cpu (default) or cuda: both models through the GPU forward pass side by side, streamed "
                  "layer by layer (each layer read once per model); the attribution there is each layer's residual "
                  "error, the KL per layer and per kind being CPU-only");
  add_gpu_memory_option(cmd, args->gpu_memory);
  add_precision_option(cmd, args->precision);
  cmd->add_option("--save-base-logits", args->save_base_logits,
                  "Also write the base model's logits to this file (4*vocab+8 bytes per token, F16: 2*vocab+8)");
  cmd->add_option("--base-logits-dtype", args->base_logits_dtype,
                  "f32 (default: exact) or f16 (half the size; each row minus its maximum, rounded)");
  cmd->add_option("--base-logits", args->base_logits,
                  "Read the base model's logits from a --save-base-logits file instead of running the base model "
                  "(no attribution then)");
  cmd->add_option("--max-kld", args->thresholds.max_kld, "FAIL above this mean KLD in nats (default 0.05)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--min-top1", args->thresholds.min_top1, "FAIL below this top-1 agreement fraction (default 0.90)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_flag("--no-attribution", args->no_attribution,
                "Skip the per-layer and per-kind attribution (most of the time on small models)");
  cmd->add_option("--json", args->json_path, "Write the JSON report to this file ('-' for stdout)");
  cmd->add_option("--html", args->html_path, "Write a self-contained HTML report to this file");
  cmd->add_option("--threads", args->threads, "Worker threads (default: all cores); never changes the numbers");
  cmd->add_flag("--quiet", args->quiet, "No progress on stderr");
  cmd->callback([args, samples, seq_len] {
    args->samples_given = samples->count() > 0;
    args->seq_len_given = seq_len->count() > 0;
    run(*args);
  });
}

const CommandRegistration kRegistration(76, add_command);

}  // namespace eval_command

}  // namespace fp4kit::cli
