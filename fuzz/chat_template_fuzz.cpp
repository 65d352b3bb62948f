// Fuzz target: what a model directory controls in its chat template. The input is a Jinja template
// (the text a checkpoint ships as chat_template.jinja): it is read by fp4kit's engine, where
// refusing it is a TemplateError; an accepted one is rendered with a chat conversation (messages
// with tool calls and results, tools, the special tokens, the thinking flag) under small bounds,
// where a refusal (TemplateRaised) or a failure is a TemplateError too. Any other exception, a
// crash, a hang, a sanitizer report or output beyond the bound is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "serve/jinja_error.h"
#include "serve/jinja_template.h"

namespace {

void finding(const char* what) {
  std::fprintf(stderr, "FINDING: %s\n", what);
  std::abort();
}

const fp4kit::serve::JinjaData& conversation() {
  static const fp4kit::serve::JinjaData context = fp4kit::serve::JinjaData::parse(R"({
    "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": "Weather in Paris? 你好"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "a", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
      {"role": "tool", "tool_call_id": "a", "content": "21 C"},
      {"role": "assistant", "content": "reasoning</think>It is 21 C.", "reasoning_content": "r"},
      {"role": "user", "content": "Thanks"}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather.",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
    "add_generation_prompt": true, "thinking": true, "enable_thinking": true,
    "bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"})");
  return context;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  fp4kit::serve::JinjaLimits limits;
  limits.max_output_bytes = 1 << 16;
  limits.max_steps = 200000;
  try {
    const auto t = fp4kit::serve::JinjaTemplate::parse(text, "fuzz.jinja");
    const std::string out = t.render(conversation(), limits);
    if (out.size() > limits.max_output_bytes) finding("output beyond the bound");
  } catch (const fp4kit::serve::TemplateError& e) {
    if (e.line() < 1) finding("an error without a line");
  }
  return 0;
}
