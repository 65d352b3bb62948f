#pragma once
// Turns a request's generated tokens into the text a client receives, as it arrives:
//   - bytes are sent only once they form complete UTF-8 characters (a character may span tokens);
//   - in a thinking-mode chat reply, the text before the </think> token is the reasoning and the
//     text after it the answer (the token itself is not sent);
//   - with tools, the answer's DeepSeek tool-call blocks become calls (tool_call_stream.h);
//   - the rest of the answer goes through the stop strings (StopMatcher); EOS is not text.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "calib/tokenizer.h"
#include "serve/stop_matcher.h"
#include "serve/tool_call_stream.h"

namespace fp4kit::serve {

struct ReplyDelta {
  std::string reasoning, content;
  std::vector<ParsedToolCall> tool_calls;
  bool empty() const { return reasoning.empty() && content.empty() && tool_calls.empty(); }
};

class ReplyText {
 public:
  // `think_end`: the </think> token when the reply starts inside the reasoning, else nullopt.
  // `tool_calls`: read tool-call blocks (in `tool_syntax`) out of the answer. `think_start`: the reply starts outside
  // the reasoning, and a first token <think> opens it (until `think_end`), as a model writes it
  // when its template leaves the tag to the model (DeepSeek R1's).
  ReplyText(const calib::Tokenizer& tokenizer, std::vector<std::string> stops, std::optional<int32_t> think_end,
            bool tool_calls = false, std::optional<int32_t> think_start = std::nullopt,
            ToolCallSyntax tool_syntax = ToolCallSyntax::DeepSeekV4);
  ReplyDelta push(int32_t token);
  // The text still held back, at the end of generation.
  ReplyDelta finish();
  bool stopped() const { return stop_.stopped(); }

 private:
  std::string take_complete_utf8();
  void answer(const ToolCallDelta& t, ReplyDelta& d);
  const calib::Tokenizer& tokenizer_;
  StopMatcher stop_;
  std::optional<int32_t> think_end_, think_start_;
  bool in_reasoning_;
  bool first_token_ = true;
  std::optional<ToolCallStream> tools_;
  std::string bytes_;  // decoded bytes not yet sent (an incomplete character)
};

// The bytes of one token; "" for an id the tokenizer has no text for (models pad their vocabulary
// beyond the tokenizer's).
std::string token_bytes(const calib::Tokenizer& tokenizer, int32_t id);

// The length of the longest prefix of `s` made of complete UTF-8 sequences (an invalid byte counts
// as complete, so that garbage is passed on rather than held forever).
size_t complete_utf8_prefix(const std::string& s);

}  // namespace fp4kit::serve
