#include "models/fused_groups.h"

namespace fp4kit {

namespace {

struct SplitName {
  std::string parent;  // "" or "a.b"
  std::string_view leaf;
};

SplitName split(const std::string& module) {
  const size_t dot = module.rfind('.');
  if (dot == std::string::npos) return {"", module};
  return {module.substr(0, dot), std::string_view(module).substr(dot + 1)};
}

const std::vector<std::string_view>* group_of_leaf(std::string_view leaf) {
  for (const auto& group : fused_leaf_groups())
    for (std::string_view member : group)
      if (member == leaf) return &group;
  return nullptr;
}

}  // namespace

const std::vector<std::vector<std::string_view>>& fused_leaf_groups() {
  static const std::vector<std::vector<std::string_view>> groups = {
      {"w1", "w3"}, {"gate_proj", "up_proj"}, {"q_proj", "k_proj", "v_proj"}, {"wq_a", "wkv"},
      {"q_a_proj", "kv_a_proj_with_mqa"}};
  return groups;
}

std::vector<std::string> fused_siblings_of(const std::string& module) {
  const SplitName s = split(module);
  const auto* group = group_of_leaf(s.leaf);
  std::vector<std::string> out;
  if (!group) return out;
  for (std::string_view member : *group)
    if (member != s.leaf) out.push_back((s.parent.empty() ? "" : s.parent + ".") + std::string(member));
  return out;
}

FusedGroupKey fused_group_of(const std::string& module) {
  const SplitName s = split(module);
  const auto* group = group_of_leaf(s.leaf);
  if (!group) return {};
  FusedGroupKey key{s.parent, ""};
  for (size_t i = 0; i < group->size(); ++i) key.members += (i ? "/" : "") + std::string((*group)[i]);
  return key;
}

}  // namespace fp4kit
