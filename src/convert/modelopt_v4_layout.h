#pragma once
// The JSON files ModelOpt's DeepSeek V4 NVFP4 exporter writes beside the shards, which is what
// vLLM, SGLang and TensorRT-LLM read to pick the NVFP4 MoE path: config.json with the mixed
// precision quantization_config, and hf_quant_config.json. See docs/convert.md.
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace fp4kit {

// Which modules the recipe quantized: the expert containers ("layers.0.ffn.experts", in the order
// given) and whether the MTP experts are among them (then "mtp.*" is no longer excluded whole).
struct ModeloptV4Layout {
  std::vector<std::string> quantized_layers;
  bool includes_mtp_experts = false;

  std::vector<std::string> exclude_modules() const;
  // config.json: every field kept but quantization_config, which keeps its fields and gains the
  // NVFP4 mixed-precision ones. Keys sorted, 2-space indent, trailing newline. InputError naming
  // `label` unless `source_config` is a JSON object (and its quantization_config, if any, one too).
  std::string config_json(std::string_view source_config, const std::string& label) const;
  // hf_quant_config.json: insertion order, 2-space indent, no trailing newline (as the exporter).
  std::string hf_quant_config_json() const;
};

inline constexpr std::string_view kHfQuantConfigFileName = "hf_quant_config.json";

}  // namespace fp4kit
