#pragma once
// Collapses tensor names that differ only in numeric components into one pattern with ranges:
// layers.{0..60}.ffn.experts.{0..383}.w1.weight.
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace fp4kit {

// "layers.3.ffn.experts.17.w1.weight" -> skeleton "layers.#.ffn.experts.#.w1.weight", numbers {3, 17}.
struct SplitName {
  std::string skeleton;
  std::vector<int64_t> numbers;
};
SplitName split_name(std::string_view name);

// "{0..60}" for a contiguous set, "{0,2,5..9}" otherwise, "7" for a single value.
std::string format_index_set(const std::set<int64_t>& values);

// The skeleton with each '#' replaced by its index set.
std::string format_pattern(const std::string& skeleton, const std::vector<std::set<int64_t>>& indices);

}  // namespace fp4kit
