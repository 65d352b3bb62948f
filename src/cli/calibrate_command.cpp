// fp4kit calibrate MODEL --out FILE: parsing and printing only; the job is calib/calibrate.
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "calib/calib_data.h"
#include "calib/calibrate.h"
#include "calib/model_data.h"
#include "cli/commands.h"
#include "cli/json_report.h"
#include "cuda/device.h"
#include "gpu_engine/gpu_layer_runner.h"

namespace fp4kit::cli {

// Named, not anonymous: the command files compile as one unit (unity build).
namespace calibrate_command {

struct CalibrateArgs {
  std::string model, data, data_format = "auto", tokenizer, out, w2_input = "unweighted", json_path, device = "cpu",
              precision, gpu_memory, hessian, hessian_mode = "blocks";
  int64_t samples = 128, seq_len = 512;
  unsigned threads = 0;
  bool all_experts = false, resume = false, force = false, quiet = false;
  bool samples_given = false, seq_len_given = false;
};

std::string fmt_eta(double s) {
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%dh%02dm", int(s / 3600), int(s / 60) % 60);
  else std::snprintf(buf, sizeof buf, "%dm%02ds", int(s / 60), int(s) % 60);
  return buf;
}

void run(const CalibrateArgs& a) {
  const calib::CalibBatch data = calib::load_model_data(
      {a.model, a.data, a.data_format, a.tokenizer, a.samples, a.seq_len, a.samples_given, a.seq_len_given});
  if (!a.quiet)
    for (const std::string& n : data.notes) std::fprintf(stderr, "calibrate: note: %s\n", n.c_str());

  CalibrationBatch batch;
  batch.ids = data.ids;
  batch.batch = data.rows;
  batch.seq = data.seq_len;
  batch.source = data.source;

  CalibrateOptions o;
  o.all_experts = a.all_experts;
  if (a.w2_input == "weighted") o.w2_input = W2Input::Weighted;
  else if (a.w2_input != "unweighted") throw InputError("--w2-input " + a.w2_input + ": unknown (unweighted, weighted)");
  o.resume = a.resume;
  o.force = a.force;
  o.threads = a.threads;
  o.hessian_path = a.hessian;
  if (a.hessian_mode == "full") o.hessian_full = true;
  else if (a.hessian_mode != "blocks") throw InputError("--hessian-mode " + a.hessian_mode + ": unknown (blocks, full)");
  if (a.hessian_mode != "blocks" && a.hessian.empty())
    throw InputError("--hessian-mode " + a.hessian_mode + ": needs --hessian PATH (where the statistics go)");
  const bool gpu = cuda::parse_device(a.device) == cuda::Device::Cuda;
  const ForwardDevice d = resolve_forward_device(a.device, a.precision, a.gpu_memory);
  const gpu_engine::Precision precision = d.precision;
  if (gpu) {
    o.runner = gpu_engine::gpu_runner_factory(precision, d.memory);
    // In the state's fingerprint: F32 GPU runs keep the name they had before BF16 existed.
    o.device = precision == gpu_engine::Precision::F32 ? "cuda" : "cuda bf16";
  }

  if (!a.quiet)
    std::fprintf(stderr, "calibrate: %s, %lld sequences x %lld tokens from %s, %s, w2 input %s\n", a.model.c_str(),
                 static_cast<long long>(batch.batch), static_cast<long long>(batch.seq), batch.source.c_str(),
                 a.all_experts ? "all experts" : "routed experts", a.w2_input.c_str());
  double elapsed = 0;
  int64_t ran = 0;
  const double tokens = double(batch.batch * batch.seq);
  const CalibrateReport r = calibrate(a.model, batch, a.out, o, [&](int64_t done, int64_t total, const CalibrateLayerReport& l) {
    if (a.quiet) return;
    elapsed += l.seconds;
    ++ran;
    const double eta = elapsed / double(ran) * double(total - done);
    std::string split;
    if (l.timing.bytes > 0) {  // a streaming runner: where the layer's time went
      char b[160];
      std::snprintf(b, sizeof b, "  %.2f GB at %.2f GB/s (read wait %.2f s, copy %.2f s, compute %.2f s)",
                    double(l.timing.bytes) / 1e9, double(l.timing.bytes) / 1e9 / l.seconds, l.timing.read_wait_seconds,
                    l.timing.copy_seconds, l.timing.compute_seconds);
      split = b;
    }
    std::fprintf(stderr, "calibrate: layer %lld/%lld  %.1f tokens/s  %.1f s%s  ETA %s\n", static_cast<long long>(done),
                 static_cast<long long>(total), l.seconds > 0 ? tokens / l.seconds : 0.0, l.seconds, split.c_str(),
                 fmt_eta(eta).c_str());
  });

  if (!a.quiet) {
    for (const CalibrateLayerReport& l : r.per_layer)
      if (!l.experts_without_tokens.empty())
        std::fprintf(stderr, "calibrate: layer %lld: %zu routed experts saw no token (convert falls back for them)\n",
                     static_cast<long long>(l.layer), l.experts_without_tokens.size());
    std::fprintf(stderr, "calibrate: %zu amax values -> %s (%.2f s)\n", r.entries, r.output.c_str(), r.seconds);
    if (!a.hessian.empty())
      std::fprintf(stderr, "calibrate: %s of %zu modules -> %s\n", o.hessian_full ? "full XᵀX" : "XᵀX blocks",
                   r.xtx_entries, a.hessian.c_str());
  }
  if (a.json_path.empty()) return;
  nlohmann::json layers = nlohmann::json::array();
  for (const CalibrateLayerReport& l : r.per_layer) {
    nlohmann::json stages = nlohmann::json::object();
    for (const auto& [stage, seconds] : l.timing.stage_seconds) stages[stage] = seconds;
    layers.push_back({{"layer", l.layer}, {"seconds", l.seconds}, {"resumed", l.resumed}, {"entries", l.entries},
                      {"tokens_per_second", l.seconds > 0 ? double(r.tokens) / l.seconds : 0.0},
                      {"experts_without_tokens", l.experts_without_tokens},
                      {"state_seconds", l.state_seconds},
                      {"state_saved", l.state_saved},
                      {"read_wait_seconds", l.timing.read_wait_seconds},
                      {"copy_seconds", l.timing.copy_seconds},
                      {"compute_seconds", l.timing.compute_seconds},
                      {"bytes", l.timing.bytes},
                      {"device_peak_bytes", l.timing.device_peak_bytes},
                      {"chunks", l.timing.chunks},
                      {"stage_seconds", stages}});
  }
  write_json_report(a.json_path, {{"model", a.model},
                                  {"output", r.output},
                                  {"data", batch.source},
                                  {"samples", batch.batch},
                                  {"seq_len", batch.seq},
                                  {"tokens", r.tokens},
                                  {"all_experts", a.all_experts},
                                  {"w2_input", a.w2_input},
                                  {"entries", r.entries},
                                  {"hessian", a.hessian.empty() ? nlohmann::json(nullptr) : nlohmann::json(a.hessian)},
                                  {"hessian_entries", r.xtx_entries},
                                  {"hessian_mode", a.hessian.empty() ? nlohmann::json(nullptr) : nlohmann::json(a.hessian_mode)},
                                  {"seconds", r.seconds},
                                  {"layers", layers}});
}

void add_command(CLI::App& app) {
  auto args = std::make_shared<CalibrateArgs>();
  auto* cmd = app.add_subcommand(
      "calibrate",
      "Max calibration with fp4kit's own forward pass, one decoder layer at a time: records max |x| of the input of "
      "every attention, shared-expert and routed-expert projection and writes '<module>.input_amax' F32 scalars, the "
      "file 'convert --calib' reads. Each finished layer is saved, so a killed run continues with --resume.");
  cmd->add_option("MODEL", args->model, "Checkpoint directory (any storage fp4kit reads)")->required();
  cmd->add_option("--out", args->out, "Output safetensors file of '<module>.input_amax' values")->required();
  cmd->add_option("--data", args->data,
                  "Calibration data: text (one sample per line), JSON lines {\"text\": ...}, token ids (.ids: one "
                  "sequence per line) or a safetensors input_ids [B,S] tensor (default: the built-in corpus)");
  cmd->add_option("--data-format", args->data_format, "auto (default), text, jsonl, ids, safetensors");
  cmd->add_option("--tokenizer", args->tokenizer, "tokenizer.json for text data (default: MODEL/tokenizer.json)");
  auto* samples = cmd->add_option("--samples", args->samples,
                                  "Sequences (default 128; with token-id data, every sequence the file holds)")
                      ->check(CLI::PositiveNumber);
  auto* seq_len = cmd->add_option("--seq-len", args->seq_len,
                                  "Tokens per sequence (default 512; with token-id data, the stored length)")
                      ->check(CLI::PositiveNumber);
  cmd->add_flag("--all-experts", args->all_experts,
                "Every routed expert also sees every token of its layer, for the statistics only");
  cmd->add_option("--w2-input", args->w2_input,
                  "unweighted (default: h = silu(g)*u, what vLLM, SGLang and TensorRT-LLM quantize) or weighted "
                  "(routing weight * h, as DeepSeek's code and ModelOpt's V4 calibration feed w2)");
  cmd->add_option("--device", args->device,
                  "cpu, or cuda: the forward pass on the GPU, streaming the checkpoint layer by layer (with "
                  "--precision f32 the same values to F32 rounding; a run resumes on the device and precision it "
                  "started with)")
      ->capture_default_str();
  add_gpu_memory_option(cmd, args->gpu_memory);
  add_precision_option(cmd, args->precision);
  cmd->add_option("--threads", args->threads, "Worker threads (default: all cores); never changes the output");
  cmd->add_option("--hessian", args->hessian,
                  "Also write the 16x16 diagonal blocks of X^T X of every calibrated module's input (F32 "
                  "'<module>.xtx_blocks' [K/16,16,16] and I64 '<module>.rows'), the file 'convert --scales hessian "
                  "--hessian' reads; on either device (with --device cuda summed in F64 on the GPU). With "
                  "--hessian-mode full: a directory");
  cmd->add_option("--hessian-mode", args->hessian_mode,
                  "blocks (default): the diagonal 16x16 blocks, one file; full: the whole X^T X of every module "
                  "(per group for wo_a) in a directory of one safetensors file per layer and 'xtx-full.json', what "
                  "'convert --gptq --hessian DIR' reads (with --device cuda each module's F64 matrix stays on the "
                  "GPU until its layer's last chunk)");
  cmd->add_flag("--resume", args->resume, "Continue an interrupted run from its last finished layer");
  cmd->add_flag("--force", args->force, "Replace an existing output and discard any saved state");
  cmd->add_option("--json", args->json_path, "Write a JSON report to this file ('-' for stdout)");
  cmd->add_flag("--quiet", args->quiet, "Print nothing but errors");
  cmd->callback([args, samples, seq_len] {
    args->samples_given = samples->count() > 0;
    args->seq_len_given = seq_len->count() > 0;
    run(*args);
  });
}

const CommandRegistration kRegistration(50, add_command);

}  // namespace calibrate_command

}  // namespace fp4kit::cli
