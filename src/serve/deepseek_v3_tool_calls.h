#pragma once
// The tool-call text of DeepSeek V3, R1 and V3.1 models, read back into calls (as vLLM's
// DeepSeekV3ToolParser and DeepSeekV31ToolParser read it). A block is
//   <｜tool▁calls▁begin｜> call ... <｜tool▁calls▁end｜>
// and a call, in V3's and R1's form
//   <｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGUMENTS\n```<｜tool▁call▁end｜>
// or in V3.1's
//   <｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGUMENTS<｜tool▁call▁end｜>
// with whitespace allowed between calls. ARGUMENTS must be a JSON object: its text is kept as the
// model wrote it (trimmed), so that it always parses.
#include <optional>
#include <string_view>
#include <vector>

#include "serve/dsml.h"

namespace fp4kit::serve {

inline constexpr const char* kToolCallsBegin = "<\uff5ctool\u2581calls\u2581begin\uff5c>";
inline constexpr const char* kToolCallsEnd = "<\uff5ctool\u2581calls\u2581end\uff5c>";

// The calls of a block, given the text after <｜tool▁calls▁begin｜> up to and including
// <｜tool▁calls▁end｜>; nullopt when it does not follow the format (the caller keeps the text).
std::optional<std::vector<ParsedToolCall>> parse_deepseek_v3_tool_calls(std::string_view block);

}  // namespace fp4kit::serve
