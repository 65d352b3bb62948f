// Fuzz target: what a chat client controls. The input is a /v1/chat/completions body: it is parsed
// (messages, tools, tool calls, tool results) and rendered into a DeepSeek V4 prompt; refusing it
// is an ApiError. The same bytes are also read as model output by the tool-call reader, whole and in
// one-byte pieces: both must give the same text and calls, a reply without calls must come back
// unchanged, and every call's arguments must be valid JSON. Any other exception, a crash, a hang
// or a sanitizer report is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "serve/api_error.h"
#include "serve/chat_template.h"
#include "serve/openai_request.h"
#include "serve/tool_call_stream.h"

namespace {

void finding(const char* what) {
  std::fprintf(stderr, "FINDING: %s\n", what);
  std::abort();
}

struct Read {
  std::string text;
  std::vector<fp4kit::serve::ParsedToolCall> calls;
};

Read read_calls(std::string_view input, size_t piece) {
  fp4kit::serve::ToolCallStream stream;
  Read r;
  const auto take = [&](const fp4kit::serve::ToolCallDelta& d) {
    r.text += d.text;
    r.calls.insert(r.calls.end(), d.calls.begin(), d.calls.end());
  };
  for (size_t at = 0; at < input.size(); at += piece) take(stream.push(std::string(input.substr(at, piece))));
  take(stream.finish());
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  try {
    const fp4kit::serve::ChatRequest r = fp4kit::serve::parse_chat_request(fp4kit::serve::parse_ordered_json_body(std::string(input)));
    const std::string prompt = fp4kit::serve::render_deepseek_v4_chat(r.messages, r.thinking, r.tools);
    if (prompt.rfind(fp4kit::serve::kBosToken, 0) != 0) finding("a prompt without BOS");
  } catch (const fp4kit::serve::ApiError&) {
  }

  const Read whole = read_calls(input, input.empty() ? 1 : input.size()), bytes = read_calls(input, 1);
  if (whole.text != bytes.text || whole.calls.size() != bytes.calls.size()) finding("pieces read differently from the whole");
  for (size_t i = 0; i < whole.calls.size(); ++i) {
    if (whole.calls[i].name != bytes.calls[i].name || whole.calls[i].arguments != bytes.calls[i].arguments)
      finding("a call read differently in pieces");
    if (!nlohmann::json::accept(whole.calls[i].arguments)) finding("call arguments that are not JSON");
  }
  if (whole.calls.empty() && whole.text != input) finding("a reply without calls did not come back unchanged");
  return 0;
}
