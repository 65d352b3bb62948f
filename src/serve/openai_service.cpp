#include "serve/openai_service.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "base/error.h"
#include "engine/generate.h"
#include "serve/api_error.h"
#include "serve/chat_template.h"
#include "serve/jinja_chat_prompt.h"
#include "serve/sse.h"

namespace fp4kit::serve {

using nlohmann::json;

namespace {

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

HttpReply json_reply(const json& body, int status = 200) { return {status, "application/json", json_text(body), {}, {}}; }

// Compares without stopping at the first difference, so that timing does not reveal the key.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

// A prompt of up to 32 tokens (past the GPU's decode-sized products, so its prompt kernels run too)
// and one decode step on a sequence that is then dropped; the step draws where the model draws.
// What the data can cause (InputError: a non-finite activation) is reported and the server starts
// (requests that meet it get a 500 naming it); a failure of the machine (Error) fails the load.
void warm_up(engine::SequenceModel& model, int64_t ctx_size) {
  const int64_t prompt = std::min<int64_t>(32, ctx_size - 1);
  if (prompt < 1) return;
  const std::unique_ptr<engine::SequenceModel::Sequence> seq = model.start();
  const std::vector<engine::SequenceModel::Sequence*> one{seq.get()};
  try {
    model.advance(one, std::vector<int64_t>(static_cast<size_t>(prompt), 0));
    if (model.draws_tokens()) model.advance_and_draw(one, {0}, {engine::TokenDraw{}});
    else model.advance(one, {0});
  } catch (const InputError& e) {
    std::fprintf(stderr, "fp4kit serve: warning: the warm-up request failed: %s\n", e.what());
  }
}

}  // namespace

OpenAIService::OpenAIService(ServiceOptions options) : options_(std::move(options)), created_(unix_time()) {}

OpenAIService::~OpenAIService() { scheduler_.reset(); }

void OpenAIService::shutdown() {
  if (ready_) scheduler_->stop();
}

void OpenAIService::load(const std::string& model_dir, const std::string& tokenizer_path,
                         const engine::EngineOptions& engine_options, const engine::SequenceModelFactory& model) {
  calib::Tokenizer tokenizer = calib::Tokenizer::load(tokenizer_path);
  auto engine = model(model_dir, engine_options, options_.ctx_size);
  const int64_t vocab = engine->config().base.vocab_size;
  if (tokenizer.vocab_size() > vocab)
    throw InputError("tokenizer " + tokenizer.label() + " has ids up to " + std::to_string(tokenizer.vocab_size() - 1) +
                     ", beyond the vocabulary of " + model_dir + " (vocab_size " + std::to_string(vocab) + ")");
  const nlohmann::json& config = engine->config().base.raw;
  if (config.contains("max_position_embeddings") && config["max_position_embeddings"].is_number_integer() &&
      options_.ctx_size > config["max_position_embeddings"].get<int64_t>())
    throw InputError("--ctx-size " + std::to_string(options_.ctx_size) + " is beyond the model's max_position_embeddings (" +
                     config["max_position_embeddings"].dump() + ") in " + model_dir + "/config.json");
  if (const auto eos = engine::config_eos_token_id(config)) eos_ = static_cast<int32_t>(*eos);
  think_start_ = tokenizer.token_id(kThinkStart);
  think_end_ = tokenizer.token_id(kThinkEnd);
  tokenizer_.emplace(std::move(tokenizer));
  if (options_.warmup) warm_up(*engine, options_.ctx_size);
  model_ = std::move(engine);
  scheduler_ = std::make_unique<Scheduler>(*model_, options_.scheduler, metrics_);
  ready_ = true;
}

HttpReply OpenAIService::error_reply(const ApiError& e) { return json_reply(error_body(e), e.status()); }

void OpenAIService::require_ready() const {
  if (!ready_) throw unavailable("Loading model");
}

void OpenAIService::check_model(const std::string& model) const {
  if (!model.empty() && model != options_.model_name)
    throw not_found("model_not_found", "The model '" + model + "' does not exist (this server serves '" + options_.model_name + "')");
}

HttpReply OpenAIService::handle(const std::string& method, const std::string& path, const std::string& authorization,
                                const std::string& body, const ClientGone& client_gone) {
  try {
    if (!options_.api_key.empty() && path != "/health" && path != "/metrics") {
      const std::string prefix = "Bearer ";
      const bool ok = authorization.compare(0, prefix.size(), prefix) == 0 &&
                      same_secret(authorization.substr(prefix.size()), options_.api_key);
      if (!ok) throw unauthorized("Invalid or missing API key (send 'Authorization: Bearer KEY')");
    }
    return route(method, path, body, client_gone);
  } catch (const ApiError& e) {
    return error_reply(e);
  } catch (const std::exception& e) {
    return error_reply(server_error(e.what()));
  }
}

HttpReply OpenAIService::route(const std::string& method, const std::string& path, const std::string& body,
                               const ClientGone& client_gone) {
  const auto is = [&](const char* m, const char* p) { return method == m && path == p; };
  if (is("GET", "/health")) {
    require_ready();
    return json_reply({{"status", "ok"}});
  }
  if (is("GET", "/metrics")) {
    const int64_t running = ready_ ? scheduler_->running() : 0, waiting = ready_ ? scheduler_->waiting() : 0;
    return {200, "text/plain; version=0.0.4", metrics_.render(running, waiting), {}, {}};
  }
  if (is("GET", "/v1/models")) return models();
  if (is("POST", "/tokenize")) {
    require_ready();
    return tokenize(parse_ordered_json_body(body));
  }
  if (is("POST", "/detokenize")) {
    require_ready();
    return detokenize(parse_json_body(body));
  }
  if (is("POST", "/v1/completions")) {
    const CompletionRequest r = parse_completion_request(parse_json_body(body));
    check_model(r.generation.model);
    require_ready();
    Prompt p{r.prompt_is_ids ? r.prompt_ids : tokenizer_->encode(r.prompt, /*add_special_tokens=*/true), "prompt"};
    return generate(r.generation, p, false, Reasoning::None, false, client_gone);
  }
  if (is("POST", "/v1/chat/completions")) {
    const nlohmann::ordered_json request = parse_ordered_json_body(body);
    const ChatRequest r = parse_chat_request(request);
    check_model(r.generation.model);
    require_ready();
    const std::string text = chat_prompt(request, r);
    Prompt p{tokenizer_->encode(text, /*add_special_tokens=*/false), "messages"};
    const bool read_calls = !r.tools.empty() && options_.chat_format.tool_calls.has_value();
    return generate(r.generation, p, true, reasoning_of(text, r), read_calls, client_gone);
  }
  throw not_found("unknown_route", "No route " + method + " " + path);
}

HttpReply OpenAIService::models() const {
  const json model = {{"id", options_.model_name}, {"object", "model"}, {"created", created_},
                      {"owned_by", "fp4kit"}, {"max_model_len", options_.ctx_size}};
  return json_reply({{"object", "list"}, {"data", json::array({model})}});
}

HttpReply OpenAIService::tokenize(const nlohmann::ordered_json& body) const {
  if (!body.is_object()) throw invalid_request("", "the request body must be a JSON object");
  std::vector<int32_t> ids;
  if (body.contains("messages")) {
    nlohmann::ordered_json chat = body;
    chat.erase("model");
    const ChatRequest r = parse_chat_request(chat);
    ids = tokenizer_->encode(chat_prompt(chat, r), false);
  } else {
    const char* key = body.contains("prompt") ? "prompt" : "content";
    if (!body.contains(key) || !body[key].is_string())
      throw invalid_request(key, std::string("'") + key + "' must be a string");
    bool add_special = true;
    for (const char* flag : {"add_special_tokens", "add_special"})
      if (body.contains(flag)) {
        if (!body[flag].is_boolean()) throw invalid_request(flag, std::string("'") + flag + "' must be a boolean");
        add_special = body[flag].get<bool>();
      }
    ids = tokenizer_->encode(body[key].get<std::string>(), add_special);
  }
  return json_reply({{"tokens", ids}, {"count", ids.size()}, {"max_model_len", options_.ctx_size}});
}

HttpReply OpenAIService::detokenize(const json& body) const {
  const auto it = body.is_object() ? body.find("tokens") : body.end();
  if (it == body.end() || !it->is_array()) throw invalid_request("tokens", "'tokens' must be an array of token ids");
  std::vector<int32_t> ids;
  for (const json& id : *it) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= tokenizer_->vocab_size())
      throw invalid_request("tokens", "'tokens': " + id.dump() + " is not a token id of this tokenizer");
    ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
  }
  const std::string text = tokenizer_->decode(ids);
  return json_reply({{"prompt", text}, {"content", text}});
}

std::string OpenAIService::chat_prompt(const nlohmann::ordered_json& body, const ChatRequest& r) const {
  const ChatFormat& format = options_.chat_format;
  if (format.jinja) return render_jinja_chat(*format.jinja, body, r, format.tokens);
  return render_deepseek_v4_chat(r.messages, r.thinking, r.tools);
}

OpenAIService::Reasoning OpenAIService::reasoning_of(const std::string& prompt, const ChatRequest& r) const {
  if (!options_.chat_format.jinja) return r.thinking ? Reasoning::Open : Reasoning::None;
  // A template's prompt that ends in <think> (DeepSeek V3.1 in thinking mode, R1's "<think>\n")
  // has opened the reasoning; one that ends otherwise leaves it to the model, unless the request
  // turned thinking off.
  size_t end = prompt.size();
  while (end > 0 && (prompt[end - 1] == '\n' || prompt[end - 1] == ' ')) --end;
  const std::string open = kThinkStart;
  if (end >= open.size() && prompt.compare(end - open.size(), open.size(), open) == 0) return Reasoning::Open;
  return r.thinking ? Reasoning::MayOpen : Reasoning::None;
}

HttpReply OpenAIService::generate(const GenerationRequest& r, const Prompt& prompt, bool chat, Reasoning reasoning, bool tools,
                                  const ClientGone& client_gone) {
  const int64_t n = static_cast<int64_t>(prompt.ids.size()), ctx = options_.ctx_size;
  const int64_t vocab = model_->config().base.vocab_size;
  for (int32_t id : prompt.ids)
    if (id >= vocab)
      throw invalid_request(prompt.param, "'" + prompt.param + "': token id " + std::to_string(id) +
                                              " is outside the model's vocabulary (" + std::to_string(vocab) + ")");
  if (n >= ctx)
    throw ApiError(400, "invalid_request_error", "context_length_exceeded",
                   "The prompt has " + std::to_string(n) + " tokens; this server's context is " + std::to_string(ctx) +
                       " tokens (prompt and completion together)",
                   prompt.param);
  if (r.max_tokens && *r.max_tokens > ctx - n)
    throw ApiError(400, "invalid_request_error", "context_length_exceeded",
                   "'max_tokens' is " + std::to_string(*r.max_tokens) + " but the prompt has " + std::to_string(n) +
                       " tokens and the context " + std::to_string(ctx) + ": at most " + std::to_string(ctx - n) + " more",
                   "max_tokens");

  ReplyFormat format;
  format.chat = chat;
  format.stream = r.stream;
  format.logprobs = r.logprobs;
  format.tools = tools;
  if (tools) format.tool_syntax = *options_.chat_format.tool_calls;
  if (chat && reasoning == Reasoning::MayOpen && think_start_) format.think_start = think_start_;
  char id[32];
  std::snprintf(id, sizeof id, "%016llx", static_cast<unsigned long long>(r.sampling.seed ^ (++next_id_ * 0x9E3779B97F4A7C15ull)));
  format.id = (chat ? "chatcmpl-" : "cmpl-") + std::string(id);
  format.model = options_.model_name;
  format.created = unix_time();
  auto reply = std::make_shared<OpenAIReply>(format, *tokenizer_, r.stop, chat && reasoning != Reasoning::None ? think_end_ : std::nullopt,
                                             eos_, n);
  auto job = std::make_shared<GenerationJob>();
  job->prompt.assign(prompt.ids.begin(), prompt.ids.end());
  job->sampling = r.sampling;
  job->max_tokens = r.max_tokens.value_or(ctx - n);
  if (eos_ && !r.ignore_eos) job->eos = *eos_;
  job->on_token = [reply](const SampledToken& t) { return reply->on_token(t); };
  job->on_finish = [reply](FinishReason reason, const std::string& error) { reply->on_finish(reason, error); };
  if (r.stream) reply->open_stream();
  if (!scheduler_->submit(job)) {
    ++metrics_.rejected_queue_full;
    throw unavailable("The server is busy: " + std::to_string(options_.scheduler.parallel) + " requests running and " +
                      std::to_string(options_.scheduler.max_waiting) + " waiting; try again later");
  }
  if (r.stream) return {200, "text/event-stream", "", reply, job};
  // Nothing is written before the end, so a client that leaves is only seen by asking: every
  // 50 ms; the scheduler then ends the job (abort) and closes the channel.
  while (!reply->channel().wait_closed(std::chrono::milliseconds(50)))
    if (client_gone && !job->cancelled && client_gone()) job->cancelled = true;
  std::string body = reply->channel().collect();
  return {reply->status(), "application/json", std::move(body), {}, {}};
}

}  // namespace fp4kit::serve
