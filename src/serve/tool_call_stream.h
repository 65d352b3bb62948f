#pragma once
// Finds DeepSeek V4 tool calls (dsml.h) in a reply's answer text as it streams in. Text before a
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

struct ToolCallDelta {
  std::string text;                     // answer text to pass on
  std::vector<ParsedToolCall> calls;    // calls whose block closed with this piece
};

class ToolCallStream {
 public:
  ToolCallDelta push(const std::string& piece);
  ToolCallDelta finish();
  bool found_calls() const { return found_calls_; }

 private:
  enum class State { Text, Block, After };
  State state_ = State::Text;
  std::string pending_;   // Text: held back; Block: the block after "<｜DSML｜tool_calls"
  std::string dropped_;   // the blank line taken off before the block (given back if it is no block)
  bool found_calls_ = false;
};

}  // namespace fp4kit::serve
