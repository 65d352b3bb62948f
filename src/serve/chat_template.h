#pragma once
// DeepSeek V4's chat prompt, by the rules of DeepSeek's reference encoder (encode_messages of
// encoding/encoding_dsv4.py in the DeepSeek-V4 model repositories; vLLM carries it as
// vllm/tokenizers/deepseek_v4_encoding.py):
//   - the prompt starts with BOS <｜begin▁of▁sentence｜>;
//   - a system message is its content, with no marker; with tools, the first message carries them
//     (DeepSeek's own tests set messages[0]["tools"]): a leading system message gets a blank line
//     and the "## Tools" section (dsml.h) after its content, else an empty system message holding
//     only them is put first (as vLLM's DeepSeek V4 tokenizer does);
//   - tool messages are no turn of their own: each result becomes <tool_result>content</tool_result>
//     inside a user turn (a new one after an assistant turn), ordered as the calls of the assistant
//     turn before them; consecutive user messages and results join one turn, separated by a blank
//     line;
//   - a user turn is <｜User｜> + content; when an assistant turn follows it (or it is the last
//     message), <｜Assistant｜> comes next, then <think> in thinking mode for the last user turn,
//     else </think> (chat mode, and every earlier turn in thinking mode);
//   - an assistant turn is content, then its calls ("\n\n" + the call block, dsml.h), then EOS
//     <｜end▁of▁sentence｜>; in thinking mode, a turn after the last user turn keeps its reasoning as
//     reasoning + </think> before the content, and turns before it lose their reasoning (the
//     encoder's default drop_thinking);
//   - with tools, nothing is dropped (the encoder turns drop_thinking off when any message has
//     tools): in thinking mode every assistant turn keeps reasoning + </think> and every user turn
//     is followed by <｜Assistant｜><think>.
// The generated text of a thinking-mode reply is the reasoning, </think>, then the answer.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "serve/openai_request.h"

namespace fp4kit::serve {

inline constexpr const char* kBosToken = "<\uff5cbegin\u2581of\u2581sentence\uff5c>";
inline constexpr const char* kEosToken = "<\uff5cend\u2581of\u2581sentence\uff5c>";
inline constexpr const char* kUserToken = "<\uff5cUser\uff5c>";
inline constexpr const char* kAssistantToken = "<\uff5cAssistant\uff5c>";
inline constexpr const char* kThinkStart = "<think>";
inline constexpr const char* kThinkEnd = "</think>";

// The prompt text (special tokens spelled out; encode it without adding special tokens). `tools`:
// the function schemas the model may call. ApiError 400 for a tool call whose arguments are JSON
// but not an object.
std::string render_deepseek_v4_chat(const std::vector<ChatMessage>& messages, bool thinking,
                                    const std::vector<nlohmann::ordered_json>& tools = {});

}  // namespace fp4kit::serve
