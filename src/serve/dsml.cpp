#include "serve/dsml.h"

#include <stdexcept>

#include "serve/python_json.h"

namespace fp4kit::serve {

namespace {

const std::string kDsml = "\uff5cDSML\uff5c";

// The encoder's TOOLS_TEMPLATE with its tokens filled in.
std::string tools_template(const std::string& schemas) {
  const std::string d = kDsml;
  return "## Tools\n\nYou have access to a set of tools to help answer the user's question. You can invoke tools by "
         "writing a \"<" + d + "tool_calls>\" block like the following:\n\n"
         "<" + d + "tool_calls>\n<" + d + "invoke name=\"$TOOL_NAME\">\n<" + d +
         "parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</" + d + "parameter>\n...\n</" + d +
         "invoke>\n<" + d + "invoke name=\"$TOOL_NAME2\">\n...\n</" + d + "invoke>\n</" + d + "tool_calls>\n\n"
         "String parameters should be specified as is and set `string=\"true\"`. For all other types (numbers, booleans, "
         "arrays, objects), pass the value in JSON format and set `string=\"false\"`.\n\n"
         "If thinking_mode is enabled (triggered by <think>), you MUST output your complete reasoning inside "
         "<think>...</think> BEFORE any tool calls or final response.\n\n"
         "Otherwise, output directly after </think> with tool calls or final response.\n\n"
         "### Available Tool Schemas\n\n" + schemas + "\n\n"
         "You MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls.\n";
}

// The encoder's _read_until_stop: the text from `at` to the earliest of `stops` (all of it when
// none occurs); `at` moves past the stop, `which` is its index or -1.
std::string_view read_until(std::string_view text, size_t& at, std::initializer_list<std::string_view> stops, int& which) {
  size_t best = std::string_view::npos;
  which = -1;
  int i = 0;
  size_t best_len = 0;
  for (std::string_view s : stops) {
    const size_t pos = text.find(s, at);
    if (pos != std::string_view::npos && (best == std::string_view::npos || pos < best)) {
      best = pos;
      which = i;
      best_len = s.size();
    }
    ++i;
  }
  const size_t end = best == std::string_view::npos ? text.size() : best;
  const std::string_view out = text.substr(at, end - at);
  at = best == std::string_view::npos ? text.size() : best + best_len;
  return out;
}

bool ends_with(std::string_view s, std::string_view end) {
  return s.size() >= end.size() && s.substr(s.size() - end.size()) == end;
}

// The text before `end` at the end of `s`, where Python's `$` also matches before a final "\n".
std::optional<std::string_view> before_end(std::string_view s, std::string_view end) {
  if (ends_with(s, end)) return s.substr(0, s.size() - end.size());
  if (ends_with(s, std::string(end) + "\n")) return s.substr(0, s.size() - end.size() - 1);
  return std::nullopt;
}

// The encoder's r'^\s*name="(.*?)">\n$' (DOTALL), without a backtracking regex engine (a long
// value must not exhaust the stack).
std::optional<std::string> invoke_name(std::string_view head) {
  size_t i = 0;
  while (i < head.size() && (head[i] == ' ' || head[i] == '\t' || head[i] == '\n' || head[i] == '\r' || head[i] == '\f' || head[i] == '\v')) ++i;
  head.remove_prefix(i);
  if (head.substr(0, 6) != "name=\"") return std::nullopt;
  const auto name = before_end(head.substr(6), "\">\n");
  if (!name) return std::nullopt;
  return std::string(*name);
}

// Invalid UTF-8 (a model can write any bytes) replaced by U+FFFD, as JSON text requires.
std::string valid_utf8(const std::string& s) {
  const std::string quoted = nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return nlohmann::json::parse(quoted).get<std::string>();
}

struct Param {
  std::string name, is_string, value;
};

// The encoder's r'^ name="(.*?)" string="(true|false)">(.*?)<$' (DOTALL): the name ends at the
// first '" string="true|false">', the value at the final '<'.
std::optional<Param> parameter(std::string_view text) {
  if (text.substr(0, 7) != " name=\"") return std::nullopt;
  text.remove_prefix(7);
  const auto value_text = [&](size_t from) { return before_end(text.substr(from), "<"); };
  for (size_t i = 0; i < text.size(); ++i) {
    for (const char* flag : {"true", "false"}) {
      const std::string tag = std::string("\" string=\"") + flag + "\">";
      if (text.compare(i, tag.size(), tag) != 0) continue;
      if (const auto v = value_text(i + tag.size())) return Param{std::string(text.substr(0, i)), flag, std::string(*v)};
    }
  }
  return std::nullopt;
}

}  // namespace

std::string render_dsml_tools(const std::vector<nlohmann::ordered_json>& functions) {
  std::string schemas;
  for (size_t i = 0; i < functions.size(); ++i) {
    if (i) schemas += '\n';
    schemas += python_json_dumps(functions[i]);  // appended: GCC 12 -O3 warns falsely (-Wrestrict) on "x" + string
  }
  return tools_template(schemas);
}

std::string render_dsml_invoke(const std::string& name, const std::string& arguments) {
  nlohmann::ordered_json args = nlohmann::ordered_json::parse(arguments, nullptr, /*allow_exceptions=*/false);
  if (args.is_discarded()) args = nlohmann::ordered_json{{"arguments", arguments}};
  if (!args.is_object()) throw std::invalid_argument("tool call arguments are not a JSON object: " + arguments);
  std::string params;
  bool first = true;
  for (const auto& [key, value] : args.items()) {
    if (!first) params += "\n";
    first = false;
    const bool is_string = value.is_string();
    params += "<" + kDsml + "parameter name=\"" + key + "\" string=\"" + (is_string ? "true" : "false") + "\">" +
              (is_string ? value.get<std::string>() : python_json_dumps(value)) + "</" + kDsml + "parameter>";
  }
  return "<" + kDsml + "invoke name=\"" + name + "\">\n" + params + "\n</" + kDsml + "invoke>";
}

std::optional<std::vector<ParsedToolCall>> parse_dsml_tool_calls(std::string_view text) {
  const std::string invoke_open = "<" + kDsml + "invoke", invoke_close = "</" + kDsml + "invoke",
                    param_open = "<" + kDsml + "parameter", param_close = "/" + kDsml + "parameter",
                    block_close = kDsmlToolCallsEnd;
  std::vector<ParsedToolCall> calls;
  size_t at = 0;
  int which = -1;
  bool closed = false;
  while (at < text.size()) {
    if (read_until(text, at, {invoke_open, block_close}, which) != ">\n") return std::nullopt;
    if (which == 1) {
      closed = true;
      break;
    }
    if (which != 0) return std::nullopt;
    const auto name = invoke_name(read_until(text, at, {param_open, invoke_close}, which));
    if (!name) return std::nullopt;
    ParsedToolCall call{*name, "{"};
    std::vector<std::string> seen;
    while (which == 0) {
      int ignored = -1;
      const auto p = parameter(read_until(text, at, {param_close}, ignored));
      if (!p) return std::nullopt;
      for (const std::string& k : seen)
        if (k == p->name) return std::nullopt;  // a parameter twice
      seen.push_back(p->name);
      // string="false": the value as written where it is JSON on its own (Python's json.loads). A NUL
      // byte ends nlohmann's input early, so a value with one (JSON, then NUL and more) is a string.
      const bool raw = p->is_string == "false" && p->value.find('\0') == std::string::npos &&
                       !nlohmann::json::parse(p->value, nullptr, false).is_discarded();
      call.arguments += (seen.size() > 1 ? ", " : "") + python_json_string(p->name) + ": " + (raw ? p->value : python_json_string(p->value));
      if (read_until(text, at, {param_open, invoke_close}, which) != ">\n") return std::nullopt;
    }
    if (which != 1) return std::nullopt;
    call.arguments = valid_utf8(call.arguments + "}");
    call.name = valid_utf8(call.name);
    calls.push_back(std::move(call));
  }
  if (!closed || at != text.size()) return std::nullopt;
  return calls;
}

}  // namespace fp4kit::serve
