#pragma once
// JSON text exactly as Python's json.dumps(value, ensure_ascii=False) writes it with its default
// separators, which DeepSeek's chat encoders use for tool schemas and tool-call arguments (the
// prompt must be byte-identical to theirs):
//   - ", " between items and ": " after keys, no newlines; keys in the order they came;
//   - strings: only ", \, and control characters below 0x20 escaped (\n \r \t \b \f by name, the
//     others as \u00xx); everything else, non-ASCII included, written as is;
//   - integers in decimal; floats as Python's repr(): the shortest text that reads back the same,
//     in positional notation when the exponent is in [-4, 16) (with ".0" when integral), else as
//     d.ddde+XX; non-finite values as NaN, Infinity, -Infinity.
#include <string>

#include <nlohmann/json.hpp>

namespace fp4kit::serve {

std::string python_json_dumps(const nlohmann::ordered_json& value);

// json.dumps's other layout arguments, as chat templates pass them through their tojson filter.
struct PythonJsonLayout {
  bool indented = false;             // indent=None: one line
  std::string indent;                // indent=N: N spaces; a string: that string
  std::string item_separator = ", "; // json.dumps makes it "," when indented and none is given
  std::string key_separator = ": ";
  bool sort_keys = false;
};
std::string python_json_dumps(const nlohmann::ordered_json& value, const PythonJsonLayout& layout);

// Python's repr() of a float: the shortest text that reads back the same ("nan", "inf", "-inf"
// for the non-finite values).
std::string python_float_repr(double x);
// A string as a JSON string literal, with Python's escaping.
std::string python_json_string(const std::string& s);

}  // namespace fp4kit::serve
