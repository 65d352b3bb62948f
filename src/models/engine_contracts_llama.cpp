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
           {"self_attn.qkv_proj (QKVParallelLinear, shards q|k|v)", "self_attn.qkv_proj (stacked q_proj|k_proj|v_proj)",
            "self_attn.qkv_proj (q_proj|k_proj|v_proj)"}},
          {R"(.*\.mlp\.(?:gate|up)_proj)",
           {"mlp.gate_up_proj (MergedColumnParallelLinear, shards gate_proj|up_proj)", "mlp.gate_up_proj (stacked gate_proj|up_proj)",
            "mlp.gate_up_proj (gate_proj|up_proj)"}},
          {R"(.*\.mlp\.experts\.\d+\.(?:gate|up)_proj)",
           {"mlp.experts.w13_* (FusedMoE, [E, 2] per-tensor scales)", "mlp.experts.w13_* (FusedMoE, [E, 2] per-tensor scales)",
            "mlp.experts w3_w1 (fused MoE, gate_proj -> w1, up_proj -> w3)"}},
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
                  {"vllm-project/vllm", "vllm/model_executor/models/qwen3_moe.py", "2e0831b0ab951c8896d4dd5d6cb9c3350a4574de",
                   "Qwen3MoeModel.load_weights: stacked qkv_proj (q_proj|k_proj|v_proj) and gate_up_proj (gate_proj|up_proj), "
                   "experts through get_expert_mapping (gate_proj/down_proj/up_proj -> FusedMoE w13_/w2_), params_dict[name]; "
                   "a .weight_scale / .input_scale / .bias with no parameter is skipped rather than a KeyError (verify "
                   "still reports it: the checkpoint claims a quantization the model does not build)"},
              },
              {{HfLayout::ModelOpt, true, true, ""}, {HfLayout::CompressedTensors, true, true, ""}},
              modelopt_inline_requirements(),
              modelopt_file_requirements(),
              compressed_tensors_requirements(),
              false,
              "",
              false,
              {},
              {},
              {},
          },
          HfEngineContract{
              Engine::Sglang,
              joined({{"sgl-project/sglang", "python/sglang/srt/models/llama.py", "bf7a0e237e8d5b2ce5402f5d2fafce31e012dbdf",
                "LlamaForCausalLM.load_weights: stacked .qkv_proj (.q_proj|.k_proj|.v_proj) and .gate_up_proj "
                "(.gate_proj|.up_proj), rotary_emb.inv_freq / cos_cached / sin_cached skipped, lm_head.weight skipped when "
                "tie_word_embeddings, an unknown name is logged and skipped"},
               {"sgl-project/sglang", "python/sglang/srt/models/qwen3_moe.py", "e3d8e9aec2c7f120ad4d4c6e7ee08cc19346fdbd",
                "Qwen3MoeForCausalLM.load_weights: stacked qkv_proj and gate_up_proj, FusedMoE.make_expert_params_mapping "
                "(gate_proj/down_proj/up_proj -> experts.w13_/w2_), rotary_emb.inv_freq skipped, unknown names skipped"},
               {"sgl-project/sglang", "python/sglang/srt/layers/quantization/modelopt_quant.py", "faeb96856c4417d55695feec2f4d2463c8adb7fd",
                "the NVFP4 linear and FusedMoE parameters and the config fields, as in the DeepSeek V3 table"},
               {"sgl-project/sglang", "python/sglang/srt/configs/model_config.py", "001adf564fd332c285397a46a034ee2f93ba7515",
                "the quantization method chosen from config.json or hf_quant_config.json, as in the DeepSeek V3 table"},
               {"sgl-project/sglang", "python/sglang/srt/layers/quantization/compressed_tensors/schemes/",
                "0541d3be453b0bd7805430370133fc0710d57d77 (linear), 00c9967697dfaad2ff66db97280510f22d65ca92 (MoE)",
                "CompressedTensorsW4A4Fp4 and CompressedTensorsW4A4Nvfp4MoE parameters, as in the DeepSeek V3 table"}},
                     sglang_compressed_tensors_w4a16_sources()),
              {{HfLayout::ModelOpt, true, false,
                "SGLang's ModelOptFp4Config.from_config accepts quant_algo FP8 or NVFP4 only: W4A16_NVFP4 raises "
                "(modelopt_quant.py at faeb968)"},
               {HfLayout::CompressedTensors, true, true, ""}},
              sglang_modelopt_inline_requirements(),
              sglang_modelopt_file_requirements(),
              sglang_compressed_tensors_requirements(),
              false,
              "",
              false,
              {},
              {},
              {},
          },
          HfEngineContract{
              Engine::Trtllm,
              joined({{"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/models/checkpoints/hf/weight_mapper.py", "f59aed070dabff4761d70e47c90fd761776c1bac",
                "HfWeightMapper: qkv_proj = [q_proj, k_proj, v_proj], gate_up_proj = [gate_proj, up_proj], lm_head skipped "
                "when tie_word_embeddings"},
               {"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/models/checkpoints/hf/qwen2_moe_weight_mapper.py",
                "7a1198904a380af40fc09862bb5fd6b1131c3f7e",
                "MoE modules: expert tensors renamed gate_proj -> w1, up_proj -> w3, down_proj -> w2 (Qwen3MoeHfWeightMapper, "
                "qwen3_moe_weight_mapper.py at 4dfeee6c04a4c75a8a10e67f64c782cfce0ad830, derives from it)"},
               {"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/modules/linear.py", "ed53795b33fc139493f762a1c6c53f691cf52d38",
                "NVFP4LinearMethod parameters; fused shards must have equal input_scale and weight_scale_2 (asserted)"},
               {"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/modules/fused_moe/quantization.py", "a98a9061d72f6fd39f5d055ebdd2c6878a100e2c",
                "NVFP4FusedMoEMethod, as in the DeepSeek V3 table"}},
                     joined(trtllm_modelopt_w4a16_sources(), trtllm_compressed_tensors_sources())),
              {{HfLayout::ModelOpt, true, true, ""}, {HfLayout::CompressedTensors, false, false, kTrtllmCompressedTensorsWhy, true}},
              trtllm_modelopt_requirements(),
              trtllm_modelopt_requirements(),
              {},
              false,
              "",
              false,
              {},
              {},
              kTrtllmW4a16InputScaleWhy,
          },
      },
      llama_modules,
  };
  return contract;
}

}  // namespace fp4kit
