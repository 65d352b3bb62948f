#include "serve/reply_text.h"

namespace fp4kit::serve {

std::string token_bytes(const calib::Tokenizer& tokenizer, int32_t id) {
  if (id < 0 || id >= tokenizer.vocab_size() || tokenizer.token_text(id).empty()) return "";
  const int32_t ids[1] = {id};
  return tokenizer.decode(ids);
}

size_t complete_utf8_prefix(const std::string& s) {
  // Only the last (up to) 3 bytes can start an unfinished sequence.
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
    const size_t need = c >= 0xF0 && c < 0xF8 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return need > back ? n - back : n;
  }
  return n;
}

ReplyText::ReplyText(const calib::Tokenizer& tokenizer, std::vector<std::string> stops, std::optional<int32_t> think_end,
                     bool tool_calls, std::optional<int32_t> think_start, ToolCallSyntax tool_syntax)
    : tokenizer_(tokenizer),
      stop_(std::move(stops)),
      think_end_(think_end),
      think_start_(think_start),
      in_reasoning_(think_end.has_value() && !think_start.has_value()) {
  if (tool_calls) tools_.emplace(tool_syntax);
}

void ReplyText::answer(const ToolCallDelta& t, ReplyDelta& d) {
  d.content += stop_.push(t.text);
  if (!stop_.stopped()) d.tool_calls.insert(d.tool_calls.end(), t.calls.begin(), t.calls.end());
}

std::string ReplyText::take_complete_utf8() {
  const size_t n = complete_utf8_prefix(bytes_);
  std::string out = bytes_.substr(0, n);
  bytes_.erase(0, n);
  return out;
}

ReplyDelta ReplyText::push(int32_t token) {
  ReplyDelta d;
  if (stop_.stopped()) return d;
  const bool first = first_token_;
  first_token_ = false;
  if (first && think_start_ && think_end_ && token == *think_start_) {
    in_reasoning_ = true;
    return d;
  }
  if (in_reasoning_ && think_end_ && token == *think_end_) {
    d.reasoning = bytes_;  // whatever was held back belongs to the reasoning
    bytes_.clear();
    in_reasoning_ = false;
    return d;
  }
  bytes_ += token_bytes(tokenizer_, token);
  std::string text = take_complete_utf8();
  if (in_reasoning_) d.reasoning = std::move(text);
  else if (tools_) answer(tools_->push(text), d);
  else d.content = stop_.push(text);
  return d;
}

ReplyDelta ReplyText::finish() {
  ReplyDelta d;
  if (stop_.stopped()) return d;
  std::string rest = bytes_;
  bytes_.clear();
  if (in_reasoning_) {
    d.reasoning = rest;
  } else if (tools_) {
    answer(tools_->push(rest), d);
    answer(tools_->finish(), d);
    d.content += stop_.flush();
  } else {
    d.content = stop_.push(rest) + stop_.flush();
  }
  return d;
}

}  // namespace fp4kit::serve
