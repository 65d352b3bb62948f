#include "serve/jinja_render.h"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <map>

#include "calib/unicode.h"
#include "serve/jinja_builtins.h"
#include "serve/jinja_error.h"
#include "serve/python_json.h"

namespace fp4kit::serve {

namespace {

using E = JinjaExprKind;
using V = JinjaValue;
using Args = std::vector<V>;
using Kwargs = std::vector<std::pair<std::string, V>>;

constexpr int64_t kMaxRange = 100000;  // Jinja2's sandbox: MAX_RANGE

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string ascii_lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string ascii_upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// Python's str.strip family: whitespace, or the characters (code points) of `chars`.
std::string strip(const std::string& s, const std::optional<std::string>& chars, bool left, bool right) {
  std::vector<std::string> set;
  if (chars) {
    const std::vector<size_t> at = utf8_offsets(*chars);
    for (size_t i = 0; i + 1 < at.size(); ++i) set.push_back(chars->substr(at[i], at[i + 1] - at[i]));
  }
  const std::vector<size_t> at = utf8_offsets(s);
  const auto strippable = [&](size_t i) {
    const std::string c = s.substr(at[i], at[i + 1] - at[i]);
    if (!chars) return c.size() == 1 && is_ascii_space(c[0]);
    return std::find(set.begin(), set.end(), c) != set.end();
  };
  size_t b = 0, e = at.size() - 1;
  if (left)
    while (b < e && strippable(b)) ++b;
  if (right)
    while (e > b && strippable(e - 1)) --e;
  return s.substr(at[b], at[e] - at[b]);
}

// Python's str.split / rsplit.
JinjaData split(const std::string& s, const std::optional<std::string>& sep, int64_t maxsplit, bool from_right) {
  std::vector<std::string> parts;
  if (!sep) {
    std::vector<std::pair<size_t, size_t>> words;
    for (size_t i = 0; i < s.size();) {
      while (i < s.size() && is_ascii_space(s[i])) ++i;
      if (i >= s.size()) break;
      const size_t b = i;
      while (i < s.size() && !is_ascii_space(s[i])) ++i;
      words.emplace_back(b, i);
    }
    if (maxsplit < 0 || static_cast<size_t>(maxsplit) + 1 >= words.size()) {
      for (auto [b, e] : words) parts.push_back(s.substr(b, e - b));
    } else if (!from_right) {
      for (int64_t i = 0; i < maxsplit; ++i) parts.push_back(s.substr(words[i].first, words[i].second - words[i].first));
      std::string rest = s.substr(words[static_cast<size_t>(maxsplit)].first);
      parts.push_back(strip(rest, std::nullopt, false, true));
    } else {
      const size_t keep = words.size() - static_cast<size_t>(maxsplit);
      parts.push_back(strip(s.substr(0, words[keep - 1].second), std::nullopt, true, false));
      for (size_t i = keep; i < words.size(); ++i) parts.push_back(s.substr(words[i].first, words[i].second - words[i].first));
    }
  } else {
    if (sep->empty()) throw JinjaTypeError("empty separator");
    std::vector<size_t> hits;
    for (size_t at = s.find(*sep); at != std::string::npos; at = s.find(*sep, at + sep->size())) hits.push_back(at);
    if (maxsplit >= 0 && hits.size() > static_cast<size_t>(maxsplit)) {
      if (from_right) hits.erase(hits.begin(), hits.end() - maxsplit);
      else hits.resize(static_cast<size_t>(maxsplit));
    }
    size_t b = 0;
    for (size_t h : hits) {
      parts.push_back(s.substr(b, h - b));
      b = h + sep->size();
    }
    parts.push_back(s.substr(b));
  }
  JinjaData out = JinjaData::array();
  for (auto& p : parts) out.push_back(std::move(p));
  return out;
}

std::string capitalize(const std::string& s) {
  std::string out = ascii_lower(s);
  if (!out.empty()) out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}

// Python's str.title(): a letter after a letter is lowered, any other raised. Bytes of non-ASCII
// characters count as letters that keep their case.
std::string python_title(const std::string& s) {
  std::string out = s;
  bool word = false;
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    const bool letter = std::isalpha(u) != 0 || u >= 0x80;
    if (u < 0x80 && letter) c = static_cast<char>(word ? std::tolower(u) : std::toupper(u));
    word = letter;
  }
  return out;
}

// Jinja2's title filter: words split at runs of whitespace, '-', '(', '{', '[' and '<'; each
// piece's first character raised, the rest lowered.
std::string jinja_title(const std::string& s) {
  std::string out = s;
  bool piece_start = true;
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (is_ascii_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<') {
      piece_start = true;
      continue;
    }
    if (u < 0x80) c = static_cast<char>(piece_start ? std::toupper(u) : std::tolower(u));
    if (u < 0x80 || (u & 0xC0) == 0xC0) piece_start = false;  // a non-ASCII character's lead byte
  }
  return out;
}

std::string replace(const std::string& s, const std::string& from, const std::string& to, int64_t count, size_t max_size) {
  std::string out;
  if (from.empty()) {  // Python inserts `to` around every character
    const std::vector<size_t> at = utf8_offsets(s);
    int64_t done = 0;
    for (size_t i = 0; i + 1 < at.size(); ++i) {
      if (count < 0 || done++ < count) out += to;
      out += s.substr(at[i], at[i + 1] - at[i]);
      if (out.size() > max_size) throw JinjaTypeError("a string beyond the output limit");
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  size_t b = 0;
  int64_t done = 0;
  for (size_t at = s.find(from); at != std::string::npos && (count < 0 || done < count); at = s.find(from, b), ++done) {
    out += s.substr(b, at - b) + to;
    b = at + from.size();
    if (out.size() > max_size) throw JinjaTypeError("a string beyond the output limit");
  }
  return out + s.substr(b);
}

// Non-ASCII characters as \uXXXX (surrogate pairs above the BMP), as json.dumps(ensure_ascii=True).
std::string ascii_json(const std::string& s) {
  std::u32string cps;
  calib::decode_utf8(s, cps);  // the engine's strings are valid UTF-8 (the template and JSON are checked)
  std::string out;
  for (char32_t cp : cps) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
      continue;
    }
    char buf[16];
    if (cp >= 0x10000) {
      cp -= 0x10000;
      std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (cp >> 10)), static_cast<unsigned>(0xDC00 + (cp & 0x3FF)));
    } else {
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp));
    }
    out += buf;
  }
  return out;
}

class Renderer {
 public:
  Renderer(const std::string& name, const JinjaData& context, const JinjaLimits& limits)
      : name_(name), context_(context), limits_(limits) {
    scopes_.emplace_back();
  }

  std::string run(const JinjaBody& body) {
    body_run(body);
    return std::move(out_);
  }

 private:
  enum class Flow { Normal, Break, Continue };

  [[noreturn]] void fail(int line, const std::string& what) const { throw TemplateError(name_, line, what); }
  void step(int line) {
    if (++steps_ > limits_.max_steps)
      fail(line, "the template took more than " + std::to_string(limits_.max_steps) + " steps (the render limit)");
  }
  void emit(const std::string& text, int line) {
    if (out_.size() + text.size() > limits_.max_output_bytes)
      fail(line, "the template wrote more than " + std::to_string(limits_.max_output_bytes) + " bytes (the render limit)");
    out_ += text;
  }

  Flow body_run(const JinjaBody& body) {
    for (const JinjaNode& n : body) {
      const Flow f = node_run(n);
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

  Flow node_run(const JinjaNode& n) {
    step(n.line);
    try {
      return node_kind_run(n);
    } catch (const JinjaTypeError& e) {
      fail(n.line, e.what());
    }
  }

  Flow node_kind_run(const JinjaNode& n) {
    switch (n.kind) {
      case JinjaNodeKind::Text: emit(n.text, n.line); return Flow::Normal;
      case JinjaNodeKind::Output: emit(jinja_str(eval(*n.expr)), n.line); return Flow::Normal;
      case JinjaNodeKind::If:
        for (size_t i = 0; i < n.conditions.size(); ++i)
          if (jinja_truthy(eval(*n.conditions[i]))) return body_run(n.bodies[i]);
        if (n.bodies.size() > n.conditions.size()) return body_run(n.bodies.back());
        return Flow::Normal;
      case JinjaNodeKind::For: return for_run(n);
      case JinjaNodeKind::Set: set_run(n); return Flow::Normal;
      case JinjaNodeKind::Break: return Flow::Break;
      case JinjaNodeKind::Continue: return Flow::Continue;
      case JinjaNodeKind::Block: return body_run(n.bodies[0]);
    }
    return Flow::Normal;
  }

  void assign(const std::vector<std::string>& targets, const V& value, int line) {
    if (targets.size() == 1) {
      scopes_.back()[targets[0]] = value;
      return;
    }
    const JinjaData& d = value.need_data();
    const std::vector<JinjaData> items = python_iterate(d);
    if (items.size() != targets.size())
      fail(line, "cannot unpack " + std::to_string(items.size()) + " values into " + std::to_string(targets.size()) + " names");
    for (size_t i = 0; i < targets.size(); ++i) scopes_.back()[targets[i]] = V::of(items[i]);
  }

  void set_run(const JinjaNode& n) {
    V value;
    if (n.expr) {
      value = eval(*n.expr);
    } else {
      std::string saved = std::move(out_);
      out_.clear();
      body_run(n.bodies[0]);
      value = V::of(std::move(out_));
      out_ = std::move(saved);
    }
    if (n.attribute.empty()) return assign(n.targets, value, n.line);
    const V target = lookup(n.targets[0]);
    if (target.kind != V::Kind::Namespace)
      fail(n.line, "cannot assign the attribute '" + n.attribute + "' of '" + n.targets[0] + "': only a namespace() takes attributes");
    try {
      (*target.attributes)[n.attribute] = value.need_data();
    } catch (const JinjaTypeError& e) {
      fail(n.line, e.what());
    }
  }

  Flow for_run(const JinjaNode& n) {
    const V iterable = eval(*n.expr);
    std::vector<JinjaData> items;
    if (!iterable.is_undefined()) {
      try {
        items = python_iterate(iterable.need_data());
      } catch (const JinjaTypeError& e) {
        fail(n.line, e.what());
      }
    }
    if (n.condition) {
      std::vector<JinjaData> kept;
      for (const JinjaData& item : items) {
        scopes_.emplace_back();
        assign(n.targets, V::of(item), n.line);
        const bool keep = jinja_truthy(eval(*n.condition));
        scopes_.pop_back();
        if (keep) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) return n.bodies.size() > 1 ? body_run(n.bodies[1]) : Flow::Normal;
    const auto length = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < length; ++i) {
      step(n.line);
      JinjaData loop = {{"index", i + 1}, {"index0", i}, {"revindex", length - i}, {"revindex0", length - i - 1},
                        {"first", i == 0}, {"last", i + 1 == length}, {"length", length}, {"depth", 1}, {"depth0", 0}};
      if (i > 0) loop["previtem"] = items[static_cast<size_t>(i - 1)];
      if (i + 1 < length) loop["nextitem"] = items[static_cast<size_t>(i + 1)];
      scopes_.emplace_back();
      scopes_.back()["loop"] = V::of(std::move(loop));
      assign(n.targets, V::of(items[static_cast<size_t>(i)]), n.line);
      const Flow f = body_run(n.bodies[0]);
      scopes_.pop_back();
      if (f == Flow::Break) break;
    }
    return Flow::Normal;
  }

  V lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it)
      if (const auto found = it->find(name); found != it->end()) return found->second;
    if (const auto it = context_.find(name); it != context_.end()) return V::of(*it);
    if (jinja_known(kJinjaFunctions, name)) return {V::Kind::Function, nullptr, nullptr, name, false};
    return V::undefined(name);
  }

  V eval(const JinjaExpr& e) {
    step(e.line);
    try {
      return eval_inner(e);
    } catch (const JinjaTypeError& err) {
      fail(e.line, err.what());
    }
  }

  JinjaData data(const JinjaExpr& e) { return eval(e).need_data(); }

  V eval_inner(const JinjaExpr& e) {
    switch (e.kind) {
      case E::Literal: return V::of(e.value);
      case E::Name: return lookup(e.name);
      case E::List: {
        JinjaData list = JinjaData::array();
        for (const auto& item : e.args) list.push_back(data(*item));
        check_value_depth(list);
        return V::of(std::move(list));
      }
      case E::Dict: {
        JinjaData dict = JinjaData::object();
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          const JinjaData key = data(*e.args[i]);
          if (!key.is_string()) throw JinjaTypeError("dict keys other than strings are not supported");
          dict[key.get<std::string>()] = data(*e.args[i + 1]);
        }
        check_value_depth(dict);
        return V::of(std::move(dict));
      }
      case E::GetAttr: return attribute(eval(*e.args[0]), e.name);
      case E::GetItem: return item(eval(*e.args[0]), eval(*e.args[1]));
      case E::Slice: {
        const V sliced = eval(*e.args[0]);
        if (sliced.is_undefined()) throw JinjaTypeError("'" + sliced.name + "' is undefined");
        if (sliced.generator) throw JinjaTypeError("'generator' object is not subscriptable");
        const JinjaData& object = sliced.need_data();  // Jinja2 slices as Python does: other types are an error
        const auto bound = [&](const JinjaExprPtr& p) -> std::optional<int64_t> {
          if (!p) return std::nullopt;
          const JinjaData b = data(*p);
          if (b.is_null()) return std::nullopt;
          if (!b.is_number_integer()) throw JinjaTypeError("slice indices must be integers or None");
          return b.get<int64_t>();
        };
        return V::of(python_slice(object, bound(e.args[1]), bound(e.args[2]), bound(e.args[3])));
      }
      case E::Call: return call(e);
      case E::Filter: {
        V value = eval(*e.args[0]);
        return filter(e.name, value, arguments(e), keyword_arguments(e));
      }
      case E::Test: {
        const bool r = test(e.name, eval(*e.args[0]), arguments(e));
        return V::of(e.negated ? !r : r);
      }
      case E::Not: return V::of(!jinja_truthy(eval(*e.args[0])));
      case E::Negate:
      case E::Plus: {
        const JinjaData x = data(*e.args[0]);
        if (!x.is_number() && !x.is_boolean()) throw JinjaTypeError("bad operand type for unary " + std::string(e.kind == E::Negate ? "-" : "+"));
        if (e.kind == E::Plus) return V::of(x);
        if (x.is_number_float()) return V::of(-x.get<double>());  // -0.0 stays negative, as in Python
        return V::of(python_binary("-", JinjaData(0), x, limits_.max_output_bytes));
      }
      case E::Binary: {
        if (e.name == "~") {
          std::string s = jinja_str(eval(*e.args[0]));
          s += jinja_str(eval(*e.args[1]));
          if (s.size() > limits_.max_output_bytes) throw JinjaTypeError("a string beyond the output limit");
          return V::of(std::move(s));
        }
        const JinjaData a = data(*e.args[0]);
        return V::of(python_binary(e.name, a, data(*e.args[1]), limits_.max_output_bytes));
      }
      case E::Compare: return V::of(compare(e));
      case E::And: {
        V a = eval(*e.args[0]);
        return jinja_truthy(a) ? eval(*e.args[1]) : a;
      }
      case E::Or: {
        V a = eval(*e.args[0]);
        return jinja_truthy(a) ? a : eval(*e.args[1]);
      }
      case E::Conditional:
        if (jinja_truthy(eval(*e.args[1]))) return eval(*e.args[0]);
        return e.args[2] ? eval(*e.args[2]) : V::undefined("the else branch of an inline if");
    }
    return V::undefined("?");
  }

  bool compare(const JinjaExpr& e) {
    V left = eval(*e.args[0]);
    for (size_t i = 0; i < e.ops.size(); ++i) {
      V right = eval(*e.args[i + 1]);
      const std::string& op = e.ops[i];
      bool r;
      if (op == "==" || op == "!=") {
        const bool same = left.is_undefined() || right.is_undefined()
                              ? left.is_undefined() && right.is_undefined()
                              : left.kind == V::Kind::Data && right.kind == V::Kind::Data && !left.generator &&
                                    !right.generator && python_equal(left.data, right.data);
        r = op == "==" ? same : !same;
      } else if (op == "in" || op == "not in") {
        const bool found = !right.is_undefined() && !left.is_undefined() && python_contains(right.need_data(), left.need_data());
        r = op == "in" ? found : !found;
      } else {
        const int c = python_compare(left.need_data(), right.need_data());
        r = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
      }
      if (!r) return false;
      left = std::move(right);
    }
    return true;
  }

  V attribute(const V& object, const std::string& name) {
    if (object.kind == V::Kind::Undefined) throw JinjaTypeError("'" + object.name + "' is undefined");
    if (object.kind == V::Kind::Namespace) {
      if (const auto it = object.attributes->find(name); it != object.attributes->end()) return V::of(*it);
      return V::undefined(name);
    }
    if (object.kind == V::Kind::Data && object.data.is_object())
      if (const auto it = object.data.find(name); it != object.data.end()) return V::of(*it);
    return V::undefined(name);
  }

  V item(const V& object, const V& key) {
    if (object.kind == V::Kind::Undefined) throw JinjaTypeError("'" + object.name + "' is undefined");
    if (object.kind == V::Kind::Namespace) return key.is_data() && key.data.is_string() ? attribute(object, key.data.get<std::string>()) : V::undefined("item");
    if (object.kind != V::Kind::Data || object.generator || !key.is_data()) return V::undefined("item");
    const JinjaData& o = object.data;
    const JinjaData& k = key.data;
    if (o.is_object() && k.is_string()) {
      if (const auto it = o.find(k.get<std::string>()); it != o.end()) return V::of(*it);
      return V::undefined(k.get<std::string>());
    }
    if ((o.is_array() || o.is_string()) && (k.is_number_integer() || k.is_boolean())) {
      const int64_t index = k.is_boolean() ? (k.get<bool>() ? 1 : 0) : k.get<int64_t>();
      if (auto v = python_index(o, index)) return V::of(std::move(*v));
      return V::undefined("index " + std::to_string(index));
    }
    return V::undefined(k.is_string() ? k.get<std::string>() : k.dump());
  }

  Args arguments(const JinjaExpr& e) {
    Args out;
    for (size_t i = 1; i < e.args.size(); ++i) out.push_back(eval(*e.args[i]));
    return out;
  }
  Kwargs keyword_arguments(const JinjaExpr& e) {
    Kwargs out;
    for (const auto& [key, value] : e.kwargs) out.emplace_back(key, eval(*value));
    return out;
  }

  // Argument `index` or keyword `key` of a call; nullopt when neither was given.
  static std::optional<V> argument(const Args& args, const Kwargs& kwargs, size_t index, const char* key) {
    for (const auto& [k, v] : kwargs)
      if (k == key) return v;
    if (index < args.size()) return args[index];
    return std::nullopt;
  }
  static std::optional<std::string> string_argument(const Args& args, const Kwargs& kwargs, size_t index, const char* key) {
    auto v = argument(args, kwargs, index, key);
    if (!v || (v->is_data() && v->data.is_null())) return std::nullopt;
    if (!v->is_data() || !v->data.is_string()) throw JinjaTypeError(std::string("the argument ") + key + " must be a string");
    return v->data.get<std::string>();
  }
  static int64_t int_argument(const Args& args, const Kwargs& kwargs, size_t index, const char* key, int64_t def) {
    auto v = argument(args, kwargs, index, key);
    if (!v || (v->is_data() && v->data.is_null())) return def;
    if (!v->is_data() || !v->data.is_number_integer()) throw JinjaTypeError(std::string("the argument ") + key + " must be an integer");
    return v->data.get<int64_t>();
  }

  V call(const JinjaExpr& e) {
    const JinjaExpr& callee = *e.args[0];
    if (callee.kind == E::GetAttr) {
      const V object = eval(*callee.args[0]);
      return method(object, callee.name, arguments(e), keyword_arguments(e));
    }
    const V function = lookup(callee.name);
    if (function.kind != V::Kind::Function) throw JinjaTypeError("'" + callee.name + "' is not callable");
    const Args args = arguments(e);
    const Kwargs kwargs = keyword_arguments(e);
    if (callee.name == "raise_exception") {
      if (args.empty()) throw JinjaTypeError("raise_exception() needs a message");
      throw TemplateRaised(name_, e.line, jinja_str(args[0]));
    }
    if (callee.name == "namespace" || callee.name == "dict") {
      JinjaData attributes = JinjaData::object();
      for (const V& a : args) {
        if (!a.is_data() || !a.data.is_object()) throw JinjaTypeError(callee.name + "() takes a dict or keyword arguments");
        for (const auto& [k, v] : a.data.items()) attributes[k] = v;
      }
      for (const auto& [k, v] : kwargs) attributes[k] = v.need_data();
      check_value_depth(attributes);
      if (callee.name == "dict") return V::of(std::move(attributes));
      return {V::Kind::Namespace, nullptr, std::make_shared<JinjaData>(std::move(attributes)), "", false};
    }
    if (callee.name == "range") {
      std::vector<int64_t> p;
      for (const V& a : args) {
        if (!a.is_data() || !(a.data.is_number_integer() || a.data.is_boolean())) throw JinjaTypeError("range() takes integers");
        p.push_back(a.data.is_boolean() ? a.data.get<bool>() : a.data.get<int64_t>());
      }
      if (p.empty() || p.size() > 3) throw JinjaTypeError("range() takes 1 to 3 arguments");
      const int64_t start = p.size() == 1 ? 0 : p[0], stop = p.size() == 1 ? p[0] : p[1], stride = p.size() == 3 ? p[2] : 1;
      if (stride == 0) throw JinjaTypeError("range() arg 3 must not be zero");
      JinjaData out = JinjaData::array();
      for (int64_t i = start; stride > 0 ? i < stop : i > stop; i += stride) {
        if (static_cast<int64_t>(out.size()) >= kMaxRange)
          throw JinjaTypeError("range() of more than " + std::to_string(kMaxRange) + " items (the sandbox limit)");
        out.push_back(i);
      }
      return V::of(std::move(out));
    }
    if (callee.name == "strftime_now") {
      const auto format = string_argument(args, kwargs, 0, "format");
      if (!format) throw JinjaTypeError("strftime_now() needs a format");
      const std::time_t now = std::time(nullptr);
      std::tm local{};
      localtime_r(&now, &local);
      char buf[256];
      const size_t n = std::strftime(buf, sizeof buf, format->c_str(), &local);
      return V::of(std::string(buf, n));
    }
    throw JinjaTypeError("the function " + callee.name + "() is not supported");
  }

  V method(const V& object, const std::string& name, const Args& args, const Kwargs& kwargs) {
    if (object.kind == V::Kind::Undefined) throw JinjaTypeError("'" + object.name + "' is undefined");
    const JinjaData& o = object.need_data();
    if (o.is_string()) {
      const std::string& s = o.get_ref<const std::string&>();
      if (name == "split" || name == "rsplit")
        return V::of(split(s, string_argument(args, kwargs, 0, "sep"), int_argument(args, kwargs, 1, "maxsplit", -1), name == "rsplit"));
      if (name == "strip" || name == "lstrip" || name == "rstrip")
        return V::of(strip(s, string_argument(args, kwargs, 0, "chars"), name != "rstrip", name != "lstrip"));
      if (name == "startswith" || name == "endswith") {
        const auto what = argument(args, kwargs, 0, "prefix");
        if (!what || !what->is_data()) throw JinjaTypeError(name + "() needs an argument");
        std::vector<std::string> options;
        if (what->data.is_string()) options.push_back(what->data.get<std::string>());
        else if (what->data.is_array())
          for (const auto& x : what->data) {
            if (!x.is_string()) throw JinjaTypeError(name + "() takes strings");
            options.push_back(x.get<std::string>());
          }
        else throw JinjaTypeError(name + "() takes a string or a tuple of strings");
        for (const std::string& p : options)
          if (p.size() <= s.size() && (name == "startswith" ? s.compare(0, p.size(), p) == 0 : s.compare(s.size() - p.size(), p.size(), p) == 0))
            return V::of(true);
        return V::of(false);
      }
      if (name == "lower") return V::of(ascii_lower(s));
      if (name == "upper") return V::of(ascii_upper(s));
      if (name == "title") return V::of(python_title(s));
      if (name == "capitalize") return V::of(capitalize(s));
      if (name == "replace") {
        const auto from = string_argument(args, kwargs, 0, "old"), to = string_argument(args, kwargs, 1, "new");
        if (!from || !to) throw JinjaTypeError("replace() needs two strings");
        return V::of(replace(s, *from, *to, int_argument(args, kwargs, 2, "count", -1), limits_.max_output_bytes));
      }
      if (name == "find" || name == "count") {
        const auto sub = string_argument(args, kwargs, 0, "sub");
        if (!sub) throw JinjaTypeError(name + "() needs a string");
        if (name == "find") {
          const size_t at = s.find(*sub);
          if (at == std::string::npos) return V::of(-1);
          return V::of(static_cast<int64_t>(utf8_offsets(s.substr(0, at)).size()) - 1);
        }
        if (sub->empty()) return V::of(python_len(o) + 1);
        int64_t n = 0;
        for (size_t at = s.find(*sub); at != std::string::npos; at = s.find(*sub, at + sub->size())) ++n;
        return V::of(n);
      }
      if (name == "join") {
        const auto items = argument(args, kwargs, 0, "iterable");
        if (!items) throw JinjaTypeError("join() needs an iterable");
        std::string out;
        bool first = true;
        for (const JinjaData& x : python_iterate(items->need_data())) {
          if (!x.is_string()) throw JinjaTypeError("sequence item: expected str instance");
          if (!first) out += s;
          first = false;
          out += x.get<std::string>();
          if (out.size() > limits_.max_output_bytes) throw JinjaTypeError("a string beyond the output limit");
        }
        return V::of(std::move(out));
      }
    }
    if (o.is_array() && name == "count") {
      const auto x = argument(args, kwargs, 0, "value");
      if (!x) throw JinjaTypeError("count() takes exactly one argument");
      const JinjaData& item = x->need_data();
      return V::of(static_cast<int64_t>(std::count_if(o.begin(), o.end(), [&](const JinjaData& y) { return python_equal(y, item); })));
    }
    if (o.is_object()) {
      if (name == "items") return V::of(pairs(o));
      if (name == "keys" || name == "values") {
        JinjaData out = JinjaData::array();
        for (const auto& [k, v] : o.items()) out.push_back(name == "keys" ? JinjaData(k) : v);
        return V::of(std::move(out));
      }
      if (name == "get") {
        const auto key = argument(args, kwargs, 0, "key");
        if (!key) throw JinjaTypeError("get() needs a key");
        if (key->is_data() && key->data.is_string())
          if (const auto it = o.find(key->data.get<std::string>()); it != o.end()) return V::of(*it);
        return args.size() > 1 ? args[1] : V::of(nullptr);
      }
    }
    throw JinjaTypeError("no method ." + name + "() on this value (" + std::string(o.type_name()) + ")");
  }

  static JinjaData pairs(const JinjaData& o) {
    JinjaData out = JinjaData::array();
    for (const auto& [k, v] : o.items()) out.push_back(JinjaData::array({k, v}));
    check_value_depth(out);
    return out;
  }

  // getattr, then getitem, as Jinja2 looks up map(attribute=) and selectattr names (dotted paths).
  V path(const V& object, const std::string& dotted) {
    V v = object;
    size_t b = 0;
    for (;;) {
      const size_t dot = dotted.find('.', b);
      const std::string part = dotted.substr(b, dot == std::string::npos ? std::string::npos : dot - b);
      if (v.is_data() && v.data.is_array() && !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit)) {
        v = item(v, V::of(std::stoll(part)));
      } else {
        v = attribute(v, part);
      }
      if (dot == std::string::npos) return v;
      b = dot + 1;
    }
  }

  V filter(const std::string& name, const V& value, const Args& args, const Kwargs& kwargs) {
    if (name == "default" || name == "d") {
      const bool boolean = argument(args, kwargs, 1, "boolean").has_value() && jinja_truthy(*argument(args, kwargs, 1, "boolean"));
      if (value.is_undefined() || (boolean && !jinja_truthy(value))) return argument(args, kwargs, 0, "default_value").value_or(V::of(""));
      return value;
    }
    if (name == "safe") return V::of(jinja_str(value));  // Markup: a string
    if (name == "string") return V::of(jinja_str(value));
    if (name == "length" || name == "count") {
      if (value.generator) throw JinjaTypeError("object of type 'generator' has no len()");
      return V::of(value.is_undefined() ? 0 : python_len(value.need_data()));
    }
    if (name == "trim") return V::of(strip(jinja_str(value), string_argument(args, kwargs, 0, "chars"), true, true));
    if (name == "lower") return V::of(ascii_lower(jinja_str(value)));
    if (name == "upper") return V::of(ascii_upper(jinja_str(value)));
    if (name == "capitalize") return V::of(capitalize(jinja_str(value)));
    if (name == "title") return V::of(jinja_title(jinja_str(value)));
    if (name == "replace") {
      const auto from = string_argument(args, kwargs, 0, "old"), to = string_argument(args, kwargs, 1, "new");
      if (!from || !to) throw JinjaTypeError("replace needs two strings");
      return V::of(replace(jinja_str(value), *from, *to, int_argument(args, kwargs, 2, "count", -1), limits_.max_output_bytes));
    }
    if (name == "tojson") {
      PythonJsonLayout layout;
      const bool ensure_ascii = argument(args, kwargs, 0, "ensure_ascii") && jinja_truthy(*argument(args, kwargs, 0, "ensure_ascii"));
      if (auto indent = argument(args, kwargs, 1, "indent"); indent && !(indent->is_data() && indent->data.is_null())) {
        layout.indented = true;
        layout.item_separator = ",";
        const JinjaData& d = indent->need_data();
        if (d.is_number_integer()) layout.indent = std::string(static_cast<size_t>(std::clamp<int64_t>(d.get<int64_t>(), 0, 64)), ' ');
        else if (d.is_string()) layout.indent = d.get<std::string>();
        else throw JinjaTypeError("tojson indent must be an integer or a string");
      }
      if (auto separators = argument(args, kwargs, 2, "separators"); separators && !(separators->is_data() && separators->data.is_null())) {
        const JinjaData& d = separators->need_data();
        if (!d.is_array() || d.size() != 2 || !d[0].is_string() || !d[1].is_string())
          throw JinjaTypeError("tojson separators must be two strings");
        layout.item_separator = d[0].get<std::string>();
        layout.key_separator = d[1].get<std::string>();
      }
      layout.sort_keys = argument(args, kwargs, 3, "sort_keys") && jinja_truthy(*argument(args, kwargs, 3, "sort_keys"));
      if (value.is_undefined()) throw JinjaTypeError("Object of type Undefined is not JSON serializable");
      if (value.generator) throw JinjaTypeError("Object of type generator is not JSON serializable");
      std::string text = python_json_dumps(value.need_data(), layout);
      return V::of(ensure_ascii ? ascii_json(text) : text);
    }
    if (name == "join") {
      const std::string separator = string_argument(args, kwargs, 0, "d").value_or("");
      const auto attr = string_argument(args, kwargs, 1, "attribute");
      std::string out;
      bool first = true;
      if (value.is_undefined()) return V::of("");
      for (const JinjaData& x : python_iterate(value.need_data())) {
        if (!first) out += separator;
        first = false;
        out += jinja_str(attr ? path(V::of(x), *attr) : V::of(x));
        if (out.size() > limits_.max_output_bytes) throw JinjaTypeError("a string beyond the output limit");
      }
      return V::of(std::move(out));
    }
    if (name == "first" || name == "last") {
      if (value.is_undefined()) return V::undefined(name);
      const std::vector<JinjaData> items = python_iterate(value.need_data());
      if (items.empty()) return V::undefined(name + " of an empty sequence");
      return V::of(name == "first" ? items.front() : items.back());
    }
    if (name == "list") {
      JinjaData out = JinjaData::array();
      if (!value.is_undefined())
        for (JinjaData& x : python_iterate(value.need_data())) out.push_back(std::move(x));
      return V::of(std::move(out));
    }
    if (name == "items") {
      if (value.is_undefined()) return V::generated(JinjaData::array());
      if (!value.need_data().is_object()) throw JinjaTypeError("items filter: not a mapping");
      return V::generated(pairs(value.data));
    }
    if (name == "reverse") {
      const JinjaData& d = value.need_data();
      if (d.is_string()) return V::of(python_slice(d, std::nullopt, std::nullopt, -1));
      std::vector<JinjaData> items = python_iterate(d);
      std::reverse(items.begin(), items.end());
      return V::generated(JinjaData(items));
    }
    if (name == "abs") {
      const JinjaData& d = value.need_data();
      if (d.is_number_float()) return V::of(std::abs(d.get<double>()));
      if (d.is_number_integer()) return V::of(python_binary("*", d, d.get<int64_t>() < 0 ? -1 : 1, limits_.max_output_bytes));
      throw JinjaTypeError("bad operand type for abs()");
    }
    if (name == "int" || name == "float") return number(name, value, args, kwargs);
    if (name == "map") {
      JinjaData out = JinjaData::array();
      const auto attr = string_argument(Args{}, kwargs, 0, "attribute");
      if (value.is_undefined()) return V::generated(out);
      for (const JinjaData& x : python_iterate(value.need_data())) {
        if (attr) {
          V v = path(V::of(x), *attr);
          if (v.is_undefined()) v = argument(Args{}, kwargs, 0, "default").value_or(v);
          out.push_back(v.need_data());
        } else {
          if (args.empty() || !args[0].is_data() || !args[0].data.is_string()) throw JinjaTypeError("map needs a filter name or attribute=");
          const std::string f = args[0].data.get<std::string>();
          if (!jinja_known(kJinjaFilters, f) || f == "map") throw JinjaTypeError("map: the filter '" + f + "' is not supported");
          out.push_back(filter(f, V::of(x), Args(args.begin() + 1, args.end()), kwargs).need_data());
        }
      }
      return V::generated(std::move(out));
    }
    if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
      const bool by_attribute = name == "selectattr" || name == "rejectattr", keep_if = name == "select" || name == "selectattr";
      size_t at = 0;
      std::optional<std::string> attr;
      if (by_attribute) {
        if (args.empty() || !args[0].is_data() || !args[0].data.is_string()) throw JinjaTypeError(name + " needs an attribute name");
        attr = args[0].data.get<std::string>();
        at = 1;
      }
      std::optional<std::string> test_name;
      if (at < args.size()) {
        if (!args[at].is_data() || !args[at].data.is_string()) throw JinjaTypeError(name + " needs a test name");
        test_name = args[at].data.get<std::string>();
        if (!jinja_known(kJinjaTests, *test_name)) throw JinjaTypeError(name + ": the test '" + *test_name + "' is not supported");
      }
      const Args test_args(args.begin() + static_cast<ptrdiff_t>(std::min(args.size(), at + 1)), args.end());
      JinjaData out = JinjaData::array();
      if (value.is_undefined()) return V::generated(out);
      for (const JinjaData& x : python_iterate(value.need_data())) {
        const V subject = attr ? path(V::of(x), *attr) : V::of(x);
        const bool passes = test_name ? test(*test_name, subject, test_args) : jinja_truthy(subject);
        if (passes == keep_if) out.push_back(x);
      }
      return V::generated(std::move(out));
    }
    if (name == "sort" || name == "unique") {
      const bool reverse = name == "sort" && argument(args, kwargs, 0, "reverse") && jinja_truthy(*argument(args, kwargs, 0, "reverse"));
      const bool case_sensitive = argument(args, kwargs, name == "sort" ? 1 : 0, "case_sensitive") &&
                                  jinja_truthy(*argument(args, kwargs, name == "sort" ? 1 : 0, "case_sensitive"));
      const auto attr = string_argument(args, kwargs, name == "sort" ? 2 : 1, "attribute");
      const auto key = [&](const JinjaData& x) {
        JinjaData k = attr ? path(V::of(x), *attr).need_data() : x;
        if (!case_sensitive && k.is_string()) k = ascii_lower(k.get<std::string>());
        return k;
      };
      std::vector<JinjaData> items = value.is_undefined() ? std::vector<JinjaData>{} : python_iterate(value.need_data());
      if (name == "unique") {
        std::vector<JinjaData> seen, out;
        for (const JinjaData& x : items) {
          const JinjaData k = key(x);
          if (std::none_of(seen.begin(), seen.end(), [&](const JinjaData& s) { return python_equal(s, k); })) {
            seen.push_back(k);
            out.push_back(x);
          }
        }
        return V::generated(JinjaData(out));
      }
      std::stable_sort(items.begin(), items.end(), [&](const JinjaData& a, const JinjaData& b) {
        const int c = python_compare(key(a), key(b));
        return reverse ? c > 0 : c < 0;
      });
      return V::of(JinjaData(items));
    }
    throw JinjaTypeError("the filter '" + name + "' is not supported");
  }

  V number(const std::string& name, const V& value, const Args& args, const Kwargs& kwargs) {
    const V fallback = argument(args, kwargs, 0, "default").value_or(name == "int" ? V::of(0) : V::of(0.0));
    if (!value.is_data()) return fallback;
    const JinjaData& d = value.data;
    if (d.is_boolean()) return name == "int" ? V::of(d.get<bool>() ? 1 : 0) : V::of(d.get<bool>() ? 1.0 : 0.0);
    if (d.is_number()) {
      if (name == "float") return V::of(d.get<double>());
      if (d.is_number_float()) {
        const double x = d.get<double>();
        if (!(x > -9.2e18 && x < 9.2e18)) return fallback;
        return V::of(static_cast<int64_t>(x));
      }
      return V::of(d);
    }
    if (d.is_string()) {
      const std::string s = strip(d.get<std::string>(), std::nullopt, true, true);
      if (s.empty()) return fallback;
      char* end = nullptr;
      errno = 0;
      if (name == "int") {
        const long long v = std::strtoll(s.c_str(), &end, 10);
        if (*end == '\0' && errno == 0) return V::of(static_cast<int64_t>(v));
        const double x = std::strtod(s.c_str(), &end);  // Jinja2's int filter also reads "3.5" as 3
        if (*end == '\0' && x > -9.2e18 && x < 9.2e18) return V::of(static_cast<int64_t>(x));
        return fallback;
      }
      const double x = std::strtod(s.c_str(), &end);
      if (*end == '\0') return V::of(x);
    }
    return fallback;
  }

  bool test(const std::string& name, const V& value, const Args& args) {
    const auto arg = [&]() -> const V& {
      if (args.empty()) throw JinjaTypeError("the test '" + name + "' needs an argument");
      return args[0];
    };
    if (name == "defined") return !value.is_undefined();
    if (name == "undefined") return value.is_undefined();
    if (name == "iterable") return value.is_undefined() || (value.is_data() && (value.data.is_string() || value.data.is_array() || value.data.is_object()));
    if (!value.is_data()) {
      if (name == "eq" || name == "equalto" || name == "==") return value.is_undefined() && arg().is_undefined();
      if (name == "ne" || name == "!=") return !(value.is_undefined() && arg().is_undefined());
      return false;
    }
    const JinjaData& d = value.data;
    if (value.generator && (name == "sequence" || name == "mapping" || name == "string")) return false;
    if (name == "none") return d.is_null();
    if (name == "string") return d.is_string();
    if (name == "number") return d.is_number() || d.is_boolean();
    if (name == "integer") return d.is_number_integer();
    if (name == "float") return d.is_number_float();
    if (name == "boolean") return d.is_boolean();
    if (name == "true") return d.is_boolean() && d.get<bool>();
    if (name == "false") return d.is_boolean() && !d.get<bool>();
    if (name == "mapping") return d.is_object();
    if (name == "sequence") return d.is_string() || d.is_array() || d.is_object();
    if (name == "eq" || name == "equalto" || name == "==") return arg().is_data() && python_equal(d, arg().data);
    if (name == "ne" || name == "!=") return !(arg().is_data() && python_equal(d, arg().data));
    if (name == "lt" || name == "<") return python_compare(d, arg().need_data()) < 0;
    if (name == "le" || name == "<=") return python_compare(d, arg().need_data()) <= 0;
    if (name == "gt" || name == ">") return python_compare(d, arg().need_data()) > 0;
    if (name == "ge" || name == ">=") return python_compare(d, arg().need_data()) >= 0;
    if (name == "in") return python_contains(arg().need_data(), d);
    if (name == "sameas") {
      const JinjaData& o = arg().need_data();
      return (d.is_null() || d.is_boolean()) && d.type() == o.type() && d == o;
    }
    if (name == "even" || name == "odd" || name == "divisibleby") {
      if (!d.is_number_integer()) throw JinjaTypeError("the test '" + name + "' takes an integer");
      const int64_t x = d.get<int64_t>();
      if (name == "even") return x % 2 == 0;
      if (name == "odd") return x % 2 != 0;
      const JinjaData& by = arg().need_data();
      if (!by.is_number_integer() || by.get<int64_t>() == 0) throw JinjaTypeError("divisibleby takes a non-zero integer");
      return x % by.get<int64_t>() == 0;
    }
    if (name == "lower" || name == "upper") {
      const std::string s = jinja_str(value);
      bool cased = false;
      for (char c : s) {
        if (std::isalpha(static_cast<unsigned char>(c))) cased = true;
        if (name == "lower" ? std::isupper(static_cast<unsigned char>(c)) : std::islower(static_cast<unsigned char>(c))) return false;
      }
      return cased;
    }
    throw JinjaTypeError("the test '" + name + "' is not supported");
  }

  const std::string& name_;
  const JinjaData& context_;
  JinjaLimits limits_;
  std::string out_;
  uint64_t steps_ = 0;
  std::vector<std::map<std::string, V>> scopes_;
};

}  // namespace

std::string render_jinja(const JinjaBody& body, const std::string& source_name, const JinjaData& context,
                         const JinjaLimits& limits) {
  return Renderer(source_name, context, limits).run(body);
}

}  // namespace fp4kit::serve
