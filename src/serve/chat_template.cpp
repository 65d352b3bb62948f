#include "serve/chat_template.h"

#include <algorithm>
#include <map>
#include <stdexcept>

#include "serve/api_error.h"
#include "serve/dsml.h"

namespace fp4kit::serve {

namespace {

// A user turn is a list of blocks, as the encoder's merge_tool_messages makes them.
struct Block {
  bool tool_result = false;
  std::string text, tool_call_id;
};

struct Turn {
  std::string role;  // system, user or assistant
  std::string content, reasoning;
  std::vector<ToolCall> tool_calls;
  std::vector<Block> blocks;  // user
  bool tools = false;         // the tools section follows this system message
};

// merge_tool_messages: tool results and user messages into user turns.
std::vector<Turn> merge(const std::vector<ChatMessage>& input, bool with_tools) {
  std::vector<Turn> turns;
  if (with_tools && (input.empty() || input.front().role != "system")) turns.push_back({"system", "", "", {}, {}, true});
  for (const ChatMessage& m : input) {
    if (m.role == "tool" || m.role == "user") {
      const Block b = m.role == "tool" ? Block{true, m.content, m.tool_call_id} : Block{false, m.content, ""};
      if (!turns.empty() && turns.back().role == "user") turns.back().blocks.push_back(b);
      else turns.push_back({"user", "", "", {}, {b}, false});
    } else {
      Turn t{m.role, m.content, m.reasoning_content, m.tool_calls, {}, false};
      if (with_tools && turns.empty()) t.tools = true;  // the leading system message
      turns.push_back(std::move(t));
    }
  }
  return turns;
}

// sort_tool_results_by_call_order: within a user turn, the results in the order of the calls of
// the last assistant turn with calls (a result whose id is unknown sorts as the first call); the
// text blocks keep their places.
void sort_tool_results(std::vector<Turn>& turns) {
  std::map<std::string, size_t> order;
  for (Turn& t : turns) {
    if (t.role == "assistant" && !t.tool_calls.empty()) {
      order.clear();
      for (size_t i = 0; i < t.tool_calls.size(); ++i)
        if (!t.tool_calls[i].id.empty()) order[t.tool_calls[i].id] = i;
    } else if (t.role == "user") {
      std::vector<Block> results;
      for (const Block& b : t.blocks)
        if (b.tool_result) results.push_back(b);
      if (results.size() < 2 || order.empty()) continue;
      const auto key = [&](const Block& b) {
        const auto it = order.find(b.tool_call_id);
        return it == order.end() ? size_t{0} : it->second;
      };
      std::stable_sort(results.begin(), results.end(), [&](const Block& a, const Block& b) { return key(a) < key(b); });
      size_t next = 0;
      for (Block& b : t.blocks)
        if (b.tool_result) b = results[next++];
    }
  }
}

std::string tool_calls_text(const std::vector<ToolCall>& calls) {
  if (calls.empty()) return "";
  std::string invokes;
  for (size_t i = 0; i < calls.size(); ++i) {
    try {
      if (i) invokes += '\n';
      invokes += render_dsml_invoke(calls[i].name, calls[i].arguments);
    } catch (const std::invalid_argument& e) {
      throw invalid_request("messages", std::string("'messages': ") + e.what());
    }
  }
  return std::string("\n\n") + kDsmlToolCallsStart + "\n" + invokes + "\n" + kDsmlToolCallsEnd;
}

}  // namespace

std::string render_deepseek_v4_chat(const std::vector<ChatMessage>& input, bool thinking,
                                    const std::vector<nlohmann::ordered_json>& tools) {
  std::vector<Turn> turns = merge(input, !tools.empty());
  sort_tool_results(turns);
  const bool drop_thinking = tools.empty();
  ptrdiff_t last_user = -1;
  for (size_t i = 0; i < turns.size(); ++i)
    if (turns[i].role == "user") last_user = static_cast<ptrdiff_t>(i);

  std::string prompt = kBosToken;
  for (size_t i = 0; i < turns.size(); ++i) {
    const Turn& t = turns[i];
    const auto index = static_cast<ptrdiff_t>(i);
    if (t.role == "system") {
      prompt += t.content;
      if (t.tools) prompt += "\n\n" + render_dsml_tools(tools);
    } else if (t.role == "user") {
      prompt += kUserToken;
      for (size_t b = 0; b < t.blocks.size(); ++b) {
        if (b) prompt += "\n\n";
        prompt += t.blocks[b].tool_result ? "<tool_result>" + t.blocks[b].text + "</tool_result>" : t.blocks[b].text;
      }
      const bool opens_reply = i + 1 == turns.size() || turns[i + 1].role == "assistant";
      if (opens_reply) {
        prompt += kAssistantToken;
        prompt += thinking && (!drop_thinking || index >= last_user) ? kThinkStart : kThinkEnd;
      }
    } else {  // assistant
      if (thinking && (!drop_thinking || index > last_user)) prompt += t.reasoning + kThinkEnd;
      prompt += t.content + tool_calls_text(t.tool_calls) + kEosToken;
    }
  }
  return prompt;
}

}  // namespace fp4kit::serve
