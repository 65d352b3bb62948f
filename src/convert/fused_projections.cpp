#include "convert/fused_projections.h"

#include <string_view>
#include <utility>

namespace fp4kit {

std::string fused_partner_of(const std::string& module) {
  static constexpr std::pair<std::string_view, std::string_view> kPairs[] = {
      {"w1", "w3"}, {"wq_a", "wkv"}, {"gate_proj", "up_proj"}, {"q_a_proj", "kv_a_proj_with_mqa"}};
  const size_t dot = module.rfind('.');
  const std::string_view leaf = dot == std::string::npos ? std::string_view(module) : std::string_view(module).substr(dot + 1);
  const std::string parent = dot == std::string::npos ? "" : module.substr(0, dot + 1);
  for (const auto& [a, b] : kPairs) {
    if (leaf == a) return parent + std::string(b);
    if (leaf == b) return parent + std::string(a);
  }
  return "";
}

}  // namespace fp4kit
