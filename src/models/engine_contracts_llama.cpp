// The Llama-like loader contracts (LlamaForCausalLM, and Qwen3-MoE's experts) of vLLM, SGLang and
// TensorRT-LLM for NVFP4 checkpoints in ModelOpt's general layout or compressed-tensors'. Written
// from the sources listed in each contract; what could not be confirmed at a source says so.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "models/engine_contract.h"
#include "models/hf_loader_modules.h"

namespace fp4kit {

namespace {

bool listed(const nlohmann::json& c, const char* key, int64_t value) {
  const auto it = c.find(key);
  return it != c.end() && it->is_array() && std::find(it->begin(), it->end(), nlohmann::json(value)) != it->end();
}

// LlamaModel / LlamaDecoderLayer (and Qwen3MoeDecoderLayer: q_norm / k_norm, sparse MLP layers), as
// config.json sizes them.
std::vector<LoaderModule> llama_modules(const nlohmann::json& c, const HfEngineContract&) {
  const int64_t hidden = config_size(c, "hidden_size", {}, kMostWidth), vocab = config_size(c, "vocab_size", {}, 10 * kMostWidth);
  const int64_t layers = config_size(c, "num_hidden_layers", {}, kMostLayers), heads = config_size(c, "num_attention_heads", {}, kMostWidth);
  if (heads == 0) throw std::runtime_error("config.json num_attention_heads is 0");
  const int64_t kv_heads = config_size(c, "num_key_value_heads", heads, kMostWidth);
  const int64_t head_dim = config_size(c, "head_dim", hidden / heads, kMostWidth);
  const int64_t inter = config_size(c, "intermediate_size", {}, kMostWidth);
  const bool qwen3_moe = c.value("model_type", "") == "qwen3_moe";
  const int64_t experts = qwen3_moe ? config_size(c, "num_experts", config_size(c, "num_local_experts", 0, kMostExperts), kMostExperts) : 0;
  const int64_t moe_inter = experts > 0 ? config_size(c, "moe_intermediate_size", {}, kMostWidth) : 0;
  const int64_t sparse_step = qwen3_moe ? config_size(c, "decoder_sparse_step", 1, kMostLayers) : 1;
  check_expert_count(layers, experts);
  const bool tied = c.value("tie_word_embeddings", false) == true;
  const bool bias = c.value("attention_bias", false) == true;

  ModuleList m;
  m.model_ends(vocab, hidden, tied);
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    m.layer_norms(p, hidden);
    m.linear(p + "self_attn.q_proj", heads * head_dim, hidden);
    m.linear(p + "self_attn.k_proj", kv_heads * head_dim, hidden);
    m.linear(p + "self_attn.v_proj", kv_heads * head_dim, hidden);
    m.linear(p + "self_attn.o_proj", hidden, heads * head_dim);
    if (bias)
      for (const char* proj : {"q_proj", "k_proj", "v_proj"})
        m.plain(p + "self_attn." + proj + ".bias", {std::string(proj) == "q_proj" ? heads * head_dim : kv_heads * head_dim});
    if (qwen3_moe) {
      m.plain(p + "self_attn.q_norm.weight", {head_dim});
      m.plain(p + "self_attn.k_norm.weight", {head_dim});
    }
    const bool sparse = experts > 0 && !listed(c, "mlp_only_layers", l) && sparse_step > 0 && (l + 1) % sparse_step == 0;
    if (sparse) m.routed_experts(p + "mlp.", experts, moe_inter, hidden);
    else m.gated_mlp(p + "mlp.", inter, hidden);
  }
  return m.take();
}

}  // namespace

const HfFamilyContract& llama_contract() {
  static const HfFamilyContract contract = {
      "Llama-like",
      {"llama", "qwen3_moe"},
      {
          {R"(.*\.self_attn\.[qkv]_proj)",
           {"self_attn.qkv_proj (QKVParallelLinear, shards q|k|v)", "self_attn.qkv_proj (not confirmed at a source)",
            "self_attn.qkv_proj (not confirmed at a source)"}},
          {R"(.*\.mlp\.(?:gate|up)_proj)",
           {"mlp.gate_up_proj (MergedColumnParallelLinear, shards gate_proj|up_proj)", "mlp.gate_up_proj (not confirmed at a source)",
            "mlp.gate_up_proj (not confirmed at a source)"}},
          {R"(.*\.mlp\.experts\.\d+\.(?:gate|up)_proj)",
           {"mlp.experts.w13_* (FusedMoE, [E, 2] per-tensor scales)", "mlp.experts.w13_* (FusedMoE; not confirmed at a source)",
            "mlp.experts w1|w3 (fused MoE; not confirmed at a source)"}},
      },
      {
          HfEngineContract{
              Engine::Vllm,
              {
                  {"vllm-project/vllm", "vllm/model_executor/models/llama.py", "e06c9ba2a6ea923a84add30f5dafaea126429b81",
                   "LlamaModel.load_weights: stacked .qkv_proj (.q_proj|.k_proj|.v_proj) and .gate_up_proj "
                   "(.gate_proj|.up_proj), rotary_emb.inv_freq / cos_cached / sin_cached skipped, params_dict[name]; "
                   "LlamaForCausalLM skips lm_head. when tie_word_embeddings"},
                  {"vllm-project/vllm", "vllm/model_executor/layers/quantization/modelopt.py", "00155cdecca722d98e34234c3d172725b7720b7d",
                   "the NVFP4 linear and FusedMoE parameters, as in the DeepSeek V3 table"},
                  {"vllm-project/vllm", "vllm/model_executor/models/qwen3_moe.py", "(not read)",
                   "Qwen3-MoE experts through FusedMoE with gate_proj/up_proj/down_proj, router mlp.gate, q_norm/k_norm: "
                   "taken to follow deepseek_v2.py's expert mapping, not confirmed at a source"},
              },
              {{HfLayout::ModelOpt, true, true, ""}, {HfLayout::CompressedTensors, true, true, ""}},
              modelopt_inline_requirements(),
              modelopt_file_requirements(),
              compressed_tensors_requirements(),
              false,
              "",
              false,
          },
          HfEngineContract{
              Engine::Sglang,
              {{"sgl-project/sglang", "python/sglang/srt/models/llama.py", "(not read)",
                "not read at source: SGLang's Llama is taken to fuse qkv_proj and gate_up_proj as vLLM's does, and its "
                "modelopt_fp4 method to create vLLM's NVFP4 parameters"}},
              {{HfLayout::ModelOpt, true, false,
                "SGLang's modelopt_fp4 method is known for NVFP4 (W4A4) checkpoints; how it loads W4A16_NVFP4 is not tabled"},
               {HfLayout::CompressedTensors, false, false, "how SGLang loads compressed-tensors NVFP4 is not tabled"}},
              modelopt_inline_requirements(),
              modelopt_file_requirements(),
              {},
              false,
              "",
              false,
          },
          HfEngineContract{
              Engine::Trtllm,
              {{"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/models/modeling_llama.py", "(not read)",
                "not read at source: fused qkv_proj and gate_up_proj, NVFP4 parameters as ModelOpt exports them, "
                "quantization from hf_quant_config.json"}},
              {{HfLayout::ModelOpt, true, false, "how TensorRT-LLM loads W4A16_NVFP4 is not tabled"},
               {HfLayout::CompressedTensors, false, false, "TensorRT-LLM's loading of compressed-tensors NVFP4 is not tabled"}},
              trtllm_modelopt_requirements(),
              trtllm_modelopt_requirements(),
              {},
              false,
              "",
              false,
          },
      },
      llama_modules,
  };
  return contract;
}

}  // namespace fp4kit
