// fp4kit serve MODEL: the OpenAI-compatible HTTP server over the CPU engine or the GPU pass; flags
// and process plumbing only (signals, the loading thread). The server answers /health with 503 while the model
// loads; SIGINT or SIGTERM ends every generation and stops it.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <memory>
#include <mutex>
#include <pthread.h>
#include <string>
#include <thread>

#include "base/error.h"
#include "cli/commands.h"
#include "cuda/device.h"
#include "gpu_engine/gpu_sequence_model.h"
#include "serve/chat_template_check.h"
#include "serve/http_server.h"
#include "serve/openai_service.h"

namespace fp4kit::cli {

// Named, not anonymous: the command files compile as one unit (unity build).
namespace serve_command {

struct ServeArgs {
  std::string model, tokenizer, host = "127.0.0.1", device = "cpu", api_key, model_name, chat_format = "auto";
  std::string sample_on = "device";
  std::string precision, gpu_memory;
  int port = 8000;
  int64_t parallel = 4, queue = 16, ctx_size = 4096, prefill_chunk = 512;
  unsigned threads = 0;
  size_t max_body_mb = 8;
  bool no_warmup = false;
};

void run(const ServeArgs& a) {
  const ForwardDevice d = resolve_forward_device(a.device, a.precision, a.gpu_memory);
  const engine::SequenceModelFactory model =
      d.gpu ? gpu_engine::gpu_sequence_model_factory(d.precision, d.memory, a.sample_on == "device")
            : engine::cpu_sequence_model_factory();
  // A template the model ships is read before anything starts: one outside the Jinja subset is
  // refused (exit 2).
  serve::ChatFormat chat_format = serve::resolve_chat_format(a.model, a.chat_format == "deepseek-v4");
  std::fprintf(stderr, "fp4kit serve: %s\n", chat_format.description.c_str());
  // Signals go to one waiting thread, not to whichever thread the kernel picks.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);  // sent by this function itself to end the waiting thread
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  serve::ServiceOptions so;
  so.model_name = a.model_name.empty() ? a.model : a.model_name;
  so.ctx_size = a.ctx_size;
  so.api_key = a.api_key;
  so.scheduler = {a.parallel, a.queue, a.prefill_chunk};
  so.chat_format = std::move(chat_format);
  so.warmup = !a.no_warmup;
  serve::OpenAIService service(so);
  serve::HttpServerOptions ho;
  ho.host = a.host;
  ho.port = a.port;
  ho.max_body_bytes = a.max_body_mb << 20;
  // A connection thread for every running and waiting request and a few stalled clients, within reason.
  ho.threads = static_cast<size_t>(std::min<int64_t>(a.parallel + a.queue + 8, 512));
  serve::HttpServer server(service, ho);
  const int port = server.bind();
  std::fprintf(stderr, "fp4kit serve: listening on http://%s:%d (model %s loading)\n", a.host.c_str(), port, so.model_name.c_str());

  std::mutex failure_mutex;
  std::string failure;
  bool failure_is_input = false;
  std::thread loader([&] {
    try {
      engine::EngineOptions eo;
      eo.threads = a.threads;
      service.load(a.model, a.tokenizer.empty() ? a.model + "/tokenizer.json" : a.tokenizer, eo, model);
      std::fprintf(stderr, "fp4kit serve: ready on http://%s:%d\n", a.host.c_str(), port);
    } catch (const std::exception& e) {
      std::lock_guard lock(failure_mutex);
      failure = e.what();
      failure_is_input = dynamic_cast<const InputError*>(&e) != nullptr;
      server.stop();
    }
  });
  std::thread signal_waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig == SIGUSR1) return;  // the server has stopped by itself
    std::fprintf(stderr, "fp4kit serve: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    service.shutdown();
    server.stop();
  });
  server.run();
  pthread_kill(signal_waiter.native_handle(), SIGUSR1);
  signal_waiter.join();
  loader.join();
  service.shutdown();
  if (!failure.empty()) {
    if (failure_is_input) throw InputError(failure);
    throw Error(failure);
  }
}

void add_command(CLI::App& app) {
  auto args = std::make_shared<ServeArgs>();
  auto* cmd = app.add_subcommand(
      "serve",
      "An OpenAI-compatible HTTP server over the engine: /v1/chat/completions (DeepSeek V4 chat format or the "
      "model's Jinja template, reasoning_content), /v1/completions, /v1/models, /tokenize, /detokenize, /health, /metrics; streaming (SSE) "
      "and not; continuous batching of up to --parallel requests, on the CPU or one GPU. See docs/serve.md.");
  cmd->add_option("MODEL", args->model, "Checkpoint directory")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--tokenizer", args->tokenizer, "tokenizer.json (default: MODEL/tokenizer.json)");
  cmd->add_option("--host", args->host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", args->port, "Port (0: any free port; the chosen one is printed)")
      ->check(CLI::Range(0, 65535))->capture_default_str();
  cmd->add_option("--device", args->device,
                  "cpu (the f32 engine; requests share each decode step) or cuda (the GPU pass, the checkpoint resident "
                  "where it fits in half the GPU memory; each request keeps its caches on the device, a decode "
                  "step runs the requests as one batch, prompt chunks of one length together)")
      ->capture_default_str();
  cmd->add_option("--sample-on", args->sample_on,
                  "With --device cuda, where the next tokens are drawn: device (on the GPU, where the logits are) or "
                  "host (every step's logits go to the CPU, which draws them); the same tokens either way")
      ->check(CLI::IsMember({"device", "host"}))
      ->capture_default_str();
  add_gpu_memory_option(cmd, args->gpu_memory);
  add_precision_option(cmd, args->precision);
  cmd->add_option("--parallel", args->parallel, "Requests generating at once (they share each decode step)")
      ->check(CLI::Range(int64_t{1}, int64_t{256}))->capture_default_str();
  cmd->add_option("--queue", args->queue, "Requests that may wait for a slot; more are answered 503 at once")
      ->check(CLI::Range(int64_t{0}, int64_t{4096}))->capture_default_str();
  cmd->add_option("--prefill-chunk", args->prefill_chunk,
                  "Prompt tokens a request runs per step (the others' decoding waits for at most one chunk)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))->capture_default_str();
  cmd->add_option("--ctx-size", args->ctx_size, "Context of one request: prompt and completion tokens together")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20))->capture_default_str();
  cmd->add_option("--api-key", args->api_key,
                  "Require 'Authorization: Bearer KEY' (all routes but /health, /metrics); also from FP4KIT_API_KEY, "
                  "which keeps the key out of the process list")
      ->envname("FP4KIT_API_KEY");
  cmd->add_option("--model-name", args->model_name, "The model's id in the API (default: MODEL as given)");
  cmd->add_option("--chat-format", args->chat_format,
                  "auto: the Jinja chat template the model ships (DeepSeek V3/R1/V3.1-style; a V4 template or none: DeepSeek "
                  "V4's encoder rules); deepseek-v4: the encoder's rules whatever the model ships")
      ->check(CLI::IsMember({"auto", "deepseek-v4"}))->capture_default_str();
  cmd->add_option("--threads", args->threads, "Engine worker threads (default: all cores)");
  cmd->add_option("--max-body-mb", args->max_body_mb, "Largest request body in MiB (413 above)")
      ->check(CLI::Range(size_t{1}, size_t{1024}))->capture_default_str();
  cmd->add_flag("--no-warmup", args->no_warmup,
                "Skip the throwaway prompt and decode step run before the server is ready (by default their one-time "
                "costs, such as the GPU's first kernel launches, come while /health answers 503, not in the first request)");
  cmd->callback([args] { run(*args); });
}

const CommandRegistration kRegistration(80, add_command);

}  // namespace serve_command

}  // namespace fp4kit::cli
