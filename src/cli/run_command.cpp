// fp4kit run MODEL: the f32 forward pass over given token ids, on the CPU (the reference) or the GPU;
// parsing and printing only.
#include <chrono>
#include <cstdio>
#include <memory>
#include <numeric>
#include <string>

#include <nlohmann/json.hpp>

#include "base/peak_rss.h"
#include "cli/commands.h"
#include "cli/json_report.h"
#include "cuda/device.h"
#include "engine/engine.h"
#include "engine/logits_file.h"
#include "engine/token_ids.h"
#include "gpu_engine/gpu_forward.h"

namespace fp4kit::cli {

// Named, not anonymous: the command files compile as one unit (unity build).
namespace run_command {

struct RunArgs {
  std::string model, ids, ids_file, out, device = "cpu", precision, gpu_memory;
  unsigned threads = 0;
  int top = 5;
  bool json = false;
};

// The `n` largest logits of a row, best first (ties: lower id first).
std::vector<int64_t> top_tokens(const float* row, int64_t vocab, int n) {
  std::vector<int64_t> idx(static_cast<size_t>(vocab));
  std::iota(idx.begin(), idx.end(), 0);
  const auto k = std::min<int64_t>(n, vocab);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int64_t a, int64_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
  idx.resize(static_cast<size_t>(k));
  return idx;
}

// Logits of every position, the time of each layer and of the head, and the threads used.
struct Pass {
  std::vector<float> logits;
  std::vector<double> layer_seconds;
  double head_seconds = 0;
  unsigned threads = 0;
  int64_t vocab = 0;
};

Pass cpu_pass(const RunArgs& a, const engine::TokenBatch& ids) {
  engine::EngineOptions o;
  o.threads = a.threads;
  engine::Engine eng(a.model, o);
  using Clock = std::chrono::steady_clock;
  const auto since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  Pass p;
  engine::ForwardState state = eng.embed(ids.ids, ids.batch);
  for (int64_t l = 0; l < eng.config().layers(); ++l) {
    const auto t = Clock::now();
    eng.run_layer(l, state);
    p.layer_seconds.push_back(since(t));
  }
  const auto head_start = Clock::now();
  p.logits = eng.head(state);
  p.head_seconds = since(head_start);
  p.threads = eng.threads();
  p.vocab = eng.config().base.vocab_size;
  return p;
}

Pass gpu_pass(const RunArgs& a, const engine::TokenBatch& ids, gpu_engine::Precision precision) {
  gpu_engine::GpuForwardOptions o;
  o.precision = precision;
  o.gpu_memory = gpu_engine::parse_gpu_memory(a.gpu_memory);
  gpu_engine::GpuForward gpu(a.model, o);
  Pass p;
  p.logits = gpu.forward(ids.ids, ids.batch, &p.layer_seconds);
  p.vocab = gpu.config().base.vocab_size;
  return p;
}

void run(const RunArgs& a) {
  const ForwardDevice d = resolve_forward_device(a.device, a.precision, a.gpu_memory);
  const cuda::Device device = d.gpu ? cuda::Device::Cuda : cuda::Device::Cpu;
  const gpu_engine::Precision precision = d.precision;
  const engine::TokenBatch ids = engine::token_ids_from_options(a.ids, a.ids_file);
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const Pass pass = device == cuda::Device::Cuda ? gpu_pass(a, ids, precision) : cpu_pass(a, ids);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const std::vector<float>& logits = pass.logits;
  const std::vector<double>& layer_seconds = pass.layer_seconds;
  const double head_seconds = pass.head_seconds;
  const int64_t V = pass.vocab, S = ids.seq();
  if (!a.out.empty()) engine::write_logits(a.out, logits, ids.batch, S, V);

  nlohmann::json report = {{"model", a.model}, {"batch", ids.batch}, {"seq", S}, {"seconds", seconds},
                           {"tokens_per_second", seconds > 0 ? static_cast<double>(ids.ids.size()) / seconds : 0.0},
                           {"layer_seconds", layer_seconds}, {"head_seconds", head_seconds},
                           {"threads", pass.threads}, {"device", std::string(cuda::device_name(device))},
                           {"precision", gpu_engine::precision_name(precision)},
                           {"peak_rss_bytes", peak_rss_bytes()}};
  nlohmann::json last = nlohmann::json::array();
  for (int64_t b = 0; b < ids.batch; ++b) {
    const float* row = &logits[((b + 1) * S - 1) * V];
    nlohmann::json top = nlohmann::json::array();
    for (int64_t t : top_tokens(row, V, a.top)) top.push_back({{"id", t}, {"logit", row[t]}});
    last.push_back({{"sequence", b}, {"top", top}});
  }
  report["last_position"] = last;
  if (!a.out.empty()) report["out"] = a.out;
  if (a.json) {
    write_json_report("-", report);
    return;
  }
  std::printf("%lld x %lld tokens through %s in %.2f s (%.1f tokens/s)\n", static_cast<long long>(ids.batch),
              static_cast<long long>(S), a.model.c_str(), seconds, report["tokens_per_second"].get<double>());
  for (const auto& seq : last) {
    std::printf("sequence %lld, last position: top tokens", static_cast<long long>(seq["sequence"].get<int64_t>()));
    for (const auto& t : seq["top"])
      std::printf("  %lld (%.4f)", static_cast<long long>(t["id"].get<int64_t>()), t["logit"].get<double>());
    std::printf("\n");
  }
  if (!a.out.empty()) std::printf("logits written to %s\n", a.out.c_str());
}

void add_command(CLI::App& app) {
  auto args = std::make_shared<RunArgs>();
  auto* cmd = app.add_subcommand("run",
                                 "Run token ids through a DeepSeek V4 checkpoint (any storage: FP8, MXFP4, NVFP4, BF16) "
                                 "with fp4kit's forward pass (the f32 CPU reference, or the GPU), and print the top tokens of "
                                 "the last position.");
  cmd->add_option("MODEL", args->model, "Checkpoint directory")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--ids", args->ids, "Token ids, e.g. \"0 15 7\" (one sequence; newlines separate sequences)");
  cmd->add_option("--ids-file", args->ids_file,
                  "safetensors file with I64 input_ids [B,S], or a text file with one sequence of ids per line");
  cmd->add_option("--out", args->out, "Write F32 logits [S,vocab] (or [B,S,vocab]) to this safetensors file");
  cmd->add_option("--top", args->top, "How many top tokens to print")->check(CLI::Range(1, 100));
  cmd->add_option("--device", args->device,
                  "cpu (the f32 reference) or cuda (the forward pass on the GPU, streaming the checkpoint; whole "
                  "sequences from position 0)")
      ->capture_default_str();
  add_gpu_memory_option(cmd, args->gpu_memory);
  add_precision_option(cmd, args->precision);
  cmd->add_option("--threads", args->threads, "Worker threads (default: all cores); results do not depend on it");
  cmd->add_flag("--json", args->json, "Print one JSON document instead of text");
  cmd->callback([args] { run(*args); });
}

const CommandRegistration kRegistration(70, add_command);

}  // namespace run_command

}  // namespace fp4kit::cli
