#pragma once
// The filters, tests, methods and global functions the chat-template engine implements
// (jinja_render.cpp). The parser refuses a template that names any other, so that a template
// outside the subset fails when it is loaded, not in the middle of a request.
#include <algorithm>
#include <array>
#include <string_view>

namespace fp4kit::serve {

inline constexpr std::array<std::string_view, 29> kJinjaFilters = {
    "tojson", "trim",  "length", "count", "string",     "join",       "first",  "last",   "lower", "upper",
    "capitalize", "title", "replace", "default", "d", "list", "items", "map", "selectattr", "rejectattr",
    "select", "reject", "int", "float", "abs", "reverse", "safe", "sort", "unique"};

inline constexpr std::array<std::string_view, 33> kJinjaTests = {
    "defined", "undefined", "none", "string", "number", "integer", "float", "boolean", "true", "false", "mapping",
    "iterable", "sequence", "eq", "equalto", "==", "ne", "!=", "lt", "<", "le", "<=", "gt", ">", "ge", ">=", "in",
    "sameas", "even", "odd", "divisibleby", "lower", "upper"};

// Methods of strings (split ... join), of lists (count) and of dicts (items, keys, values, get).
inline constexpr std::array<std::string_view, 19> kJinjaMethods = {
    "split", "rsplit", "strip", "lstrip", "rstrip", "startswith", "endswith", "lower", "upper", "title",
    "capitalize", "replace", "find", "count", "join", "items", "keys", "values", "get"};

// transformers' globals (raise_exception, strftime_now) and Jinja2's (namespace, range, dict).
inline constexpr std::array<std::string_view, 5> kJinjaFunctions = {"namespace", "raise_exception", "range",
                                                                    "strftime_now", "dict"};

template <size_t N>
bool jinja_known(const std::array<std::string_view, N>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace fp4kit::serve
