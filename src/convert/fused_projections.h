#pragma once
// Sibling projections the serving engines load into one fused GEMM with one global scale and one
// input scale, so convert gives both halves the same weight_scale_2 (from the larger amax) and the
// same input_scale (from the larger input amax): w1/w3 of an expert (routed or shared), wq_a/wkv of
// DeepSeek V4's attention (vLLM's fused_wqa_wkv), and the same pairs under Hugging Face names
// (gate_proj/up_proj, q_a_proj/kv_a_proj_with_mqa). Every fused group of V4 is a pair; q/k/v
// (three members) does not occur in it.
#include <string>

namespace fp4kit {

// The module of the other half of a fused pair ("...attn.wkv" for "...attn.wq_a" and back,
// "...w3" for "...w1"); "" for a module fused with nothing (w2, wq_b, wo_a...).
std::string fused_partner_of(const std::string& module);

}  // namespace fp4kit
