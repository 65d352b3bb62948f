#pragma once
// A chat request rendered through the Jinja chat template a model ships (DeepSeek V3 / R1 / V3.1
// and other transformers-style templates), with the variables vLLM and transformers'
// apply_chat_template give it:
//   messages               the request's messages as sent (every field kept: tool_calls with their
//                          arguments as the JSON text OpenAI clients send, reasoning_content,
//                          prefix ...), "developer" read as "system", content given as text parts
//                          joined into one string, content left out or null kept null;
//   tools                  the request's tools (OpenAI's {"type": "function", "function": {...}}
//                          objects), none without tools or with tool_choice "none";
//   add_generation_prompt  true;
//   bos_token, eos_token   the model's (tokenizer_config.json);
//   chat_template_kwargs   every key the client sent, and `thinking` and `enable_thinking` set to
//                          the request's thinking mode (on unless the client turned it off), the
//                          names V3.1's and other templates read.
// A template that calls raise_exception, or that fails on this request, gives a 400 with the
// template's message.
#include <string>

#include <nlohmann/json.hpp>

#include "serve/jinja_template.h"
#include "serve/openai_request.h"

namespace fp4kit::serve {

struct TemplateSpecialTokens {
  std::string bos, eos;
};

JinjaData jinja_chat_context(const nlohmann::ordered_json& body, const ChatRequest& request, const TemplateSpecialTokens& tokens);

// The prompt text (special tokens spelled out, as the template writes them).
std::string render_jinja_chat(const JinjaTemplate& chat_template, const nlohmann::ordered_json& body,
                              const ChatRequest& request, const TemplateSpecialTokens& tokens);

}  // namespace fp4kit::serve
