#pragma once
// Finds tool calls in a reply's answer text as it streams in: DeepSeek V4's (dsml.h), or, for a
// model served through its V3-style Jinja template, DeepSeek V3 / R1 / V3.1's
// (deepseek_v3_tool_calls.h; no blank line is dropped before those blocks). Text before a
// call block is passed on, except what may still turn out to be the start of one (held back until
// the next piece decides); the blank line the model writes before the block is not answer text (the
// encoder's marker is "\n\n<｜DSML｜tool_calls"). The block itself is held until it closes, then
// read: its calls come out, or, when it does not follow the format, its text is passed on as
// answer text. Text after a closed block is passed on. At the end of generation an unclosed block
// is passed on as text.
#include <string>
#include <vector>

#include "serve/dsml.h"

namespace fp4kit::serve {

enum class ToolCallSyntax { DeepSeekV4, DeepSeekV3 };

struct ToolCallDelta {
  std::string text;                     // answer text to pass on
  std::vector<ParsedToolCall> calls;    // calls whose block closed with this piece
};

class ToolCallStream {
 public:
  explicit ToolCallStream(ToolCallSyntax syntax = ToolCallSyntax::DeepSeekV4);
  ToolCallDelta push(const std::string& piece);
  ToolCallDelta finish();
  bool found_calls() const { return found_calls_; }

 private:
  size_t hold_from(const std::string& s) const;
  enum class State { Text, Block, After };
  ToolCallSyntax syntax_;
  std::string start_, start_with_line_, open_tag_, end_;  // the markers of the syntax
  State state_ = State::Text;
  std::string pending_;   // Text: held back; Block: the block after "<｜DSML｜tool_calls"
  std::string dropped_;   // the blank line taken off before the block (given back if it is no block)
  bool found_calls_ = false;
};

}  // namespace fp4kit::serve
