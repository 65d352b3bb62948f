#include "serve/tool_call_stream.h"

#include <algorithm>

namespace fp4kit::serve {

namespace {

const std::string kStart = kDsmlToolCallsStart;         // "<｜DSML｜tool_calls>"
const std::string kStartWithLine = "\n\n" + kStart;
const std::string kOpenTag = kStart.substr(0, kStart.size() - 1);  // without '>': the encoder's marker

// Where the held-back tail starts: the longest suffix of `s` that may still grow into the marker.
size_t hold_from(const std::string& s) {
  const size_t n = s.size();
  for (size_t i = n > kStartWithLine.size() ? n - kStartWithLine.size() : 0; i < n; ++i) {
    const std::string_view tail(s.data() + i, n - i);
    if (std::string_view(kStartWithLine).substr(0, tail.size()) == tail || std::string_view(kStart).substr(0, tail.size()) == tail)
      return i;
  }
  return n;
}

}  // namespace

ToolCallDelta ToolCallStream::push(const std::string& piece) {
  ToolCallDelta d;
  if (state_ == State::After) {
    d.text = piece;
    return d;
  }
  pending_ += piece;
  if (state_ == State::Text) {
    const size_t at = pending_.find(kStart);
    if (at == std::string::npos) {
      const size_t keep = hold_from(pending_);
      d.text = pending_.substr(0, keep);
      pending_.erase(0, keep);
      return d;
    }
    d.text = pending_.substr(0, at);
    if (d.text.size() >= 2 && d.text.compare(d.text.size() - 2, 2, "\n\n") == 0) {
      d.text.resize(d.text.size() - 2);
      dropped_ = "\n\n";
    }
    pending_.erase(0, at + kOpenTag.size());  // the block from its '>' on, as the encoder reads it
    state_ = State::Block;
  }
  const size_t end = pending_.find(kDsmlToolCallsEnd);
  if (end == std::string::npos) return d;
  const size_t block_end = end + std::string(kDsmlToolCallsEnd).size();
  const std::string block = pending_.substr(0, block_end), rest = pending_.substr(block_end);
  pending_.clear();
  state_ = State::After;
  if (auto calls = parse_dsml_tool_calls(block); calls && !calls->empty()) {
    d.calls = std::move(*calls);
    found_calls_ = true;
  } else {
    d.text += dropped_ + kOpenTag + block;
  }
  d.text += rest;
  return d;
}

ToolCallDelta ToolCallStream::finish() {
  ToolCallDelta d;
  if (state_ == State::Block) d.text = dropped_ + kOpenTag + pending_;
  else d.text = pending_;
  pending_.clear();
  state_ = State::After;
  return d;
}

}  // namespace fp4kit::serve
