#include "serve/openai_reply.h"

#include "serve/api_error.h"
#include "serve/sse.h"

namespace fp4kit::serve {

using nlohmann::json;

namespace {
const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Abort: return "abort";
    case FinishReason::Error: return "error";
  }
  return "error";
}
// The token's UTF-8 bytes as numbers (a token may hold part of a character).
std::vector<int> byte_values(const std::string& s) {
  std::vector<int> out;
  for (char c : s) out.push_back(static_cast<unsigned char>(c));
  return out;
}
}  // namespace

OpenAIReply::OpenAIReply(ReplyFormat format, const calib::Tokenizer& tokenizer, std::vector<std::string> stops,
                         std::optional<int32_t> think_end, std::optional<int32_t> eos, int64_t prompt_tokens)
    : format_(std::move(format)), tokenizer_(tokenizer), text_(tokenizer, std::move(stops), think_end, format_.tools, format_.think_start, format_.tool_syntax),
      eos_(eos), prompt_tokens_(prompt_tokens) {}

json OpenAIReply::tool_calls_json(const std::vector<ParsedToolCall>& calls, size_t first_index, bool streaming) const {
  json out = json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    const size_t index = first_index + i;
    // The reply's id made into one per call: "chatcmpl-X" -> "call_X_0", "call_X_1", ...
    json call = {{"id", "call_" + format_.id.substr(format_.id.find('-') + 1) + "_" + std::to_string(index)},
                 {"type", "function"},
                 {"function", {{"name", calls[i].name}, {"arguments", calls[i].arguments}}}};
    if (streaming) call["index"] = index;
    out.push_back(call);
  }
  return out;
}

std::string OpenAIReply::token_text(int32_t id) const { return token_bytes(tokenizer_, id); }

json OpenAIReply::logprobs_json(const std::vector<SampledToken>& tokens) const {
  if (format_.chat) {
    json content = json::array();
    for (const SampledToken& t : tokens) {
      const auto entry = [&](int32_t id, double lp) {
        const std::string s = token_text(id);
        return json{{"token", s}, {"logprob", lp}, {"bytes", byte_values(s)}};
      };
      json e = entry(t.token, t.logprob);
      json top = json::array();
      for (const TokenLogprob& a : t.top) top.push_back(entry(a.token, a.logprob));
      e["top_logprobs"] = top;
      content.push_back(e);
    }
    return {{"content", content}};
  }
  json out = {{"tokens", json::array()}, {"token_logprobs", json::array()}, {"top_logprobs", json::array()}, {"text_offset", json::array()}};
  size_t offset = text_offset_;
  for (const SampledToken& t : tokens) {
    const std::string s = token_text(t.token);
    out["tokens"].push_back(s);
    out["token_logprobs"].push_back(t.logprob);
    json top = json::object();
    for (const TokenLogprob& a : t.top) top[token_text(a.token)] = a.logprob;
    out["top_logprobs"].push_back(top);
    out["text_offset"].push_back(offset);
    offset += s.size();
  }
  return out;
}

json OpenAIReply::usage() const {
  return {{"prompt_tokens", prompt_tokens_}, {"completion_tokens", completion_tokens_},
          {"total_tokens", prompt_tokens_ + completion_tokens_}};
}

json OpenAIReply::chunk(const ReplyDelta& delta, const std::vector<SampledToken>& tokens) const {
  json choice = {{"index", 0}, {"finish_reason", nullptr}};
  choice["logprobs"] = format_.logprobs && !tokens.empty() ? logprobs_json(tokens) : json(nullptr);
  if (format_.chat) {
    json d = json::object();
    if (!delta.reasoning.empty()) d["reasoning_content"] = delta.reasoning;
    if (!delta.content.empty()) d["content"] = delta.content;
    if (!delta.tool_calls.empty()) d["tool_calls"] = tool_calls_json(delta.tool_calls, tool_calls_.size() - delta.tool_calls.size(), true);
    choice["delta"] = d;
  } else {
    choice["text"] = delta.content;
  }
  return {{"id", format_.id}, {"object", format_.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", format_.created}, {"model", format_.model}, {"choices", json::array({choice})}};
}

void OpenAIReply::open_stream() {
  if (!format_.chat) return;
  json c = chunk({}, {});
  c["choices"][0]["delta"] = {{"role", "assistant"}, {"content", ""}};
  channel_.push(sse_event(c));
}

TokenVerdict OpenAIReply::on_token(const SampledToken& token) {
  ++completion_tokens_;
  const bool is_eos = eos_ && token.token == *eos_;
  const ReplyDelta delta = is_eos ? ReplyDelta{} : text_.push(token.token);
  content_ += delta.content;
  reasoning_ += delta.reasoning;
  tool_calls_.insert(tool_calls_.end(), delta.tool_calls.begin(), delta.tool_calls.end());
  if (format_.logprobs && !is_eos) tokens_.push_back(token);
  if (format_.stream && (!delta.empty() || (format_.logprobs && !is_eos))) {
    const std::vector<SampledToken> these = format_.logprobs && !is_eos ? std::vector<SampledToken>{token} : std::vector<SampledToken>{};
    channel_.push(sse_event(chunk(delta, these)));
    if (!format_.chat) text_offset_ += delta.content.size();
  }
  return text_.stopped() ? TokenVerdict::Stop : TokenVerdict::Continue;
}

void OpenAIReply::on_finish(FinishReason reason, const std::string& error) {
  if (reason == FinishReason::Error) {
    const ApiError e = server_error("generation failed: " + error);
    if (format_.stream) {
      channel_.push(sse_event(error_body(e)));
      channel_.push(sse_done());
    } else {
      status_ = 500;
      channel_.push(json_text(error_body(e)));
    }
    channel_.close();
    return;
  }
  const ReplyDelta rest = text_.finish();
  content_ += rest.content;
  reasoning_ += rest.reasoning;
  tool_calls_.insert(tool_calls_.end(), rest.tool_calls.begin(), rest.tool_calls.end());
  // OpenAI's reason for a turn that ends by calling tools.
  const std::string finish = !tool_calls_.empty() && reason == FinishReason::Stop ? "tool_calls" : finish_reason_name(reason);
  if (format_.stream) {
    if (!rest.empty()) channel_.push(sse_event(chunk(rest, {})));
    json last = chunk({}, {});
    last["choices"][0]["finish_reason"] = finish;
    last["usage"] = usage();
    channel_.push(sse_event(last));
    channel_.push(sse_done());
  } else {
    json choice = {{"index", 0}, {"finish_reason", finish}};
    choice["logprobs"] = format_.logprobs ? logprobs_json(tokens_) : json(nullptr);
    if (format_.chat) {
      json message = {{"role", "assistant"}, {"content", content_}};
      if (!tool_calls_.empty()) {
        if (content_.empty()) message["content"] = nullptr;  // as OpenAI answers a turn of calls only
        message["tool_calls"] = tool_calls_json(tool_calls_, 0, false);
      }
      if (!reasoning_.empty()) message["reasoning_content"] = reasoning_;
      choice["message"] = message;
    } else {
      choice["text"] = content_;
    }
    const json body = {{"id", format_.id}, {"object", format_.chat ? "chat.completion" : "text_completion"},
                       {"created", format_.created}, {"model", format_.model}, {"choices", json::array({choice})},
                       {"usage", usage()}};
    channel_.push(json_text(body));
  }
  channel_.close();
}

}  // namespace fp4kit::serve
