#include "serve/tool_call_stream.h"

#include <algorithm>

#include "serve/deepseek_v3_tool_calls.h"

namespace fp4kit::serve {

ToolCallStream::ToolCallStream(ToolCallSyntax syntax) : syntax_(syntax) {
  if (syntax == ToolCallSyntax::DeepSeekV4) {
    start_ = kDsmlToolCallsStart;                       // "<｜DSML｜tool_calls>"
    start_with_line_ = "\n\n" + start_;
    open_tag_ = start_.substr(0, start_.size() - 1);    // without '>': the encoder's marker
    end_ = kDsmlToolCallsEnd;
  } else {
    start_ = open_tag_ = kToolCallsBegin;
    end_ = kToolCallsEnd;
  }
}

// Where the held-back tail starts: the longest suffix of `s` that may still grow into the marker.
size_t ToolCallStream::hold_from(const std::string& s) const {
  const size_t n = s.size(), longest = std::max(start_with_line_.size(), start_.size());
  for (size_t i = n > longest ? n - longest : 0; i < n; ++i) {
    const std::string_view tail(s.data() + i, n - i);
    if ((!start_with_line_.empty() && std::string_view(start_with_line_).substr(0, tail.size()) == tail) ||
        std::string_view(start_).substr(0, tail.size()) == tail)
      return i;
  }
  return n;
}

ToolCallDelta ToolCallStream::push(const std::string& piece) {
  ToolCallDelta d;
  if (state_ == State::After) {
    d.text = piece;
    return d;
  }
  pending_ += piece;
  if (state_ == State::Text) {
    const size_t at = pending_.find(start_);
    if (at == std::string::npos) {
      const size_t keep = hold_from(pending_);
      d.text = pending_.substr(0, keep);
      pending_.erase(0, keep);
      return d;
    }
    d.text = pending_.substr(0, at);
    if (syntax_ == ToolCallSyntax::DeepSeekV4 && d.text.size() >= 2 && d.text.compare(d.text.size() - 2, 2, "\n\n") == 0) {
      d.text.resize(d.text.size() - 2);
      dropped_ = "\n\n";
    }
    pending_.erase(0, at + open_tag_.size());  // DeepSeek V4: the block from its '>' on, as the encoder reads it
    state_ = State::Block;
  }
  const size_t end = pending_.find(end_);
  if (end == std::string::npos) return d;
  const size_t block_end = end + end_.size();
  const std::string block = pending_.substr(0, block_end), rest = pending_.substr(block_end);
  pending_.clear();
  state_ = State::After;
  auto calls = syntax_ == ToolCallSyntax::DeepSeekV4 ? parse_dsml_tool_calls(block) : parse_deepseek_v3_tool_calls(block);
  if (calls && !calls->empty()) {
    d.calls = std::move(*calls);
    found_calls_ = true;
  } else {
    d.text += dropped_ + open_tag_ + block;
  }
  d.text += rest;
  return d;
}

ToolCallDelta ToolCallStream::finish() {
  ToolCallDelta d;
  if (state_ == State::Block) d.text = dropped_ + open_tag_ + pending_;
  else d.text = pending_;
  pending_.clear();
  state_ = State::After;
  return d;
}

}  // namespace fp4kit::serve
