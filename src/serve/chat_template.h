#pragma once
// DeepSeek V4's chat prompt, by the rules of DeepSeek's reference encoder (encoding_dsv4.py in the
// model repositories) for conversations of system, user and assistant messages without tools:
//   - the prompt starts with BOS <｜begin▁of▁sentence｜>;
//   - a system message is its content, with no marker;
//   - consecutive user messages merge into one turn, their contents joined by a blank line;
//   - a user turn is <｜User｜> + content; when an assistant turn follows it (or it is the last
//     message), <｜Assistant｜> comes next, then <think> in thinking mode for the last user turn,
//     else </think> (chat mode, and every earlier turn in thinking mode);
//   - an assistant turn is content + EOS <｜end▁of▁sentence｜>; in thinking mode, a turn after the
//     last user turn keeps its reasoning as reasoning + </think> before the content, and turns
//     before it lose their reasoning (the encoder's default drop_thinking).
// The generated text of a thinking-mode reply is the reasoning, </think>, then the answer.
#include <string>
#include <vector>

#include "serve/openai_request.h"

namespace fp4kit::serve {

inline constexpr const char* kBosToken = "<\uff5cbegin\u2581of\u2581sentence\uff5c>";
inline constexpr const char* kEosToken = "<\uff5cend\u2581of\u2581sentence\uff5c>";
inline constexpr const char* kUserToken = "<\uff5cUser\uff5c>";
inline constexpr const char* kAssistantToken = "<\uff5cAssistant\uff5c>";
inline constexpr const char* kThinkStart = "<think>";
inline constexpr const char* kThinkEnd = "</think>";

// The prompt text (special tokens spelled out; encode it without adding special tokens).
std::string render_deepseek_v4_chat(const std::vector<ChatMessage>& messages, bool thinking);

}  // namespace fp4kit::serve
