#pragma once
// One request's response in OpenAI's shapes, built as its tokens arrive (on the scheduler thread)
// and pushed to its ReplyChannel:
//   streaming      a `data: {chunk}` event per token that adds text (or logprobs), then a final
//                  chunk with finish_reason and usage, then `data: [DONE]`; chat streams start
//                  with a chunk holding the assistant role;
//   not streaming  one JSON object with the whole text, finish_reason and usage.
// Chat replies carry the thinking text as reasoning_content beside content; with tools, the model's
// calls come as tool_calls (streamed as one delta per closed call block, each call with its index,
// id, name and whole arguments) and a reply that ended at EOS after calls finishes with
// "tool_calls". usage counts the
// prompt's tokens and every generated token (EOS included, as vLLM counts it).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "calib/tokenizer.h"
#include "serve/reply_channel.h"
#include "serve/reply_text.h"
#include "serve/sampling.h"
#include "serve/scheduler.h"

namespace fp4kit::serve {

struct ReplyFormat {
  bool chat = false;
  bool stream = false;
  bool logprobs = false;
  bool tools = false;  // read tool calls out of the answer
  ToolCallSyntax tool_syntax = ToolCallSyntax::DeepSeekV4;
  // The reply starts outside the reasoning and a first <think> token opens it (reply_text.h).
  std::optional<int32_t> think_start;
  std::string id, model;
  int64_t created = 0;
};

class OpenAIReply {
 public:
  OpenAIReply(ReplyFormat format, const calib::Tokenizer& tokenizer, std::vector<std::string> stops,
              std::optional<int32_t> think_end, std::optional<int32_t> eos, int64_t prompt_tokens);
  // Scheduler callbacks.
  TokenVerdict on_token(const SampledToken& token);
  void on_finish(FinishReason reason, const std::string& error);
  // Where the HTTP side reads the body; status() is final once the channel is closed.
  ReplyChannel& channel() { return channel_; }
  int status() const { return status_; }
  // Streaming: the chunk that opens the stream (the assistant role for chat), sent before any token.
  void open_stream();

 private:
  nlohmann::json chunk(const ReplyDelta& delta, const std::vector<SampledToken>& tokens) const;
  nlohmann::json logprobs_json(const std::vector<SampledToken>& tokens) const;
  nlohmann::json usage() const;
  nlohmann::json tool_calls_json(const std::vector<ParsedToolCall>& calls, size_t first_index, bool streaming) const;
  std::string token_text(int32_t id) const;

  ReplyFormat format_;
  const calib::Tokenizer& tokenizer_;
  ReplyText text_;
  std::optional<int32_t> eos_;
  int64_t prompt_tokens_ = 0, completion_tokens_ = 0;
  std::string content_, reasoning_;
  std::vector<ParsedToolCall> tool_calls_;
  std::vector<SampledToken> tokens_;  // for logprobs
  size_t text_offset_ = 0;            // completions logprobs: where the next token's text starts
  ReplyChannel channel_;
  int status_ = 200;
};

}  // namespace fp4kit::serve
