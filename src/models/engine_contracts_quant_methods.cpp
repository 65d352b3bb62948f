// The config fields the engines' general NVFP4 quantization methods read (ModelOpt's general
// layout, compressed-tensors), shared by the DeepSeek V3 and Llama-like tables. vLLM's are read from
// vllm-project/vllm modelopt.py at 00155cdecca722d98e34234c3d172725b7720b7d.
#include "models/engine_contract.h"

namespace fp4kit {

const std::vector<ConfigRequirement>& modelopt_inline_requirements() {
  static const std::vector<ConfigRequirement> r = {
      {"config.json", "/quantization_config/quant_method", ConfigNeed::StartsWithNoCase, R"("modelopt")",
       "ModelConfig._verify_quantization lower-cases quant_method and asks the overrides in order; "
       "ModelOptNvFp4Config.override_quantization_method returns modelopt_fp4 for any quant_method starting with "
       "modelopt whose quant_algo holds FP4 (modelopt, modelopt_fp4, even modelopt_fp8), and modelopt_fp4 is a "
       "registered method (ModelOptNvFp4Config) in its own right; any other quant_method never reaches ModelOpt "
       "(vllm-project/vllm vllm/config/model.py at 0052a5b818980ce8a0477706aaf9f75bd5af72cd, modelopt.py "
       "_extract_modelopt_quant_algo, vllm/model_executor/layers/quantization/__init__.py at "
       "0034007debee2a009e030804f2cde7953aff78c6)"},
      {"config.json", "/quantization_config/quant_algo", ConfigNeed::OneOf, R"(["NVFP4","W4A16_NVFP4"])",
       "from_config raises \"Missing 'quant_algo'\"; NVFP4 builds ModelOptNvFp4LinearMethod, W4A16_NVFP4 the Marlin "
       "W4A16 method, anything else raises (modelopt.py)"},
  };
  return r;
}

const std::vector<ConfigRequirement>& modelopt_file_requirements() {
  static const std::vector<ConfigRequirement> r = {
      {"hf_quant_config.json", "/quantization/quant_algo", ConfigNeed::OneOf, R"(["NVFP4","W4A16_NVFP4"])",
       "the ModelOpt method is chosen from hf_quant_config.json's quantization.quant_algo when config.json has no "
       "quantization_config (modelopt.py get_config_filenames, from_config)"},
      {"hf_quant_config.json", "/quantization/group_size", ConfigNeed::Present, "",
       "ModelOptNvFp4Config._from_config raises without group_size, kv_cache_quant_algo and exclude_modules in "
       "hf_quant_config.json (modelopt.py)"},
      {"hf_quant_config.json", "/quantization/kv_cache_quant_algo", ConfigNeed::Present, "", "required by _from_config (modelopt.py)"},
      {"hf_quant_config.json", "/quantization/exclude_modules", ConfigNeed::Present, "", "required by _from_config (modelopt.py)"},
  };
  return r;
}

const std::vector<ConfigRequirement>& compressed_tensors_requirements() {
  static const std::vector<ConfigRequirement> r = {
      {"config.json", "/quantization_config/quant_method", ConfigNeed::Equals, R"("compressed-tensors")",
       "selects CompressedTensorsConfig, whose schemes CompressedTensorsW4A4Fp4 / W4A16Fp4 load NVFP4"},
      {"config.json", "/quantization_config/config_groups", ConfigNeed::Present, "",
       "CompressedTensorsConfig._quantization_scheme_map_from_config reads config.get(\"config_groups\", {}): each "
       "group's targets, weights and input_activations pick the scheme (NVFP4: tensor_group, float, 4 bits, group 16); "
       "without groups no Linear gets a scheme and the packed tensors have no parameter (vllm-project/vllm "
       "vllm/model_executor/layers/quantization/compressed_tensors/compressed_tensors.py at "
       "be696453ee1bf3b7a2f652cc457b340d5a20c88c)"},
  };
  return r;
}

// SGLang's method selection (sgl-project/sglang python/sglang/srt/configs/model_config.py at
// 001adf564fd332c285397a46a034ee2f93ba7515, QUANTIZATION_METHODS in
// python/sglang/srt/layers/quantization/__init__.py at 0116a682fcad45950388dc51d67a4f78721c00fa) and
// ModelOptFp4Config.from_config (python/sglang/srt/layers/quantization/modelopt_quant.py at
// faeb96856c4417d55695feec2f4d2463c8adb7fd).
const std::vector<ConfigRequirement>& sglang_modelopt_inline_requirements() {
  static const std::vector<ConfigRequirement> r = {
      {"config.json", "/quantization_config/quant_method", ConfigNeed::AbsentOrOneOf, R"(["modelopt","modelopt_fp4"])",
       "ModelConfig._parse_quant_hf_config reads a config.json quantization_config whose quant_method is absent or "
       "modelopt as ModelOpt's: a quant_algo containing FP4 becomes quant_method modelopt_fp4; any other quant_method "
       "is kept, and _verify_quantization takes it as the method unless an override_quantization_method claims it "
       "(model_config.py at 001adf5; ModelOptFp8Config's and ModelOptFp4Config's overrides fire only for --quantization "
       "modelopt, modelopt_quant.py at faeb968): modelopt_fp4 names ModelOptFp4Config (QUANTIZATION_METHODS, __init__.py "
       "at 0116a68), modelopt_fp8 ModelOptFp8Config, whose from_config raises for NVFP4"},
      {"config.json", "/quantization_config/quant_algo", ConfigNeed::Equals, R"("NVFP4")",
       "ModelOptFp4Config.from_config reads the flat config.json form when quant_algo is present and raises for "
       "anything but FP8 or NVFP4 (W4A16_NVFP4 included) (modelopt_quant.py at faeb968); it also needs a group_size, "
       "top-level or in the first config group, which this table does not look at"},
  };
  return r;
}

const std::vector<ConfigRequirement>& sglang_modelopt_file_requirements() {
  static const std::vector<ConfigRequirement> r = {
      {"hf_quant_config.json", "/quantization/quant_algo", ConfigNeed::Equals, R"("NVFP4")",
       "without a flat quant_algo, ModelOptFp4Config.from_config reads hf_quant_config.json quantization.quant_algo "
       "(a KeyError there is \"Cannot find 'quant_algo'\") and accepts FP8 or NVFP4 only (modelopt_quant.py at faeb968)"},
      {"hf_quant_config.json", "/quantization/group_size", ConfigNeed::Present, "",
       "common_group_size raises \"No group_size found in config\" (modelopt_quant.py at faeb968; it also accepts a "
       "top-level or config-group group_size, which ModelOpt's file does not use); kv_cache_quant_algo defaults to "
       "auto and exclude_modules to [], so SGLang needs neither"},
  };
  return r;
}

// SGLang's CompressedTensorsConfig: selected by config.json quant_method (QUANTIZATION_METHODS maps
// "compressed-tensors" to it, __init__.py at 0116a68, and _parse_quant_hf_config keeps config.json's
// quant_method, model_config.py at 001adf5).
const std::vector<ConfigRequirement>& sglang_compressed_tensors_requirements() {
  static const std::vector<ConfigRequirement> r = {
      {"config.json", "/quantization_config/quant_method", ConfigNeed::Equals, R"("compressed-tensors")",
       "QUANTIZATION_METHODS[\"compressed-tensors\"] is CompressedTensorsConfig, whose schemes "
       "CompressedTensorsW4A4Fp4 / CompressedTensorsW4A4Nvfp4MoE load NVFP4 and CompressedTensorsW4A16Fp4 / "
       "CompressedTensorsW4A16Nvfp4MoE weight-only NVFP4 (sgl-project/sglang "
       "python/sglang/srt/layers/quantization/__init__.py at 0116a68, model_config.py at 001adf5, "
       "compressed_tensors/compressed_tensors.py at c7fd88a0eaaee7749b939ab2e480fe3a5d8c4691)"},
      {"config.json", "/quantization_config/config_groups", ConfigNeed::Present, "",
       "CompressedTensorsConfig._quantization_scheme_map_from_config reads config.get(\"config_groups\", dict()): "
       "without groups no Linear gets a scheme and the packed tensors have no parameter (sgl-project/sglang "
       "python/sglang/srt/layers/quantization/compressed_tensors/compressed_tensors.py, stored copies at "
       "000659aed4db1933af3a4fe8c1eb3c673c19d12e and b5535699b732af5d2e049cc5b70112718964b774)"},
  };
  return r;
}

// Read at three commits of sgl-project/sglang: the selection (c7fd88a), the linear scheme (b01291f)
// and the MoE scheme (8f0d987). At 64f78fd6345be28a7843ce7ff881a054a5c53b13 compressed_tensors.py has
// no weight-only NVFP4 branch (NotImplementedError for a linear, RuntimeError for a FusedMoE): the
// table follows the versions that have one.
const std::vector<SourceRef>& sglang_compressed_tensors_w4a16_sources() {
  static const std::vector<SourceRef> r = {
      {"sgl-project/sglang", "python/sglang/srt/layers/quantization/compressed_tensors/compressed_tensors.py",
       "c7fd88a0eaaee7749b939ab2e480fe3a5d8c4691",
       "_is_fp4a16_nvfp4: weights tensor_group, float, 4 bits, group 16, symmetric and no input_activations; "
       "_get_scheme_from_parts returns CompressedTensorsW4A16Fp4() for it (nvfp4-pack-quantized is an activation "
       "quantization format, utils.py at 06b5b1906a851fe3a207d85963aaea2c48347139), get_moe_scheme "
       "CompressedTensorsW4A16Nvfp4MoE(); a W4A4 group below SM100 gets the same schemes with input global scales"},
      {"sgl-project/sglang", "python/sglang/srt/layers/quantization/compressed_tensors/schemes/compressed_tensors_w4a16_nvfp4.py",
       "b01291f29d25e76f71d5c9d1a853c0587df200c0",
       "CompressedTensorsW4A16Fp4.create_weights: weight_packed U8 [N, K/2], weight_global_scale F32 [shards], "
       "weight_scale E4M3 [N, K/16]; input_global_scale only with has_input_global_scale (default False); "
       "process_weights_after_loading keeps 1 / max(weight_global_scale)"},
      {"sgl-project/sglang", "python/sglang/srt/layers/quantization/compressed_tensors/schemes/compressed_tensors_w4a16_nvfp4_moe.py",
       "8f0d9876b19404df00b799bfb1ae627a5d17b9b1",
       "CompressedTensorsW4A16Nvfp4MoE.create_weights: w13_/w2_weight_packed U8 [E, 2I, H/2] / [E, H, I/2], "
       "w13_/w2_weight_scale E4M3 [.., /16], w13_weight_global_scale [E, 2], w2_weight_global_scale [E]; input "
       "global scales only with has_input_global_scale; w13 keeps w1's global scale (a warning when w3's differs)"},
  };
  return r;
}

const std::vector<ConfigRequirement>& trtllm_modelopt_requirements() {
  static const std::vector<ConfigRequirement> r = {
      {"hf_quant_config.json", "/quantization/quant_algo", ConfigNeed::OneOf, R"(["NVFP4","W4A16_NVFP4"])",
       "ModelConfig.from_pretrained reads ModelOpt quantization only from hf_quant_config.json "
       "(load_modelopt_quant_config: quantization.quant_algo, group_size, exclude_modules); config.json's "
       "quantization_config is read only without that file and only for FP8 block and MXFP4, so an NVFP4 model "
       "without it is built unquantized (NVIDIA/TensorRT-LLM tensorrt_llm/_torch/model_config.py at "
       "1a0dc5f70054f66d892df6a964996fc5ead6f81e); the builder takes QuantAlgo(quant_algo), and QuantAlgo has "
       "W4A16_NVFP4 in the versions that load it (quantization/mode.py and model_config.py at "
       "4a706e3814d2f89646f15a65b213bd5a30f97f1c), so NVFP4 builds NVFP4LinearMethod and W4A16_NVFP4 "
       "W4A16NVFP4LinearMethod; any other value is not an NVFP4 method"},
  };
  return r;
}

// TensorRT-LLM's ModelOpt W4A16_NVFP4 path, read at the commits that have it (older versions, whose
// QuantAlgo has no W4A16_NVFP4 member, cannot build the config: the table follows the newer ones).
const std::vector<SourceRef>& trtllm_modelopt_w4a16_sources() {
  static const std::vector<SourceRef> r = {
      {"NVIDIA/TensorRT-LLM", "tensorrt_llm/quantization/mode.py", "4a706e3814d2f89646f15a65b213bd5a30f97f1c",
       "QuantAlgo.W4A16_NVFP4; QuantMode.from_quant_algo maps it to QuantMode.W4A16_NVFP4 (has_w4a16_nvfp4, not "
       "has_nvfp4)"},
      {"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/model_config.py", "4a706e3814d2f89646f15a65b213bd5a30f97f1c",
       "from_pretrained: hf_quant_config.json read first; _build_modelopt_quant_config sets quant_algo = "
       "QuantAlgo(quantization.quant_algo), group_size and exclude_modules from the same object"},
      {"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/model_config.py", "008e0af8980fc560003631ba4ac37828836a91c8",
       "resolve_moe_backend: a W4A16_NVFP4 quant config picks CUTEDSL (CuteDslB12xFusedMoE) on SM120/121, MARLIN on "
       "SM90-99, else CUTLASS (dequantized on the fly)"},
      {"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/modules/linear.py", "4a706e3814d2f89646f15a65b213bd5a30f97f1c",
       "get_quant_method returns W4A16NVFP4LinearMethod for has_w4a16_nvfp4; W4A16NVFP4LinearMethod (a subclass of "
       "NVFP4LinearMethod) creates weight FP4x2 [N, K/2], weight_scale (E4M3, swizzled), weight_scale_2 F32 [1] and "
       "sets input_scale, inv_input_scale and alpha to None; loading is NVFP4LinearMethod's: weight, weight_scale "
       "(E4M3 asserted) and weight_scale_2 by name (fused shards' weight_scale_2 asserted equal), and a checkpoint "
       "input_scale is collected and then copied into the None input_scale (copy_weight reads dst.dtype: "
       "AttributeError)"},
      {"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/modules/fused_moe/fused_moe_cutlass.py",
       "04c2347be3e41cb7b83eb1f5fadec2818ec24c60",
       "CutlassFusedMoE: W4A16_NVFP4 supported on SM >= 80 (BF16/FP16 activations) through "
       "W4A16NVFP4CutlassFusedMoEMethod"},
      {"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/moe/fused_moe/quantization.py", "02320c3588317c4224f60a19fa8fe7e50a058989",
       "W4A16NVFP4CutlassFusedMoEMethod subclasses NVFP4CutlassFusedMoEMethod and loads the NVFP4 expert tensors "
       "unchanged (per expert w1/w2/w3 weight, weight_scale, weight_scale_2 by name); NVFP4FusedMoEMethod.load_quant_scales "
       "reads each expert's input_scale with weights.get, so an absent one leaves fc31/fc2_input_scale at their "
       "initial 1.0, and the dequantization recovers weight_scale_2 as alpha * input_scale"},
  };
  return r;
}

const std::string_view kTrtllmW4a16InputScaleWhy =
    "TensorRT-LLM's W4A16NVFP4LinearMethod creates no input_scale parameter (input_scale is None) but loads through "
    "NVFP4LinearMethod, which collects a checkpoint input_scale and copies it into that None parameter, failing the "
    "load (linear.py at 4a706e3814d2f89646f15a65b213bd5a30f97f1c); its W4A16 fused MoE reads an expert's input_scale "
    "only if present (moe/fused_moe/quantization.py at 02320c3588317c4224f60a19fa8fe7e50a058989)";
const std::string_view kTrtllmCompressedTensorsWhy =
    "TensorRT-LLM parses a compressed-tensors config (update_quant_config_from_compressed_tensors) but its Llama and "
    "DeepSeek V3 loaders read ModelOpt's names only: a W4A4 group becomes QuantAlgo.NVFP4, whose NVFP4LinearMethod "
    "asserts '.weight' in each module's tensors and reads .weight_scale_2 / .input_scale, and whose fused MoE reads "
    "each expert's w1/w2/w3 '.weight', while HfWeightMapper and DeepseekV3WeightLoader pass .weight_packed, "
    ".weight_global_scale and .input_global_scale on unrenamed (the rename in checkpoints/hf/compressed_tensors.py has "
    "no caller in them); a weight-only group (input_activations null) raises in the parser, which reads "
    "input_activations['strategy']";

const std::vector<SourceRef>& trtllm_compressed_tensors_sources() {
  static const std::vector<SourceRef> r = {
      {"NVIDIA/TensorRT-LLM", "tensorrt_llm/models/quant_config_utils.py",
       "2a26169d0b200a5b81356d09ee7ed7691d95f116 and 21156a7a57acd21e17feb5c2721c30f035e0f2af",
       "update_quant_config_from_compressed_tensors: weights num_bits 4, type float, strategy tensor_group with "
       "input_activations strategy tensor_group and group 16 -> QuantAlgo.NVFP4 group 16, ignore -> exclude_modules; "
       "input_activations['strategy'] is read for every group but MXFP4 pack-quantized (strategy group), so a "
       "weight-only NVFP4 group raises (TypeError on input_activations null, KeyError when it is absent)"},
      {"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/model_config.py", "008e0af8980fc560003631ba4ac37828836a91c8",
       "load_hf_quant_config: quant_method compressed-tensors -> update_quant_config_from_compressed_tensors"},
      {"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/modules/linear.py", "00bbf71e796406ea8593a77cbfb828356182db16",
       "load_weights_vanilla_helper / fused_qkv / fused_gate_up helpers assert 'weight' in each shard's tensors; "
       "NVFP4LinearMethod.load_weight_scales reads input_scale, weight_scale, weight_scale_2 by name"},
      {"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/models/checkpoints/hf/weight_mapper.py",
       "088aa36b002777f37d26241bcba56c86b132e5ee and f59aed070dabff4761d70e47c90fd761776c1bac",
       "HfWeightMapper: no tensor renamed (qkv_proj / gate_up_proj fusion, k/v duplication only); "
       "BaseWeightMapper.preprocess_weights does nothing (base_weight_mapper.py at 4dfeee6c04a4c75a8a10e67f64c782cfce0ad830)"},
      {"NVIDIA/TensorRT-LLM", "tensorrt_llm/_torch/models/checkpoints/hf/compressed_tensors.py",
       "35a24cbcb83263b488a1225bfdc712da90d38d19",
       "normalize_compressed_tensors_nvfp4_names renames weight_packed / weight_global_scale / input_global_scale to "
       "ModelOpt's (the global scales inverted); in the stored copies only its unit test calls it"},
  };
  return r;
}

}  // namespace fp4kit
