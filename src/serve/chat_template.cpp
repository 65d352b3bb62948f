#include "serve/chat_template.h"

namespace fp4kit::serve {

std::string render_deepseek_v4_chat(const std::vector<ChatMessage>& input, bool thinking) {
  // Consecutive user messages are one turn.
  std::vector<ChatMessage> messages;
  for (const ChatMessage& m : input) {
    if (m.role == "user" && !messages.empty() && messages.back().role == "user")
      messages.back().content += "\n\n" + m.content;
    else
      messages.push_back(m);
  }
  ptrdiff_t last_user = -1;
  for (size_t i = 0; i < messages.size(); ++i)
    if (messages[i].role == "user") last_user = static_cast<ptrdiff_t>(i);

  std::string prompt = kBosToken;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const auto index = static_cast<ptrdiff_t>(i);
    if (m.role == "system") {
      prompt += m.content;
    } else if (m.role == "user") {
      prompt += kUserToken + m.content;
      const bool opens_reply = i + 1 == messages.size() || messages[i + 1].role == "assistant";
      if (opens_reply) {
        prompt += kAssistantToken;
        prompt += thinking && index >= last_user ? kThinkStart : kThinkEnd;
      }
    } else {  // assistant
      if (thinking && index > last_user) prompt += m.reasoning_content + kThinkEnd;
      prompt += m.content + kEosToken;
    }
  }
  return prompt;
}

}  // namespace fp4kit::serve
