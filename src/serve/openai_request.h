#pragma once
// The bodies of POST /v1/completions and /v1/chat/completions as typed structs. Parsing checks every
// field it knows (type and range) and throws ApiError 400 naming the field; fields it does not know
// are ignored, as OpenAI-compatible servers do. Not supported and refused: n != 1, best_of != 1,
// echo, tools, logit_bias, presence/frequency penalties other than 0, suffix.
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

struct ChatMessage {
  std::string role;                   // system, user or assistant
  std::string content;
  std::string reasoning_content;      // an earlier assistant turn's thinking
};

struct ChatRequest {
  GenerationRequest generation;
  std::vector<ChatMessage> messages;
  bool thinking = true;               // chat_template_kwargs {"thinking": false} or {"enable_thinking": false}
};

// `body`: the raw request body. Malformed JSON is a 400 naming the line and column.
nlohmann::json parse_json_body(const std::string& body);
CompletionRequest parse_completion_request(const nlohmann::json& body);
ChatRequest parse_chat_request(const nlohmann::json& body);

}  // namespace fp4kit::serve
