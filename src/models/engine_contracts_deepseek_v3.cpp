// The DeepSeek V3 (and V3.2) loader contracts of vLLM, SGLang and TensorRT-LLM for Hugging Face
// named NVFP4 checkpoints in ModelOpt's general layout or compressed-tensors'. Written from the
// sources listed in each contract; what could not be confirmed at a source says so.
#include <stdexcept>
#include <string>

#include "models/engine_contract.h"
#include "models/hf_loader_modules.h"

namespace fp4kit {

namespace {

// vLLM's DeepseekV2Model / DeepseekV2DecoderLayer / DeepseekV2MLAAttention / DeepseekV2MoE, as
// config.json sizes them. The MTP layer (index num_hidden_layers) is not part of this model.
std::vector<LoaderModule> deepseek_v3_modules(const nlohmann::json& c, const HfEngineContract& engine) {
  const int64_t hidden = config_size(c, "hidden_size", {}, kMostWidth), vocab = config_size(c, "vocab_size", {}, 10 * kMostWidth);
  const int64_t layers = config_size(c, "num_hidden_layers", {}, kMostLayers), heads = config_size(c, "num_attention_heads", {}, kMostWidth);
  const int64_t q_lora = config_size(c, "q_lora_rank", 0, kMostWidth), kv_lora = config_size(c, "kv_lora_rank", {}, kMostWidth);
  const int64_t nope = config_size(c, "qk_nope_head_dim", {}, kMostWidth), rope = config_size(c, "qk_rope_head_dim", {}, kMostWidth);
  const int64_t v_dim = config_size(c, "v_head_dim", {}, kMostWidth), inter = config_size(c, "intermediate_size", {}, kMostWidth);
  const int64_t experts = config_size(c, "n_routed_experts", 0, kMostExperts), shared = config_size(c, "n_shared_experts", 0, 64);
  const int64_t moe_inter = config_size(c, "moe_intermediate_size", 0, kMostWidth);
  const int64_t first_dense = config_size(c, "first_k_dense_replace", 0, kMostLayers), freq = config_size(c, "moe_layer_freq", 1, kMostLayers);
  check_expert_count(layers, experts);
  const bool tied = c.value("tie_word_embeddings", false) == true;
  const bool gate_bias = !engine.gate_bias_needs_noaux_tc || c.value("topk_method", nlohmann::json()) == "noaux_tc";
  const bool indexer = c.contains("index_topk");  // V3.2's sparse-attention indexer
  const int64_t index_heads = indexer ? config_size(c, "index_n_heads", {}, kMostWidth) : 0;
  const int64_t index_dim = indexer ? config_size(c, "index_head_dim", {}, kMostWidth) : 0;

  ModuleList m;
  m.model_ends(vocab, hidden, tied);
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    m.layer_norms(p, hidden);
    if (q_lora > 0) {
      m.linear(p + "self_attn.q_a_proj", q_lora, hidden);
      m.plain(p + "self_attn.q_a_layernorm.weight", {q_lora});
      m.linear(p + "self_attn.q_b_proj", heads * (nope + rope), q_lora);
    } else {
      m.linear(p + "self_attn.q_proj", heads * (nope + rope), hidden);
    }
    m.linear(p + "self_attn.kv_a_proj_with_mqa", kv_lora + rope, hidden);
    m.plain(p + "self_attn.kv_a_layernorm.weight", {kv_lora});
    m.linear(p + "self_attn.kv_b_proj", heads * (nope + v_dim), kv_lora);
    m.linear(p + "self_attn.o_proj", hidden, heads * v_dim);
    if (indexer) {
      m.linear(p + "self_attn.indexer.wq_b", index_heads * index_dim, q_lora);
      m.linear(p + "self_attn.indexer.wk", index_dim, hidden);
      m.plain(p + "self_attn.indexer.k_norm.weight", {index_dim});
      m.plain(p + "self_attn.indexer.k_norm.bias", {index_dim});
      m.linear(p + "self_attn.indexer.weights_proj", index_heads, hidden);
    }
    const bool moe = experts > 0 && l >= first_dense && freq > 0 && l % freq == 0;
    if (!moe) {
      m.gated_mlp(p + "mlp.", inter, hidden);
      continue;
    }
    m.routed_experts(p + "mlp.", experts, moe_inter, hidden);
    if (gate_bias) m.plain(p + "mlp.gate.e_score_correction_bias", {experts});
    if (shared > 0) m.gated_mlp(p + "mlp.shared_experts.", moe_inter * shared, hidden);
  }
  return m.take();
}

constexpr std::string_view kV2Model = "vllm/model_executor/models/deepseek_v2.py";
constexpr std::string_view kV2ModelCommit = "002d6073aa034d4f5545d45021b0e56d1f3c3593";
constexpr std::string_view kModelOpt = "vllm/model_executor/layers/quantization/modelopt.py";
constexpr std::string_view kModelOptCommit = "00155cdecca722d98e34234c3d172725b7720b7d";

}  // namespace

const HfFamilyContract& deepseek_v3_contract() {
  static const HfFamilyContract contract = {
      "DeepSeek V3",
      {"deepseek_v3", "deepseek_v32", "kimi_k2"},
      {
          {R"(.*\.self_attn\.(?:q_a_proj|kv_a_proj_with_mqa))",
           {"self_attn.fused_qkv_a_proj (MergedColumnParallelLinear, shards q_a_proj|kv_a_proj_with_mqa)",
            "self_attn.fused_qkv_a_proj_with_mqa (ReplicatedLinear of q_a_proj|kv_a_proj_with_mqa)",
            "self_attn.kv_a_proj_with_mqa (fused_a: q_a_proj|kv_a_proj_with_mqa concatenated)"}},
          {R"(.*\.mlp\.(?:shared_experts\.)?(?:gate|up)_proj)",
           {"mlp.gate_up_proj (MergedColumnParallelLinear, shards gate_proj|up_proj)", "mlp.gate_up_proj (stacked gate_proj|up_proj)",
            "mlp.gate_up_proj (GatedMLP, gate_proj|up_proj)"}},
          {R"(.*\.mlp\.experts\.\d+\.(?:gate|up)_proj)",
           {"mlp.experts.w13_* (FusedMoE, [E, 2] per-tensor scales)", "mlp.experts.w13_* (FusedMoE, [E, 2] per-tensor scales)",
            "mlp.experts w3_w1 (fused MoE, gate_proj -> w1, up_proj -> w3)"}},
          {R"(.*\.self_attn\.indexer\.(?:wk|weights_proj))", {"self_attn.indexer.wk_weights_proj (shards wk|weights_proj)", "", ""}},
      },
      {
          HfEngineContract{
              Engine::Vllm,
              {
                  {"vllm-project/vllm", kV2Model, kV2ModelCommit,
                   "DeepseekV2Model.load_weights: stacked gate_up_proj (gate_proj|up_proj), fused_qkv_a_proj "
                   "(q_a_proj|kv_a_proj_with_mqa) when q_lora_rank is set, wk_weights_proj (V3.2 indexer wk|weights_proj), "
                   "expert mapping gate_proj/up_proj/down_proj -> experts.w13_/w2_, layers >= num_hidden_layers skipped "
                   "(get_spec_layer_idx_from_weight_name), rotary_emb.inv_freq skipped, params_dict[name] (an unknown name is "
                   "a KeyError); DeepseekV2MoE creates gate.e_score_correction_bias (F32 [E]) only when topk_method is noaux_tc"},
                  {"vllm-project/vllm", kModelOpt, kModelOptCommit,
                   "ModelOptNvFp4Config: quant_algo from config.json quantization_config (ignore) or hf_quant_config.json "
                   "(quantization.exclude_modules, group_size, kv_cache_quant_algo required); ModelOptNvFp4LinearMethod: weight "
                   "U8 [N, K/2], weight_scale E4M3 [N, K/group], weight_scale_2 and input_scale F32 [shards] (the max is kept); "
                   "W4A16: a placeholder input_scale; ModelOptNvFp4FusedMoE: w13_weight_scale_2 / w13_input_scale [E, 2], "
                   "w2_* [E], w13 uses w1's weight_scale_2"},
                  {"vllm-project/vllm", "vllm/model_executor/layers/quantization/compressed_tensors/schemes/compressed_tensors_w4a4_nvfp4.py",
                   "85f1f913cf8d26e0c6ca0ad09792cb45470069bf",
                   "CompressedTensorsW4A4Fp4: weight_packed U8 [N, K/2], weight_scale E4M3 [N, K/16], weight_global_scale and "
                   "input_global_scale F32 [shards] (the max is kept)"},
                  {"vllm-project/vllm", "vllm/model_executor/layers/quantization/compressed_tensors/schemes/compressed_tensors_w4a16_nvfp4.py",
                   "17b6501a6ce929d83d4b5c1d408adf0ae4a610f8",
                   "CompressedTensorsW4A16Fp4: weight_packed, weight_scale, weight_global_scale; no input_global_scale parameter"},
              },
              {{HfLayout::ModelOpt, true, true, ""}, {HfLayout::CompressedTensors, true, true, ""}},
              modelopt_inline_requirements(),
              modelopt_file_requirements(),
              compressed_tensors_requirements(),
              true,
              "DeepseekV2Model.load_weights skips the MTP layer (model.layers.<num_hidden_layers>, "
              "get_spec_layer_idx_from_weight_name); the MTP draft model loads it, whose contract is not tabled",
              true,
              {},
              {},
              {},
          },
          HfEngineContract{
              Engine::Sglang,
              joined({{"sgl-project/sglang", "python/sglang/srt/models/deepseek_v2.py", "3e4a39ee73308590c5c753108bdcb8d333f7f1c6 (stored copy)",
                "DeepseekV2AttentionMLA: fused_qkv_a_proj_with_mqa ReplicatedLinear(q_lora_rank + kv_lora_rank + "
                "qk_rope_head_dim) with the quant config when q_lora_rank is set, packed_modules_mapping "
                "fused_qkv_a_proj_with_mqa = [q_a_proj, kv_a_proj_with_mqa]; lm_head tied to embed_tokens when "
                "tie_word_embeddings"},
               {"sgl-project/sglang", "python/sglang/srt/models/deepseek_common/deepseek_weight_loader.py",
                "29bd4e859f6ef92f5248fd8c3d4ba681f8d19028",
                "DeepseekV2WeightLoaderMixin.do_load_weights: stacked gate_up_proj (gate_proj|up_proj), "
                "FusedMoE.make_expert_params_mapping (gate_proj/up_proj/down_proj -> experts.w13_/w2_), q_a_proj and "
                "kv_a_proj_with_mqa tensors cached by name and loaded into fused_qkv_a_proj_with_mqa (two 0-d scales: "
                "q_a_proj's is kept; anything else is concatenated on dim 0), without NextN the layers >= "
                "num_hidden_layers are skipped (when num_nextn_predict_layers > 0), rotary_emb.inv_freq skipped, an "
                "unknown name is logged and skipped; post_load_weights splits kv_b_proj.weight into w_kc / w_vc for "
                "the absorbed MLA and converts only FP8 and INT8 weights (an NVFP4 U8 weight is used as it is)"},
               {"sgl-project/sglang", "python/sglang/srt/layers/quantization/modelopt_quant.py", "faeb96856c4417d55695feec2f4d2463c8adb7fd",
                "ModelOptFp4Config.from_config (flat config.json form or hf_quant_config.json; FP8 or NVFP4 only); "
                "ModelOptFp4LinearMethod: weight U8 [N, K/2], weight_scale E4M3 [N, K/group_size], input_scale and "
                "weight_scale_2 F32 [shards] (the max is kept); ModelOptNvFp4FusedMoEMethod: w13_weight_scale_2 / "
                "w13_input_scale [E, 2], w2_* [E], w13 uses w1's weight_scale_2 (a warning when w3's differs)"},
               {"sgl-project/sglang", "python/sglang/srt/configs/model_config.py", "001adf564fd332c285397a46a034ee2f93ba7515",
                "_parse_quant_hf_config: a config.json quantization_config with no quant_method or quant_method modelopt is "
                "parsed as ModelOpt's (quant_algo containing FP4 -> modelopt_fp4, FP8 -> modelopt_fp8, MIXED_PRECISION -> "
                "modelopt_mixed or w4afp8); any other quant_method (compressed-tensors) is kept; hf_quant_config.json is read "
                "only when config.json has neither quantization_config nor compression_config"},
               {"sgl-project/sglang", "python/sglang/srt/layers/linear.py", "0079fcc18b3ee44bfeaaea8a9268c1d50b57b3e1",
                "ReplicatedLinear.weight_loader reshapes a 0-d tensor to [1] and asserts param.size() == "
                "loaded_weight.size()"},
               {"sgl-project/sglang", "python/sglang/srt/layers/quantization/compressed_tensors/schemes/compressed_tensors_w4a4_nvfp4.py",
                "0541d3be453b0bd7805430370133fc0710d57d77",
                "CompressedTensorsW4A4Fp4.create_weights: weight_packed U8 [N, K/2], weight_scale E4M3 [N, K/16], "
                "weight_global_scale and input_global_scale F32 [shards] (the max is kept)"},
               {"sgl-project/sglang", "python/sglang/srt/layers/quantization/compressed_tensors/schemes/compressed_tensors_w4a4_nvfp4_moe.py",
                "00c9967697dfaad2ff66db97280510f22d65ca92",
                "CompressedTensorsW4A4Nvfp4MoE.create_weights: w13_/w2_weight_packed U8, w13_/w2_weight_scale E4M3 [.., K/16], "
                "w13_weight_global_scale / w13_input_global_scale [E, 2], w2_* [E]; w13 uses w1's global scale (a warning "
                "when w3's differs); both schemes exported by schemes/__init__.py at 00dcfc174280214076a7838ffd88eab1fdac1bf9, "
                "which has no NVFP4 W4A16 scheme (later versions add them, listed below)"}},
                     sglang_compressed_tensors_w4a16_sources()),
              {{HfLayout::ModelOpt, true, false,
                "SGLang's ModelOptFp4Config.from_config accepts quant_algo FP8 or NVFP4 only: W4A16_NVFP4 raises "
                "(modelopt_quant.py at faeb968)"},
               {HfLayout::CompressedTensors, true, true, ""}},
              sglang_modelopt_inline_requirements(),
              sglang_modelopt_file_requirements(),
              sglang_compressed_tensors_requirements(),
              true,
              "do_load_weights without NextN skips the MTP layer (model.layers.<num_hidden_layers>); the NextN draft "
              "model loads it, whose contract is not tabled",
              false,
              {{R"(.*\.self_attn\.kv_b_proj)",
                "post_load_weights takes self_attn.kv_b_proj.weight as the MLA matrix it splits into w_kc / w_vc and "
                "converts only FP8 and INT8 weights: a packed NVFP4 weight is not dequantized and its scales are unused "
                "(deepseek_weight_loader.py at 29bd4e8)"}},
              {{R"(.*\.self_attn\.(?:q_a_proj|kv_a_proj_with_mqa))",
                "do_load_weights loads q_a_proj and kv_a_proj_with_mqa into fused_qkv_a_proj_with_mqa, a ReplicatedLinear with "
                "one per-tensor scale slot: two 0-d scales load as q_a_proj's, anything else is torch.cat into two values "
                "(or fails to concatenate a 0-d with a [1]) and ReplicatedLinear.weight_loader asserts equal sizes "
                "(deepseek_weight_loader.py at 29bd4e8, linear.py at 0079fcc)"}},
              {},
          },
          HfEngineContract{
              Engine::Trtllm,
              joined({{"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/models/modeling_deepseekv3.py", "a43cf9e363d5657061b5ce0e12f3d993a08d8158",
                "DeepseekV3WeightLoader.load_weights walks the model's modules and takes their tensors by name (checkpoint "
                "tensors no module asks for are never read): params_map gate_up_proj = [gate_proj, up_proj]; experts "
                "renamed gate_proj -> w1, up_proj -> w3, down_proj -> w2; self_attn.kv_a_proj_with_mqa is fused_a, the "
                "q_a_proj and kv_a_proj_with_mqa '.weight' concatenated (and FP8 weight_scale_inv), no NVFP4 scale read; "
                "kv_b_proj reads '.weight' and, when its module is quantized, '.weight_scale_inv' (a KeyError for "
                "NVFP4); DeepseekV3Gate always creates e_score_correction_bias and its load_weights reads it; "
                "DeepseekV3Model builds num_hidden_layers layers, the MTP layers only with MTP speculative decoding"},
               {"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/modules/linear.py", "ed53795b33fc139493f762a1c6c53f691cf52d38",
                "NVFP4LinearMethod: weight [N, K/2] FP4x2, weight_scale E4M3 (asserted), input_scale and weight_scale_2 "
                "per module; load_weight_scales asserts that fused shards (qkv_proj, gate_up_proj) have equal input_scale "
                "and equal weight_scale_2, and computes alpha from input_scale (no weight-only path)"},
               {"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/modules/fused_moe/quantization.py", "a98a9061d72f6fd39f5d055ebdd2c6878a100e2c",
                "NVFP4FusedMoEMethod: per expert '<e>.w1/w2/w3' weight, weight_scale, weight_scale_2, input_scale read by "
                "name; w1 and w3 input_scale asserted equal; w1/w3 weight_scale_2 that differ are replaced by their max "
                "with an accuracy warning"},
               {"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/model_config.py", "1a0dc5f70054f66d892df6a964996fc5ead6f81e",
                "ModelOpt quantization from hf_quant_config.json (quant_algo, group_size, exclude_modules)"}},
                     joined(trtllm_modelopt_w4a16_sources(), trtllm_compressed_tensors_sources())),
              {{HfLayout::ModelOpt, true, true, ""}, {HfLayout::CompressedTensors, false, false, kTrtllmCompressedTensorsWhy, true}},
              trtllm_modelopt_requirements(),
              trtllm_modelopt_requirements(),
              {},
              true,
              "DeepseekV3Model builds num_hidden_layers decoder layers; model.layers.<num_hidden_layers> is loaded only for "
              "MTP speculative decoding (modeling_deepseekv3.py at a43cf9e), whose contract is not tabled",
              false,
              {{R"(.*\.self_attn\.(?:q_a_proj|kv_a_proj_with_mqa))",
                "DeepseekV3WeightLoader copies the '.weight' of q_a_proj and kv_a_proj_with_mqa into fused_a "
                "(self_attn.kv_a_proj_with_mqa) and reads no NVFP4 scale (modeling_deepseekv3.py at a43cf9e)"},
               {R"(.*\.self_attn\.kv_b_proj)",
                "DeepseekV3WeightLoader reads kv_b_proj '.weight' and, for a quantized module, '.weight_scale_inv' "
                "(modeling_deepseekv3.py at a43cf9e)"}},
              {},
              kTrtllmW4a16InputScaleWhy,
          },
      },
      deepseek_v3_modules,
  };
  return contract;
}

}  // namespace fp4kit
