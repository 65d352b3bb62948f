#pragma once
// The bodies of POST /v1/completions and /v1/chat/completions as typed structs. Parsing checks every
// field it knows (type and range) and throws ApiError 400 naming the field; fields it does not know
// are ignored, as OpenAI-compatible servers do. Not supported and refused: n != 1, best_of != 1,
// echo, logit_bias, presence/frequency penalties other than 0, suffix, tool_choice "required" or
// naming a function (they need constrained decoding).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "serve/sampling.h"

namespace fp4kit::serve {

// What both endpoints share: the model name, sampling and stopping.
struct GenerationRequest {
  std::string model;                  // "" when the client sent none
  bool stream = false;
  std::optional<int64_t> max_tokens;  // absent: up to the context size
  SamplingParams sampling;            // seed drawn at random when the client sent none
  std::vector<std::string> stop;
  bool logprobs = false;              // report the chosen tokens' logprobs
  bool ignore_eos = false;
};

struct CompletionRequest {
  GenerationRequest generation;
  std::string prompt;                 // text, or
  std::vector<int32_t> prompt_ids;    // token ids when the client sent an array of integers
  bool prompt_is_ids = false;
};

// A function call of an earlier assistant turn, as OpenAI sends it.
struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;              // JSON text (an object), as the model wrote it
};

struct ChatMessage {
  std::string role;                   // system, user, assistant or tool
  std::string content;                // tool: text parts joined by a blank line
  std::string reasoning_content;      // an earlier assistant turn's thinking ("reasoning" also read)
  std::vector<ToolCall> tool_calls;   // assistant
  std::string tool_call_id;           // tool
};

enum class ToolChoice { Auto, None };

struct ChatRequest {
  GenerationRequest generation;
  std::vector<ChatMessage> messages;
  bool thinking = true;               // chat_template_kwargs {"thinking": false} or {"enable_thinking": false}
  // The "function" objects of `tools`, keys in the order the client sent them (they are written
  // into the prompt as JSON text). Empty when tool_choice is "none".
  std::vector<nlohmann::ordered_json> tools;
  ToolChoice tool_choice = ToolChoice::Auto;
};

// `body`: the raw request body. Malformed JSON is a 400 naming the line and column.
nlohmann::json parse_json_body(const std::string& body);
CompletionRequest parse_completion_request(const nlohmann::json& body);
// The chat body as parsed with its key order kept (parse_ordered_json_body); the plain-json
// overload is for callers whose tool schemas' key order does not matter.
nlohmann::ordered_json parse_ordered_json_body(const std::string& body);
ChatRequest parse_chat_request(const nlohmann::ordered_json& body);
ChatRequest parse_chat_request(const nlohmann::json& body);

}  // namespace fp4kit::serve
