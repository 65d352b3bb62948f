#pragma once
// The values a chat template computes with, and Python's meaning of the operations on them, as
// Jinja2 inherits it: truth, str() and repr() of None, booleans, numbers, strings, lists and dicts,
// equality and ordering, len() and indexing of strings by character (UTF-8 code points, as Python
// strings count), + - * / // % ** on numbers, strings and lists. Data is JSON (objects keep their
// key order, as Python dicts do); beside it a value is undefined (a missing variable, key or
// attribute: empty when printed, false when tested, an error when used otherwise), a namespace()
// (attributes shared by every copy, so that a loop can change them) or a global function.
// Operations that Python refuses throw JinjaTypeError with Python's reason.
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace fp4kit::serve {

using JinjaData = nlohmann::ordered_json;

class JinjaTypeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct JinjaValue {
  enum class Kind { Undefined, Data, Namespace, Function };
  Kind kind = Kind::Undefined;
  JinjaData data;                          // Data
  std::shared_ptr<JinjaData> attributes;   // Namespace: an object
  std::string name;                        // Undefined: what is missing; Function: its name
  // Data: the items of a Python generator (what map, select, reject, selectattr, rejectattr, the
  // items and unique filters and reverse of a list give): true even when empty, without len(), not
  // JSON, printed as a generator object.
  bool generator = false;

  static JinjaValue of(JinjaData d) { return {Kind::Data, std::move(d), nullptr, "", false}; }
  static JinjaValue generated(JinjaData items) { return {Kind::Data, std::move(items), nullptr, "", true}; }
  static JinjaValue undefined(std::string what) { return {Kind::Undefined, nullptr, nullptr, std::move(what), false}; }
  bool is_undefined() const { return kind == Kind::Undefined; }
  bool is_data() const { return kind == Kind::Data; }
  // The data, or JinjaTypeError for an undefined value, a namespace or a function.
  const JinjaData& need_data() const;
};

bool jinja_truthy(const JinjaValue& v);
// str(): strings as they are, None as "None", True/False, floats as Python's repr, lists and
// dicts as their repr(); undefined as "".
std::string jinja_str(const JinjaValue& v);
std::string python_repr(const JinjaData& v);
bool python_equal(const JinjaData& a, const JinjaData& b);
// -1, 0, 1; JinjaTypeError where Python has no order (a string and a number, say).
int python_compare(const JinjaData& a, const JinjaData& b);
// a in b: a substring, a list item or a dict key.
bool python_contains(const JinjaData& container, const JinjaData& item);
// A binary operator: + - * / // % ** (~ is jinja_str of both, joined). `max_size` bounds the
// bytes of a string or the items of a list it builds.
JinjaData python_binary(const std::string& op, const JinjaData& a, const JinjaData& b, size_t max_size);
int64_t python_len(const JinjaData& v);

// Lists and dicts a template builds may nest this deep, so that printing or comparing them (which
// recurse) stays within the stack; JinjaTypeError for a deeper one.
inline constexpr int kMaxJinjaValueDepth = 256;
void check_value_depth(const JinjaData& v);

// UTF-8 code points: the byte offset where each starts, and the string's size at the end.
std::vector<size_t> utf8_offsets(const std::string& s);
// s[index] (negative from the end) and s[start:stop:step] by code point, Python's rules; nullopt
// bounds are left out.
std::optional<JinjaData> python_index(const JinjaData& v, int64_t index);
JinjaData python_slice(const JinjaData& v, std::optional<int64_t> start, std::optional<int64_t> stop,
                       std::optional<int64_t> step);
// The items a for loop or a filter walks: list items, dict keys, string characters.
std::vector<JinjaData> python_iterate(const JinjaData& v);

}  // namespace fp4kit::serve
