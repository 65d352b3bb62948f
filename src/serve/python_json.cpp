#include "serve/python_json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace fp4kit::serve {

namespace {

// JSON spells the non-finite values as JavaScript does.
std::string python_float(double x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
  return python_float_repr(x);
}

void break_line(const PythonJsonLayout& layout, int depth, std::string& out) {
  out += '\n';
  for (int i = 0; i < depth; ++i) out += layout.indent;
}

}  // namespace

std::string python_float_repr(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::scientific);
  const std::string sci(buf, res.ptr);  // e.g. "-1.2345e+02"
  const size_t e = sci.find('e');
  const int exponent = std::atoi(sci.c_str() + e + 1);
  std::string mantissa = sci.substr(0, e);
  const bool negative = mantissa[0] == '-';
  if (negative) mantissa.erase(0, 1);
  std::string digits;
  for (char c : mantissa)
    if (c != '.') digits += c;
  std::string out;
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out = "0.";  // appended: GCC 12 -O3 warns falsely (-Wrestrict) on "x" + string
      out.append(static_cast<size_t>(-exponent - 1), '0');
      out += digits;
    } else if (static_cast<size_t>(exponent) + 1 >= digits.size()) {
      out = digits + std::string(static_cast<size_t>(exponent) + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, static_cast<size_t>(exponent) + 1) + "." + digits.substr(static_cast<size_t>(exponent) + 1);
    }
  } else {
    out = digits.substr(0, 1);
    if (digits.size() > 1) {
      out += '.';
      out += digits.substr(1);
    }
    char exp[16];
    std::snprintf(exp, sizeof exp, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += exp;
  }
  return negative ? out.insert(0, 1, '-') : out;
}

namespace {

void dump(const nlohmann::ordered_json& v, const PythonJsonLayout& layout, int depth, std::string& out) {
  using T = nlohmann::ordered_json::value_t;
  switch (v.type()) {
    case T::null: out += "null"; return;
    case T::boolean: out += v.get<bool>() ? "true" : "false"; return;
    case T::number_integer: out += std::to_string(v.get<int64_t>()); return;
    case T::number_unsigned: out += std::to_string(v.get<uint64_t>()); return;
    case T::number_float: out += python_float(v.get<double>()); return;
    case T::string: out += python_json_string(v.get_ref<const std::string&>()); return;
    case T::array: {
      if (v.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      bool first = true;
      for (const auto& item : v) {
        if (!first) out += layout.item_separator;
        first = false;
        if (layout.indented) break_line(layout, depth + 1, out);
        dump(item, layout, depth + 1, out);
      }
      if (layout.indented) break_line(layout, depth, out);
      out += ']';
      return;
    }
    case T::object: {
      if (v.empty()) {
        out += "{}";
        return;
      }
      std::vector<const std::string*> keys;
      for (const auto& [key, item] : v.items()) keys.push_back(&key);
      if (layout.sort_keys) std::stable_sort(keys.begin(), keys.end(), [](auto* a, auto* b) { return *a < *b; });
      out += '{';
      bool first = true;
      for (const std::string* key : keys) {
        if (!first) out += layout.item_separator;
        first = false;
        if (layout.indented) break_line(layout, depth + 1, out);
        out += python_json_string(*key) + layout.key_separator;
        dump(v.at(*key), layout, depth + 1, out);
      }
      if (layout.indented) break_line(layout, depth, out);
      out += '}';
      return;
    }
    default: out += "null"; return;  // binary and discarded values do not come from JSON text
  }
}

}  // namespace

std::string python_json_string(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char esc[8];
          std::snprintf(esc, sizeof esc, "\\u%04x", c);
          out += esc;
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

std::string python_json_dumps(const nlohmann::ordered_json& value) { return python_json_dumps(value, PythonJsonLayout{}); }

std::string python_json_dumps(const nlohmann::ordered_json& value, const PythonJsonLayout& layout) {
  std::string out;
  dump(value, layout, 0, out);
  return out;
}

}  // namespace fp4kit::serve
