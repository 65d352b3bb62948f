#pragma once
// The OpenAI-compatible API without the HTTP library: a request (method, path, Authorization
// header, body) in, a reply (status, content type, body or an SSE stream) out. The HTTP server is a
// thin adapter over handle(); tests call it directly.
//   GET  /health              200 {"status":"ok"}, 503 while the model loads
//   GET  /v1/models           the one model, under --model-name
//   POST /v1/completions      prompt text (BOS added) or token ids
//   POST /v1/chat/completions DeepSeek V4 chat prompt (chat_template.h), or the model's Jinja template
//                             (jinja_chat_prompt.h); reasoning_content; tools
//   POST /tokenize            {"prompt"|"content": text} or {"messages": [...]} -> tokens, count
//   POST /detokenize          {"tokens": [...]} -> prompt
//   GET  /metrics             Prometheus text
// With an API key, every route but /health and /metrics needs `Authorization: Bearer KEY`.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "calib/tokenizer.h"
#include "engine/engine.h"
#include "engine/sequence_model.h"
#include "serve/api_error.h"
#include "serve/chat_template_check.h"
#include "serve/metrics.h"
#include "serve/openai_reply.h"
#include "serve/openai_request.h"
#include "serve/scheduler.h"

namespace fp4kit::serve {

struct ServiceOptions {
  std::string model_name = "fp4kit";
  int64_t ctx_size = 4096;  // prompt + generated tokens of one request
  std::string api_key;      // "" = no key needed
  SchedulerOptions scheduler;
  ChatFormat chat_format;   // default: DeepSeek V4's encoder rules
  // A throwaway prompt and decode step (and draw, where the model draws) before the server is ready:
  // the engine's one-time costs (first kernel launches, resident uploads) come while /health says
  // 503, not in the first request.
  bool warmup = true;
};

struct HttpReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // Streaming replies: the body comes from stream->channel() as it is written; job is cancelled
  // when the client goes away.
  std::shared_ptr<OpenAIReply> stream;
  std::shared_ptr<GenerationJob> job;
};

// Asked from time to time while a non-streaming reply is being generated: true once its client is
// gone, and the generation stops (finish reason "abort"). Empty: never asked.
using ClientGone = std::function<bool()>;

class OpenAIService {
 public:
  explicit OpenAIService(ServiceOptions options);
  ~OpenAIService();
  // Reads the tokenizer and opens the model (the CPU engine unless `model` makes another); /health says 503 until this returns. InputError for a
  // tokenizer whose ids do not fit the model's vocabulary.
  void load(const std::string& model_dir, const std::string& tokenizer_path, const engine::EngineOptions& engine_options,
            const engine::SequenceModelFactory& model = engine::cpu_sequence_model_factory());
  bool ready() const { return ready_; }
  // Ends every generation in progress (their replies finish with reason "abort") before the HTTP
  // server stops, so that no connection waits on the engine.
  void shutdown();
  HttpReply handle(const std::string& method, const std::string& path, const std::string& authorization,
                   const std::string& body, const ClientGone& client_gone = {});
  // A reply for an error found before handle() (body too large, malformed request line).
  static HttpReply error_reply(const ApiError& e);
  ServeMetrics& metrics() { return metrics_; }
  const Scheduler* scheduler() const { return scheduler_.get(); }

 private:
  struct Prompt {
    std::vector<int32_t> ids;
    std::string param;  // the request field it came from, for errors
  };
  HttpReply route(const std::string& method, const std::string& path, const std::string& body, const ClientGone& client_gone);
  HttpReply models() const;
  HttpReply tokenize(const nlohmann::ordered_json& body) const;
  HttpReply detokenize(const nlohmann::json& body) const;
  // How a chat reply's text starts: inside the reasoning (the prompt opened it), or outside with
  // the model free to open it (a template's prompt that leaves <think> to the model), or neither.
  enum class Reasoning { None, Open, MayOpen };
  std::string chat_prompt(const nlohmann::ordered_json& body, const ChatRequest& request) const;
  Reasoning reasoning_of(const std::string& prompt, const ChatRequest& request) const;
  HttpReply generate(const GenerationRequest& request, const Prompt& prompt, bool chat, Reasoning reasoning, bool tools,
                     const ClientGone& client_gone);
  void check_model(const std::string& model) const;
  void require_ready() const;

  ServiceOptions options_;
  ServeMetrics metrics_;
  std::optional<calib::Tokenizer> tokenizer_;
  std::unique_ptr<engine::SequenceModel> model_;
  std::unique_ptr<Scheduler> scheduler_;
  std::optional<int32_t> eos_, think_start_, think_end_;
  std::atomic<bool> ready_{false};
  std::atomic<uint64_t> next_id_{0};
  int64_t created_ = 0;
};

}  // namespace fp4kit::serve
