#pragma once
// DeepSeek V4's tool-calling text ("DSML"), both ways, as DeepSeek's reference encoder defines it
// (encoding/encoding_dsv4.py of the DeepSeek-V4 model repositories: render_tools,
// encode_arguments_to_dsml, tool_calls_template, parse_tool_calls, decode_dsml_to_arguments; vLLM
// carries the same file as vllm/tokenizers/deepseek_v4_encoding.py, commit 591f7b5e):
//   - the tools section of the system prompt: a fixed explanation of the format, then each
//     function's schema as one line of JSON text (Python's json.dumps, python_json.h);
//   - a call block: "<｜DSML｜tool_calls>\n" + invokes joined by "\n" + "\n</｜DSML｜tool_calls>", an
//     invoke being <｜DSML｜invoke name="NAME">\n + one parameter line per argument + \n</｜DSML｜invoke>;
//     a parameter line is <｜DSML｜parameter name="K" string="true">raw text</｜DSML｜parameter> for a
//     string value, string="false" with the value's JSON text otherwise. In an assistant turn the
//     block follows the content after a blank line;
//   - reading a block back: the arguments become the JSON object {"K": value, ...} in the order
//     written (a string="false" value that is not valid JSON is taken as a string, so that the
//     arguments are always valid JSON; invalid UTF-8 the model wrote becomes U+FFFD).
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace fp4kit::serve {

inline constexpr const char* kDsmlToolCallsStart = "<\uff5cDSML\uff5ctool_calls>";
inline constexpr const char* kDsmlToolCallsEnd = "</\uff5cDSML\uff5ctool_calls>";

struct ParsedToolCall {
  std::string name;
  std::string arguments;  // JSON object text
};

// The "## Tools" section for these function schemas (the "function" objects of OpenAI's `tools`).
std::string render_dsml_tools(const std::vector<nlohmann::ordered_json>& functions);

// One call as an invoke element. `arguments`: JSON object text; text that is not JSON becomes the
// single string parameter "arguments" (the encoder's fallback). Throws std::invalid_argument for
// JSON that is not an object.
std::string render_dsml_invoke(const std::string& name, const std::string& arguments);

// The calls of a block, given the text after "<｜DSML｜tool_calls" up to and including
// "</｜DSML｜tool_calls>"; nullopt when it does not follow the format (the caller keeps the text).
std::optional<std::vector<ParsedToolCall>> parse_dsml_tool_calls(std::string_view block);

}  // namespace fp4kit::serve
