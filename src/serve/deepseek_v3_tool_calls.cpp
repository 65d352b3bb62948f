#include "serve/deepseek_v3_tool_calls.h"

#include <nlohmann/json.hpp>

namespace fp4kit::serve {

namespace {

constexpr std::string_view kCallBegin = "<\uff5ctool\u2581call\u2581begin\uff5c>";
constexpr std::string_view kCallEnd = "<\uff5ctool\u2581call\u2581end\uff5c>";
constexpr std::string_view kSep = "<\uff5ctool\u2581sep\uff5c>";

bool is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_json_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_json_space(s.back())) s.remove_suffix(1);
  return s;
}

// A JSON object's text, or nullopt.
std::optional<std::string> object_text(std::string_view text) {
  const std::string_view t = trim(text);
  const auto parsed = nlohmann::json::parse(t.begin(), t.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) return std::nullopt;
  return std::string(t);
}

std::optional<ParsedToolCall> parse_call(std::string_view call) {
  const size_t sep = call.find(kSep);
  if (sep == std::string_view::npos) return std::nullopt;
  const std::string_view head = trim(call.substr(0, sep)), rest = call.substr(sep + kSep.size());
  const size_t fence = rest.find("\n```json\n");
  if (head == "function" && fence != std::string_view::npos) {  // V3 / R1: the name, then the arguments fenced
    std::string_view args = trim(rest.substr(fence + 9));
    if (args.size() < 3 || args.substr(args.size() - 3) != "```") return std::nullopt;
    args.remove_suffix(3);
    const std::string_view name = trim(rest.substr(0, fence));
    auto text = object_text(args);
    if (name.empty() || !text) return std::nullopt;
    return ParsedToolCall{std::string(name), std::move(*text)};
  }
  auto text = object_text(rest);  // V3.1: the name before the separator
  if (head.empty() || !text) return std::nullopt;
  return ParsedToolCall{std::string(head), std::move(*text)};
}

}  // namespace

std::optional<std::vector<ParsedToolCall>> parse_deepseek_v3_tool_calls(std::string_view block) {
  const std::string_view end = kToolCallsEnd;
  if (block.size() < end.size() || block.substr(block.size() - end.size()) != end) return std::nullopt;
  std::string_view rest = block.substr(0, block.size() - end.size());
  std::vector<ParsedToolCall> calls;
  for (;;) {
    rest = trim(rest);
    if (rest.empty()) break;
    if (rest.substr(0, kCallBegin.size()) != kCallBegin) return std::nullopt;
    rest.remove_prefix(kCallBegin.size());
    const size_t close = rest.find(kCallEnd);
    if (close == std::string_view::npos) return std::nullopt;
    auto call = parse_call(rest.substr(0, close));
    if (!call) return std::nullopt;
    calls.push_back(std::move(*call));
    rest.remove_prefix(close + kCallEnd.size());
  }
  if (calls.empty()) return std::nullopt;
  return calls;
}

}  // namespace fp4kit::serve
