#include "inspect/name_pattern.h"

#include <charconv>

namespace fp4kit {

SplitName split_name(std::string_view name) {
  SplitName out;
  size_t start = 0;
  while (start <= name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string_view::npos) dot = name.size();
    const std::string_view part = name.substr(start, dot - start);
    int64_t value = 0;
    const bool numeric = !part.empty() && part.size() <= 18 && part.find_first_not_of("0123456789") == std::string_view::npos &&
                         (part.size() == 1 || part[0] != '0');
    if (numeric) {
      std::from_chars(part.data(), part.data() + part.size(), value);
      out.numbers.push_back(value);
      out.skeleton += '#';
    } else {
      out.skeleton += part;
    }
    if (dot == name.size()) break;
    out.skeleton += '.';
    start = dot + 1;
  }
  return out;
}

std::string format_index_set(const std::set<int64_t>& values) {
  if (values.size() == 1) return std::to_string(*values.begin());
  std::string out = "{";
  auto it = values.begin();
  bool first = true;
  while (it != values.end()) {
    const int64_t lo = *it;
    int64_t hi = lo;
    auto next = std::next(it);
    while (next != values.end() && *next == hi + 1) {
      hi = *next;
      ++next;
    }
    if (!first) out += ',';
    first = false;
    out += std::to_string(lo);
    if (hi > lo) out += (hi == lo + 1 ? "," : "..") + std::to_string(hi);
    it = next;
  }
  return out + "}";
}

std::string format_pattern(const std::string& skeleton, const std::vector<std::set<int64_t>>& indices) {
  std::string out;
  size_t k = 0;
  for (char c : skeleton) {
    if (c == '#' && k < indices.size()) out += format_index_set(indices[k++]);
    else out += c;
  }
  return out;
}

}  // namespace fp4kit
