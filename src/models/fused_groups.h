#pragma once
// Sibling projections the serving engines load into one fused GEMM with one global scale and one
// input scale, by the last component of the module name:
//  - w1/w3 of an expert (routed, shared, MTP; DeepSeek-native and Mixtral names) and gate_proj/up_proj
//    (Hugging Face names): vLLM's w13 of FusedMoE reads the first half's weight_scale_2 only, and
//    its gate_up_proj takes the larger of the two;
//  - wq_a/wkv (DeepSeek V4's fused_wqa_wkv) and q_a_proj/kv_a_proj_with_mqa (V3's fused_qkv_a_proj);
//  - q_proj/k_proj/v_proj (qkv_proj of Llama-like attention).
// A converter gives every member the same weight_scale_2 (from the largest amax) and input_scale
// (from the largest input amax); verify checks that they agree.
#include <string>
#include <string_view>
#include <vector>

namespace fp4kit {

// Every group's members as leaf names, e.g. {"q_proj", "k_proj", "v_proj"}.
const std::vector<std::vector<std::string_view>>& fused_leaf_groups();

// The modules fused with `module`, itself excluded, in the group's order ("...self_attn.k_proj"
// and "...v_proj" for "...self_attn.q_proj"); empty for a module fused with nothing (w2, o_proj...).
std::vector<std::string> fused_siblings_of(const std::string& module);

// The group a module belongs to: {"layers.0.ffn.experts.3", "w1/w3"} for "...3.w1"; empty strings
// if it is fused with nothing.
struct FusedGroupKey {
  std::string parent, members;
  auto operator<=>(const FusedGroupKey&) const = default;
};
FusedGroupKey fused_group_of(const std::string& module);

}  // namespace fp4kit
