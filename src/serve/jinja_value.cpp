#include "serve/jinja_value.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "serve/python_json.h"

namespace fp4kit::serve {

namespace {

using ValueType = JinjaData::value_t;

bool is_number(const JinjaData& v) { return v.is_number() || v.is_boolean(); }
bool is_int(const JinjaData& v) { return v.is_number_integer() || v.is_boolean(); }
int64_t as_int(const JinjaData& v) {
  if (v.is_boolean()) return v.get<bool>() ? 1 : 0;
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) throw JinjaTypeError("an integer beyond 64 bits");
    return static_cast<int64_t>(u);
  }
  return v.get<int64_t>();
}
double as_double(const JinjaData& v) { return v.is_number_float() ? v.get<double>() : static_cast<double>(as_int(v)); }

std::string python_type(const JinjaData& v) {
  switch (v.type()) {
    case ValueType::null: return "NoneType";
    case ValueType::boolean: return "bool";
    case ValueType::number_integer:
    case ValueType::number_unsigned: return "int";
    case ValueType::number_float: return "float";
    case ValueType::string: return "str";
    case ValueType::array: return "list";
    case ValueType::object: return "dict";
    default: return "object";
  }
}

std::string repr_string(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos, has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (ch == quote || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (ch == '\n') {
      out += "\\n";
    } else if (ch == '\r') {
      out += "\\r";
    } else if (ch == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\x%02x", c);
      out += esc;
    } else {
      out += ch;
    }
  }
  return out + quote;
}

int64_t checked(double r) {
  if (!(r >= -9.2e18 && r <= 9.2e18)) throw JinjaTypeError("an integer result beyond 64 bits");
  return static_cast<int64_t>(r);
}

int64_t floor_div(int64_t a, int64_t b) {
  if (b == 0) throw JinjaTypeError("integer division or modulo by zero");
  if (a == INT64_MIN && b == -1) throw JinjaTypeError("an integer result beyond 64 bits");
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

JinjaData repeat(const JinjaData& seq, int64_t n, size_t max_size) {
  if (n <= 0) return seq.is_string() ? JinjaData("") : JinjaData::array();
  const size_t unit = seq.is_string() ? seq.get_ref<const std::string&>().size() : seq.size();
  if (unit != 0 && static_cast<uint64_t>(n) > max_size / unit) throw JinjaTypeError("a repetition beyond the output limit");
  if (seq.is_string()) {
    std::string out;
    for (int64_t i = 0; i < n; ++i) out += seq.get_ref<const std::string&>();
    return out;
  }
  JinjaData out = JinjaData::array();
  for (int64_t i = 0; i < n; ++i)
    for (const auto& item : seq) out.push_back(item);
  return out;
}

}  // namespace

const JinjaData& JinjaValue::need_data() const {
  if (kind == Kind::Undefined) throw JinjaTypeError("'" + name + "' is undefined");
  if (kind == Kind::Namespace) throw JinjaTypeError("a namespace() cannot be used as a value here");
  if (kind == Kind::Function) throw JinjaTypeError("the function " + name + " cannot be used as a value");
  return data;
}

bool jinja_truthy(const JinjaValue& v) {
  if (v.kind == JinjaValue::Kind::Undefined) return false;
  if (v.kind != JinjaValue::Kind::Data || v.generator) return true;
  const JinjaData& d = v.data;
  switch (d.type()) {
    case ValueType::null: return false;
    case ValueType::boolean: return d.get<bool>();
    case ValueType::number_integer: return d.get<int64_t>() != 0;
    case ValueType::number_unsigned: return d.get<uint64_t>() != 0;
    case ValueType::number_float: return d.get<double>() != 0.0;
    case ValueType::string: return !d.get_ref<const std::string&>().empty();
    case ValueType::array:
    case ValueType::object: return !d.empty();
    default: return true;
  }
}

std::string python_repr(const JinjaData& v) {
  switch (v.type()) {
    case ValueType::null: return "None";
    case ValueType::boolean: return v.get<bool>() ? "True" : "False";
    case ValueType::number_integer: return std::to_string(v.get<int64_t>());
    case ValueType::number_unsigned: return std::to_string(v.get<uint64_t>());
    case ValueType::number_float: return python_float_repr(v.get<double>());
    case ValueType::string: return repr_string(v.get_ref<const std::string&>());
    case ValueType::array: {
      std::string out = "[";
      for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + python_repr(v[i]);
      return out + "]";
    }
    case ValueType::object: {
      std::string out = "{";
      bool first = true;
      for (const auto& [key, item] : v.items()) {
        out += (first ? "" : ", ") + repr_string(key) + ": " + python_repr(item);
        first = false;
      }
      return out + "}";
    }
    default: return "None";
  }
}

std::string jinja_str(const JinjaValue& v) {
  switch (v.kind) {
    case JinjaValue::Kind::Undefined: return "";
    case JinjaValue::Kind::Namespace: return "<Namespace " + python_repr(*v.attributes) + ">";
    case JinjaValue::Kind::Function: return "<function " + v.name + ">";
    case JinjaValue::Kind::Data: break;
  }
  if (v.generator) return "<generator object>";  // Jinja2 prints the object's address
  return v.data.is_string() ? v.data.get<std::string>() : python_repr(v.data);
}

bool python_equal(const JinjaData& a, const JinjaData& b) {
  if (is_number(a) && is_number(b)) {
    if (is_int(a) && is_int(b)) return as_int(a) == as_int(b);
    return as_double(a) == as_double(b);
  }
  if (a.type() != b.type()) return false;
  if (a.is_array()) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (!python_equal(a[i], b[i])) return false;
    return true;
  }
  if (a.is_object()) {
    if (a.size() != b.size()) return false;
    for (const auto& [key, item] : a.items()) {
      const auto it = b.find(key);
      if (it == b.end() || !python_equal(item, *it)) return false;
    }
    return true;
  }
  return a == b;
}

int python_compare(const JinjaData& a, const JinjaData& b) {
  if (is_number(a) && is_number(b)) {
    if (is_int(a) && is_int(b)) return as_int(a) < as_int(b) ? -1 : as_int(a) > as_int(b);
    const double x = as_double(a), y = as_double(b);
    return x < y ? -1 : x > y;  // NaN compares as neither: equal here, as no ordering holds
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.get_ref<const std::string&>().compare(b.get_ref<const std::string&>());  // UTF-8 byte order is code point order
    return c < 0 ? -1 : c > 0;
  }
  if (a.is_array() && b.is_array()) {
    for (size_t i = 0; i < a.size() && i < b.size(); ++i)
      if (!python_equal(a[i], b[i])) return python_compare(a[i], b[i]);
    return a.size() < b.size() ? -1 : a.size() > b.size();
  }
  throw JinjaTypeError("'<' not supported between instances of '" + python_type(a) + "' and '" + python_type(b) + "'");
}

bool python_contains(const JinjaData& container, const JinjaData& item) {
  if (container.is_string()) {
    if (!item.is_string())
      throw JinjaTypeError("'in <string>' requires string as left operand, not " + python_type(item));
    return container.get_ref<const std::string&>().find(item.get_ref<const std::string&>()) != std::string::npos;
  }
  if (container.is_array()) {
    for (const auto& x : container)
      if (python_equal(x, item)) return true;
    return false;
  }
  if (container.is_object()) return item.is_string() && container.contains(item.get<std::string>());
  throw JinjaTypeError("argument of type '" + python_type(container) + "' is not iterable");
}

JinjaData python_binary(const std::string& op, const JinjaData& a, const JinjaData& b, size_t max_size) {
  const auto refuse = [&]() -> JinjaData {
    throw JinjaTypeError("unsupported operand type(s) for " + op + ": '" + python_type(a) + "' and '" + python_type(b) + "'");
  };
  if (is_number(a) && is_number(b)) {
    const bool ints = is_int(a) && is_int(b);
    if (op == "/") {
      if (as_double(b) == 0.0) throw JinjaTypeError("division by zero");
      return as_double(a) / as_double(b);
    }
    if (ints) {
      const int64_t x = as_int(a), y = as_int(b);
      int64_t r = 0;
      const bool overflow = op == "+" ? __builtin_add_overflow(x, y, &r)
                            : op == "-" ? __builtin_sub_overflow(x, y, &r)
                            : op == "*" ? __builtin_mul_overflow(x, y, &r)
                                        : false;
      if (overflow) throw JinjaTypeError("an integer result beyond 64 bits");
      if (op == "+" || op == "-" || op == "*") return r;
      if (op == "//") return floor_div(x, y);
      if (op == "%") return x - floor_div(x, y) * y;
      if (op == "**") {
        if (y < 0) return std::pow(static_cast<double>(x), static_cast<double>(y));
        return checked(std::pow(static_cast<double>(x), static_cast<double>(y)));
      }
      return refuse();
    }
    const double x = as_double(a), y = as_double(b);
    if (op == "+") return x + y;
    if (op == "-") return x - y;
    if (op == "*") return x * y;
    if (op == "//" || op == "%") {
      if (y == 0.0) throw JinjaTypeError("float division or modulo by zero");
      const double q = std::floor(x / y);
      return op == "//" ? q : x - q * y;
    }
    if (op == "**") return std::pow(x, y);
    return refuse();
  }
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      if (a.get_ref<const std::string&>().size() + b.get_ref<const std::string&>().size() > max_size)
        throw JinjaTypeError("a string beyond the output limit");
      return a.get<std::string>() + b.get<std::string>();
    }
    if (a.is_array() && b.is_array()) {
      if (a.size() + b.size() > max_size) throw JinjaTypeError("a list beyond the output limit");
      JinjaData out = a;
      for (const auto& x : b) out.push_back(x);
      return out;
    }
  }
  if (op == "*") {
    if ((a.is_string() || a.is_array()) && is_int(b)) return repeat(a, as_int(b), max_size);
    if (is_int(a) && (b.is_string() || b.is_array())) return repeat(b, as_int(a), max_size);
  }
  if (op == "%" && a.is_string()) throw JinjaTypeError("string formatting with % is not supported");
  return refuse();
}

namespace {

bool deeper_than(const JinjaData& v, int levels) {
  if (!v.is_array() && !v.is_object()) return false;
  if (levels <= 0) return true;
  for (const auto& item : v)
    if (deeper_than(item, levels - 1)) return true;
  return false;
}

}  // namespace

void check_value_depth(const JinjaData& v) {
  if (deeper_than(v, kMaxJinjaValueDepth))
    throw JinjaTypeError("a list or dict nested deeper than " + std::to_string(kMaxJinjaValueDepth) + " levels");
}

std::vector<size_t> utf8_offsets(const std::string& s) {
  std::vector<size_t> out;
  for (size_t i = 0; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) out.push_back(i);
  out.push_back(s.size());
  return out;
}

int64_t python_len(const JinjaData& v) {
  if (v.is_string()) return static_cast<int64_t>(utf8_offsets(v.get_ref<const std::string&>()).size()) - 1;
  if (v.is_array() || v.is_object()) return static_cast<int64_t>(v.size());
  throw JinjaTypeError("object of type '" + python_type(v) + "' has no len()");
}

std::optional<JinjaData> python_index(const JinjaData& v, int64_t index) {
  if (!v.is_string() && !v.is_array()) return std::nullopt;
  const int64_t n = python_len(v);
  if (index < 0) index += n;
  if (index < 0 || index >= n) return std::nullopt;
  if (v.is_array()) return v[static_cast<size_t>(index)];
  const std::string& s = v.get_ref<const std::string&>();
  const std::vector<size_t> at = utf8_offsets(s);
  return JinjaData(s.substr(at[static_cast<size_t>(index)], at[static_cast<size_t>(index) + 1] - at[static_cast<size_t>(index)]));
}

JinjaData python_slice(const JinjaData& v, std::optional<int64_t> start, std::optional<int64_t> stop,
                       std::optional<int64_t> step) {
  if (!v.is_string() && !v.is_array()) throw JinjaTypeError("'" + python_type(v) + "' object is not subscriptable");
  const int64_t n = python_len(v), s = step.value_or(1);
  if (s == 0) throw JinjaTypeError("slice step cannot be zero");
  const auto clamp = [&](std::optional<int64_t> x, int64_t def) {
    if (!x) return def;
    int64_t i = *x < 0 ? *x + n : *x;
    if (s > 0) return std::clamp<int64_t>(i, 0, n);
    return std::clamp<int64_t>(i, -1, n - 1);
  };
  const int64_t b = clamp(start, s > 0 ? 0 : n - 1), e = clamp(stop, s > 0 ? n : -1);
  std::vector<int64_t> picked;
  for (int64_t i = b; s > 0 ? i < e : i > e; i += s) picked.push_back(i);
  if (v.is_array()) {
    JinjaData out = JinjaData::array();
    for (int64_t i : picked) out.push_back(v[static_cast<size_t>(i)]);
    return out;
  }
  const std::string& str = v.get_ref<const std::string&>();
  const std::vector<size_t> at = utf8_offsets(str);
  std::string out;
  for (int64_t i : picked) out += str.substr(at[static_cast<size_t>(i)], at[static_cast<size_t>(i) + 1] - at[static_cast<size_t>(i)]);
  return out;
}

std::vector<JinjaData> python_iterate(const JinjaData& v) {
  std::vector<JinjaData> out;
  if (v.is_array()) {
    for (const auto& x : v) out.push_back(x);
  } else if (v.is_object()) {
    for (const auto& [key, item] : v.items()) out.emplace_back(key);
  } else if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    const std::vector<size_t> at = utf8_offsets(s);
    for (size_t i = 0; i + 1 < at.size(); ++i) out.emplace_back(s.substr(at[i], at[i + 1] - at[i]));
  } else {
    throw JinjaTypeError("'" + python_type(v) + "' object is not iterable");
  }
  return out;
}

}  // namespace fp4kit::serve
