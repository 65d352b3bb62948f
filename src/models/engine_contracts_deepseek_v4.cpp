// The DeepSeek V4 loader contracts of vLLM, SGLang and TensorRT-LLM for the layout of NVIDIA's
// DeepSeek-V4-*-NVFP4 releases (DS-native names, routed experts NVFP4, everything else as the
// official checkpoint). Written from the sources listed in each contract; what could not be
// confirmed at a source says so.
#include "models/engine_contract.h"

namespace fp4kit {

std::string_view engine_name(Engine e) {
  switch (e) {
    case Engine::Vllm: return "vllm";
    case Engine::Sglang: return "sglang";
    case Engine::Trtllm: return "trtllm";
  }
  return "?";
}

std::optional<Engine> engine_from_name(std::string_view name) {
  for (Engine e : kAllEngines)
    if (engine_name(e) == name) return e;
  return std::nullopt;
}

namespace {

// Decoder layers and MTP blocks share their module names.
#define BLOCK R"((?:layers|mtp)\.\d+\.)"

}  // namespace

// Columns: vLLM (vllm/models/deepseek_v4/nvidia/model.py: _make_deepseek_v4_weights_mapper,
// DeepseekV4Model.load_weights stacked_params_mapping, fused_moe_make_expert_params_mapping with
// w1/w2/w3; compressor.py: DeepseekCompressor), SGLang (python/sglang/srt/models/deepseek_v4.py:
// remap_weight_name_to_dpsk_hf_format, load_weights), TensorRT-LLM
// (tensorrt_llm/_torch/models/modeling_deepseekv4.py: _remap_deepseek_v4_checkpoint_keys and
// DeepseekV4WeightLoader, attention/compressor.py: Compressor).
const std::vector<LoadRow>& deepseek_v4_load_rows() {
  static const std::vector<LoadRow> rows = {
      // Routed experts first: they are most of the tensors.
      {BLOCK R"(ffn\.experts\.\d+\.w[13])", LoadFormat::RoutedExpert,
       {"ffn.experts.{proj}_{suffix} (FusedMoE, stacked w1|w3)", "mlp.experts.{proj}_{suffix} (FusedMoE, gate_proj|up_proj)",
        "mlp.experts.E.w1|w3.{suffix} (fused MoE)"}},
      {BLOCK R"(ffn\.experts\.\d+\.w2)", LoadFormat::RoutedExpert,
       {"ffn.experts.{proj}_{suffix} (FusedMoE)", "mlp.experts.{proj}_{suffix} (FusedMoE, down_proj)",
        "mlp.experts.E.w2.{suffix} (fused MoE)"}},
      {R"(embed\.weight)", LoadFormat::Plain, {"model.embed_tokens.weight", "model.embed_tokens.weight", "model.embed_tokens.weight"}},
      {R"(head\.weight)", LoadFormat::Plain, {"lm_head.weight", "lm_head.weight", "lm_head.weight"}},
      {R"(norm\.weight)", LoadFormat::Plain, {"model.norm.weight", "model.norm.weight", "model.norm.weight"}},
      {R"(hc_head_(?:base|fn|scale))", LoadFormat::Plain, {"model.hc_head_*", "model.hc_head_*", "model.hc_head_*"}},
      {BLOCK R"((?:attn_norm|ffn_norm)\.weight)", LoadFormat::Plain,
       {"attn_norm / ffn_norm (RMSNorm)", "input_layernorm / post_attention_layernorm", "input_layernorm / post_attention_layernorm"}},
      {BLOCK R"(hc_(?:attn|ffn)_(?:base|fn|scale))", LoadFormat::Plain, {"hc_attn_* / hc_ffn_* (F32)", "hc_attn_* / hc_ffn_*", "hc_attn_* / hc_ffn_* (load_flat_hc_weights)"}},
      {BLOCK R"(attn\.attn_sink)", LoadFormat::Plain, {"attn.attn_sink", "self_attn.attn_sink", "self_attn.mqa.attn_sink (F32, split over TP)"}},
      {BLOCK R"(attn\.(?:q_norm|kv_norm)\.weight)", LoadFormat::Plain, {"attn.q_norm / attn.kv_norm", "self_attn.q_norm / kv_norm", "self_attn.q_a_layernorm / kv_a_layernorm"}},
      {BLOCK R"(attn\.(?:wq_a|wkv))", LoadFormat::Fp8Block,
       {"attn.fused_wqa_wkv (stacked wq_a|wkv, FP8 block, weight_scale_inv)", "self_attn.wq_a / wkv (FP8 block, weight_scale_inv)",
        "self_attn.kv_a_proj_with_mqa (fused_a: q_a_proj|kv_a_proj_with_mqa .weight and .weight_scale_inv concatenated, "
        "FP8 block)"}},
      {BLOCK R"(attn\.(?:wq_b|wo_b))", LoadFormat::Fp8Block,
       {"attn.wq_b / wo_b (FP8 block)", "self_attn.wq_b / wo_b (FP8 block)", "self_attn.q_b_proj / o_b_proj (FP8 block, weight_scale_inv)"}},
      // TensorRT-LLM's o_a_proj is a parameter of the attention itself, not a Linear.
      {BLOCK R"(attn\.wo_a)", LoadFormat::Fp8Block,
       {"attn.wo_a (FP8 block)", "self_attn.wo_a (FP8 block)",
        "self_attn.o_a_proj (MLA parameter [o_groups*o_lora_rank, ..], FP8 block weight_scale_inv, a KeyError without it)"}},
      // The compressors' two projections become one BF16 parameter built without a quant config.
      {BLOCK R"(attn\.(?:indexer\.)?compressor\.(?:wkv|wgate)\.weight)", LoadFormat::Plain,
       {"compressor.fused_wkv_wgate.weight (BF16, quant_config=None)", "compressor.wkv_gate.weight (BF16, torch.cat of wkv|wgate)",
        "compressor wkv|wgate '.weight' fused at load (BF16)"}},
      {BLOCK R"(attn\.(?:indexer\.)?compressor\.(?:ape|norm\.weight))", LoadFormat::Plain,
       {"compressor.ape (F32) / compressor.norm", "compressor.ape / compressor.norm", "self_attn.(indexer.)compressor.ape / norm"}},
      {BLOCK R"(attn\.indexer\.wq_b)", LoadFormat::Fp8Block, {"attn.indexer.wq_b (FP8 block)", "self_attn.indexer.wq_b", "self_attn.indexer.wq_b (weight_scale_inv)"}},
      {BLOCK R"(attn\.indexer\.weights_proj\.weight)", LoadFormat::Plain,
       {"attn.indexer.weights_proj", "self_attn.indexer.weights_proj", "self_attn.indexer.weights_proj"}},
      {BLOCK R"(ffn\.gate\.(?:weight|bias|tid2eid))", LoadFormat::Plain,
       {"ffn.gate.weight / e_score_correction_bias / tid2eid", "mlp.gate.weight / e_score_correction_bias / topk.tid2eid",
        "mlp.gate.weight / e_score_correction_bias / tid2eid"}},
      {BLOCK R"(ffn\.shared_experts\.w[13])", LoadFormat::Fp8Block,
       {"ffn.shared_experts.gate_up_proj (stacked w1|w3, FP8 block)", "mlp.shared_experts.gate_up_proj (FP8 block)",
        "mlp.shared_experts.gate_up_proj (gate_proj|up_proj, FP8 block)"}},
      {BLOCK R"(ffn\.shared_experts\.w2)", LoadFormat::Fp8Block,
       {"ffn.shared_experts.down_proj (FP8 block)", "mlp.shared_experts.down_proj (FP8 block)",
        "mlp.shared_experts.down_proj (FP8 block)"}},
      // MTP-only modules: vLLM's main model skips mtp.* and its MTP draft model loads them;
      // SGLang's nextn model maps them under model.layers.<num_hidden_layers>.
      {R"(mtp\.\d+\.(?:e_proj|h_proj))", LoadFormat::Fp8Block, {"mtp e_proj / h_proj (FP8 block)", "e_proj / h_proj (weight_scale_inv)", "mtp e_proj / h_proj"}},
      {R"(mtp\.\d+\.(?:enorm|hnorm|norm)\.weight)", LoadFormat::Plain, {"mtp enorm / hnorm / norm", "enorm / hnorm / shared_head.norm", "mtp norms"}},
      {R"(mtp\.\d+\.hc_head_(?:base|fn|scale))", LoadFormat::Plain, {"mtp hc_head_*", "hc_head_*", "mtp hc_head_*"}},
  };
  return rows;
}

#undef BLOCK

namespace {

// Fields every engine's V4 path reads from config.json to build the model.
constexpr ConfigRequirement kModelType{"config.json", "/model_type", ConfigNeed::Equals, R"("deepseek_v4")",
                                       "selects the DeepSeek V4 model class and its FP8+NVFP4 quantization config"};
constexpr ConfigRequirement kCompressRatios{
    "config.json", "/compress_ratios", ConfigNeed::LayerList, "",
    "the attention indexes config.compress_ratios[layer_id] to build each layer's compressor and indexer "
    "(transformers 5.8 renamed it compress_rates; the engines read compress_ratios)"};
constexpr ConfigRequirement kRopeScaling{"config.json", "/rope_scaling", ConfigNeed::FlatObject, "",
                                         "rope parameters are read as one flat dict (rope_type, factor, beta_fast, ...)"};
constexpr ConfigRequirement kRopeParameters{
    "config.json", "/rope_parameters", ConfigNeed::FlatObject, "",
    "rope parameters are read as one flat dict (vLLM's build_deepseek_v4_rope at 8a8be3d indexes "
    "rope_parameters[\"rope_type\"]; a later version, 06d0369, also accepts {main, compress} nesting): only the "
    "flat form loads in every version read"};
constexpr ConfigRequirement kBlockSize{"config.json", "/quantization_config/weight_block_size", ConfigNeed::Equals, "[128,128]",
                                       "the FP8 linears (attention, shared experts) are built as 128x128 block-scaled"};
constexpr ConfigRequirement kScaleFmt{
    "config.json", "/quantization_config/scale_fmt", ConfigNeed::Equals, R"("ue8m0")",
    "vLLM builds whose DeepseekV4Attention does self.scale_fmt = config.quantization_config[\"scale_fmt\"] raise "
    "KeyError without it (seen in stored copies of earlier vLLM V4 attention code; attention.py at e6643ec no longer "
    "reads it)"};
constexpr ConfigRequirement kExpertDtype{"config.json", "/expert_dtype", ConfigNeed::AbsentOrEquals, R"("fp4")",
                                         "expert_dtype fp4 (the default) keeps the FP4-expert path and E8M0 linear scales"};
constexpr ConfigRequirement kMoeQuantAlgo{"config.json", "/quantization_config/moe_quant_algo", ConfigNeed::Equals, R"("NVFP4")",
                                          "routes the routed experts to the NVFP4 MoE method (else MXFP4)"};

}  // namespace

const EngineContract& deepseek_v4_contract(Engine engine) {
  static const std::array<EngineContract, 3> contracts = {
      EngineContract{
          Engine::Vllm,
          "deepseek_v4",
          {
              {"vllm-project/vllm", "vllm/models/deepseek_v4/nvidia/model.py", "3296c77fb95c3c40534ba47b9b47f2ea8f13612f",
               "name mapper (prefix model., .scale -> weight_scale / weight_scale_inv, head -> lm_head, gate.bias -> "
               "e_score_correction_bias, shared_experts.w2 -> down_proj), stacked gate_up_proj / fused_wqa_wkv / "
               "fused_wkv_wgate, expert mapping w1/w2/w3 -> w13_/w2_, mtp.* skipped by the main model, "
               "params_dict[name] (an unknown name is a KeyError)"},
              {"vllm-project/vllm", "vllm/models/deepseek_v4/compressor.py", "91fe05031300b02376cd39fd159f5e92472d0618",
               "DeepseekCompressor: ape F32 [ratio, coff*head_dim], fused_wkv_wgate MergedColumnParallelLinear with "
               "quant_config=None (BF16 weight only), norm; no kv_norm, no position_bias"},
              {"vllm-project/vllm", "vllm/models/deepseek_v4/quant_config.py", "234b8ebce4e4d840468f478f68a14c791802c545",
               "DeepseekV4FP8Config: quant_method fp8 + model_type deepseek_v4; RoutedExperts with expert_dtype fp4 and "
               "moe_quant_algo NVFP4 -> ModelOptNvFp4FusedMoE(group_size=16), else Mxfp4MoEMethod"},
              {"vllm-project/vllm", "vllm/models/deepseek_v4/attention.py", "e6643eca19ffbbc515e30ea8da0a7ad00b8b9698",
               "compress_ratio = max(1, config.compress_ratios[layer_id]); compressor when ratio > 1, indexer when 4; "
               "fused_wqa_wkv and wq_b/wo_a/wo_b with the quant config; indexer weights_proj with quant_config=None"},
              {"vllm-project/vllm", "vllm/models/deepseek_v4/common/rope.py",
               "8a8be3dcc35e02e60c940f7aff3aef8cc7524259 and 06d0369d75e060e83dffac3e0190ceff8fc37e12",
               "build_deepseek_v4_rope reads config.rope_parameters as one flat dict (8a8be3d); 06d0369 also takes "
               "{main, compress}"},
              {"vllm-project/vllm", "vllm/model_executor/layers/quantization/modelopt.py", "(not pinned: stored copies)",
               "ModelOptNvFp4FusedMoE.create_weights: w13_weight_scale_2 [E, 2], w2_weight_scale_2 [E], w13_input_scale "
               "[E, 2], w2_input_scale [E], block scales [.., K/group_size] E4M3"},
          },
          {kModelType,
           {"config.json", "/quantization_config/quant_method", ConfigNeed::OneOf, R"(["fp8","deepseek_v4_fp8"])",
            "DeepseekV4FP8Config.override_quantization_method fires only for fp8 / deepseek_v4_fp8"},
           kMoeQuantAlgo, kBlockSize, kScaleFmt, kExpertDtype, kCompressRatios, kRopeScaling, kRopeParameters},
          {"mtp."},
          "DeepseekV4ForCausalLM.load_weights uses AutoWeightsLoader(skip_substrs=[\"mtp.\"]); the MTP blocks load only "
          "into the MTP draft model of speculative decoding, whose contract is not tabled",
          16,
          true,
          "ModelOptNvFp4FusedMoE registers w13_input_scale [E, 2] and w2_input_scale [E] and the W4A4 GEMM reads them",
      },
      EngineContract{
          Engine::Sglang,
          "deepseek_v4",
          {
              {"sgl-project/sglang", "python/sglang/srt/models/deepseek_v4.py", "f8101ac7db91793fa174f5a5c710b58445f040aa",
               "remap_weight_name_to_dpsk_hf_format (.attn. -> .self_attn., .ffn. -> .mlp., w1/w2/w3 -> gate/down/up_proj, "
               ".scale -> weight_scale_inv), stacked gate_up_proj, FusedMoE.make_expert_params_mapping, compressor "
               "wkv/wgate '.weight' only concatenated into wkv_gate (any other suffix fails an assert), "
               "params_dict[name] for the rest"},
              {"sgl-project/sglang", "python/sglang/srt/model_loader/weight_utils.py",
               "merged PR #25820 (the diff in its review; the merged file is not stored)",
               "get_quant_config: a quantization_config with quant_method fp8 and moe_quant_algo NVFP4 (upper-cased) is a "
               "hybrid checkpoint whose NVFP4 MoE details (group_size, exclude_modules) come from the sibling "
               "hf_quant_config.json; the loader then wraps Fp8Config as HybridFp8NvFp4Config(Fp8Config, "
               "ModelOptFp4Config(group_size, exclude_modules + model.decoder.*)): FusedMoE layers get "
               "ModelOptNvFp4FusedMoEMethod (NVFP4 W4A4), every other layer Fp8Config's method (which checkpoints get "
               "the hybrid config is decided in model_config.py, next row)"},
              {"sgl-project/sglang", "python/sglang/srt/configs/model_config.py", "9a314bbb6002541928fbdfa72269fc6a43084b78",
               "ModelConfig.__init__ sets nvfp4_moe_meta (which makes the loader build HybridFp8NvFp4Config) only when "
               "config.json's quantization_config has quant_algo MIXED_PRECISION and moe_quant_algo NVFP4 (both compared "
               "upper-cased) and a group_size that is not null: group_size from there, exclude_modules from its ignore; "
               "hf_quant_config.json is not read for it, and _parse_quant_hf_config keeps quant_method fp8 (the file is "
               "read only without a config.json quantization_config). quant_algo NVFP4 with an exclude list leaves "
               "nvfp4_moe_meta None: plain Fp8Config, U8 experts as MXFP4"},
              {"sgl-project/sglang", "test/registered/unit/configs/test_model_config_nvfp4.py",
               "355dbc05b871e490bd4a4c9edc48ab4fa66d5fed (an earlier version)",
               "ModelConfig._extract_nvfp4_moe_meta reads hf_quant_config.json only: group_size from the NVFP4 entries of "
               "quantization.quantized_layers (awq_block_size, else group_size), exclude_modules (default []); None "
               "without the file, without quantized_layers or without an NVFP4 entry"},
              {"sgl-project/sglang", "python/sglang/srt/configs/model_config.py; python/sglang/srt/configs/deepseek_v4.py",
               "001adf564fd332c285397a46a034ee2f93ba7515; 008b79d2358b08adf9b6c879625030f890c8c4e2",
               "without the hybrid config, quant_method fp8 is Fp8Config and try_detect_fp4_experts takes U8 routed experts "
               "as MXFP4 (is_fp4_experts): the NVFP4 experts then meet MXFP4 parameters"},
              {"sgl-project/sglang", "python/sglang/srt/layers/quantization/modelopt_quant.py",
               "faeb96856c4417d55695feec2f4d2463c8adb7fd",
               "ModelOptNvFp4FusedMoEMethod.process_weights_after_loading: g1/g2 alphas and the activation quantization "
               "scale come from w13_input_scale / w2_input_scale (W4A4)"},
          },
          {kModelType,
           {"config.json", "/quantization_config/quant_method", ConfigNeed::Equals, R"("fp8")",
            "the hybrid FP8 + NVFP4 config is built only for quant_method fp8 (weight_utils.py, merged PR #25820); "
            "deepseek_v4_fp8 is no SGLang quantization method"},
           {"config.json", "/quantization_config/quant_algo", ConfigNeed::Equals, R"("MIXED_PRECISION")",
            "ModelConfig builds nvfp4_moe_meta, and so the hybrid FP8 + NVFP4 config, only when config.json's "
            "quantization_config quant_algo upper-cased is MIXED_PRECISION; NVFP4 (with or without an exclude list) "
            "leaves plain Fp8Config and the U8 experts are taken as MXFP4 (model_config.py at 9a314bb)"},
           kMoeQuantAlgo,
           {"config.json", "/quantization_config/group_size", ConfigNeed::Present, "",
            "nvfp4_moe_meta also needs config.json's quantization_config group_size (not null), which becomes the NVFP4 "
            "MoE group size; without it there is no hybrid config (model_config.py at 9a314bb)"},
           {"hf_quant_config.json", "/quantization/quantized_layers", ConfigNeed::Present, "",
            "earlier versions read the NVFP4 MoE group_size from hf_quant_config.json's NVFP4 quantized_layers entries "
            "instead; without them there is no hybrid config and the U8 experts are taken as MXFP4 "
            "(test_model_config_nvfp4.py at 355dbc0, deepseek_v4.py at 008b79d); model_config.py at 9a314bb no longer "
            "reads the file for it, so the table asks for both"},
           kBlockSize, kExpertDtype, kCompressRatios, kRopeScaling, kRopeParameters},
          {"mtp."},
          "load_weights (is_nextn=False) skips names starting with mtp; the nextn draft model loads them, its contract "
          "is not tabled",
          16,
          true,
          "ModelOptNvFp4FusedMoEMethod is W4A4: it quantizes activations with w13_input_scale / w2_input_scale, filled "
          "from the checkpoint (modelopt_quant.py at faeb968)",
      },
      EngineContract{
          Engine::Trtllm,
          "deepseek_v4",
          {
              {"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/models/modeling_deepseekv4.py",
               "e596d212f2b8c58fc326466b850c0dbdbc9bc9d9",
               "_remap_deepseek_v4_checkpoint_keys: wq_a -> q_a_proj, wkv -> kv_a_proj_with_mqa, wq_b -> q_b_proj, "
               "wo_a -> o_a_proj, wo_b -> o_b_proj, q_norm/kv_norm -> q_a_layernorm/kv_a_layernorm, .scale -> "
               "weight_scale_inv (routed experts: weight_scale), shared experts w1/w3/w2 -> gate/up/down_proj, "
               "compressor wkv/wgate '.weight' collected and fused, mtp.* -> model.layers.<num_hidden_layers>, "
               "then the loader's strict key lookup; compress_ratios read per layer (first 16000 characters read)"},
              {"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/models/modeling_deepseekv4.py",
               "02586bf0b0f59d29967bf4aa27d5714a0b4788f6",
               "DeepseekV4WeightLoader (whole file read): kv_a_proj_with_mqa is fused_a, q_a_proj and kv_a_proj_with_mqa "
               "'.weight' concatenated and, when kv_a_proj_with_mqa.weight_scale_inv exists, both weight_scale_inv "
               "concatenated (the NVFP4 branch only when the global quant config is NVFP4 and both weights are FP4); "
               "load_o_a_proj reads self_attn.o_a_proj ([o_groups, o_lora_rank, ..]) and its weight_scale_inv, raising "
               "KeyError for an FP8 weight without it, and dequantizes it to BF16 unless the parameter is FP8; attn_sink "
               "goes to mqa.attn_sink as F32, split over TP; q_b_proj / o_b_proj / indexer.wq_b are FP8 block Linears; "
               "indexer.wk and indexer.k_norm are synthesized (zeros / ones), not read; "
               "_normalize_deepseek_v4_nvfp4_mixed_precision_config: with a global MIXED_PRECISION quant config, NVFP4 "
               "routed-expert layer configs and config.json quantization_config quant_method fp8 with weight_block_size "
               "[128, 128], the non-expert modules are built FP8_BLOCK_SCALES (group 128, modules_to_not_convert "
               "excluded); otherwise the global config is left as it is"},
              {"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/model_config.py", "008e0af8980fc560003631ba4ac37828836a91c8",
               "from_pretrained: hf_quant_config.json is authoritative when present (_build_modelopt_quant_config: "
               "MIXED_PRECISION iterates quantized_layers; a file with quantized_layers and no quant_algo takes the global "
               "config from config.json, where quant_method fp8 with weight_block_size [128, 128] is FP8_BLOCK_SCALES); "
               "_set_deepseek_v4_routed_moe_quant_config gives every layer's mlp.experts QuantAlgo.NVFP4 with group 16 "
               "when the first routed expert weight is U8 (I8: MXFP4); without hf_quant_config.json, load_hf_quant_config "
               "takes config.json's quantization_config: a ModelOpt-marked one (is_modelopt_quant_config) goes to the "
               "ModelOpt builder, quant_method fp8 with weight_block_size [128, 128] (asserted) is FP8_BLOCK_SCALES group "
               "128, and the routed experts are set from the expert weight's dtype all the same"},
              {"NVIDIA/TensorRT-LLM", "tensorrt_llm/quantization/modelopt_config.py",
               "2edf354d4b92161efd50b10b71e8e20fb6c5925a (not the 008e0af version)",
               "is_modelopt_quant_config: quant_method starting with modelopt, or producer.name modelopt (as fp4kit and "
               "ModelOpt write config.json); the flat reader takes quant_algo, group_size, ignore and quantized_layers "
               "(absent: empty)"},
              {"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/attention_backend/sparse/deepseek_v4/compressor.py",
               "047098b74c51f488abcfcd72f7d4a988a56442f6",
               "Compressor: wkv_gate Linear [2*state_dim, hidden] with quant_config=None (model dtype), norm, ape F32 "
               "[compress_ratio, state_dim]"},
              {"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/modules/fused_moe/quantization.py", "a98a9061d72f6fd39f5d055ebdd2c6878a100e2c",
               "NVFP4FusedMoEMethod reads each expert's w1/w2/w3 weight, weight_scale, weight_scale_2 and input_scale by name"},
          },
          {kModelType,
           {"config.json", "/quantization_config/quant_method", ConfigNeed::Equals, R"("fp8")",
            "_normalize_deepseek_v4_nvfp4_mixed_precision_config builds the non-expert modules FP8 block-scaled only when "
            "config.json's quantization_config has quant_method fp8 (modeling_deepseekv4.py at 02586bf; "
            "load_hf_quant_config likewise, model_config.py at 008e0af); with another quant_method (vLLM's "
            "deepseek_v4_fp8 included) they keep the global MIXED_PRECISION config, which has no FP8 block scales"},
           // from_pretrained reads hf_quant_config.json only when it exists; without it config.json's
           // quantization_config is the global config (model_config.py at 008e0af).
           {"hf_quant_config.json", "/quantization/quant_algo", ConfigNeed::AbsentOrEquals, R"("MIXED_PRECISION")",
            "the file is authoritative when present: MIXED_PRECISION (NVIDIA's release) is resolved per module, a file "
            "without quant_algo takes the global config from config.json, and under any other global quant_algo the "
            "non-expert modules are not resolved to FP8 block scales (model_config.py at 008e0af, modeling_deepseekv4.py "
            "at 02586bf)",
            true},
           {"hf_quant_config.json", "/quantization/quantized_layers", ConfigNeed::Present, "",
            "_build_modelopt_quant_config iterates quantized_layers under MIXED_PRECISION, and a file without quant_algo "
            "is the layer-only form (model_config.py at 008e0af); the routed experts' NVFP4 config itself comes from "
            "the U8 dtype of the first routed expert weight",
            true},
           {"config.json", "/quantization_config/weight_block_size", ConfigNeed::Equals, "[128,128]",
            "the FP8 base config is resolved only for weight_block_size [128, 128] (modeling_deepseekv4.py at 02586bf)"},
           kCompressRatios, kRopeScaling, kRopeParameters},
          {"mtp."},
          "_remap_deepseek_v4_checkpoint_keys moves mtp.* to model.layers.<num_hidden_layers>, the MTP layer of "
          "speculative decoding, whose contract is not tabled",
          16,
          true,
          "model_config.py at 008e0af gives U8 routed experts QuantAlgo.NVFP4 (W4A4), whose NVFP4FusedMoEMethod reads "
          "each expert's input_scale (fused_moe/quantization.py at a98a906)",
      },
  };
  return contracts[static_cast<size_t>(engine)];
}

}  // namespace fp4kit
