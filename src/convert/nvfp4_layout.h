#pragma once
// The JSON that describes a general NVFP4 checkpoint (recipe all-linear, or any selection beyond the
// routed experts), in the two layouts the engines read:
//  - ModelOpt's HF export: hf_quant_config.json {producer, quantization: {quant_algo NVFP4 |
//    W4A16_NVFP4 | MIXED_PRECISION, kv_cache_quant_algo, group_size, [quantized_layers],
//    exclude_modules}} and config.json quantization_config in the form of convert_hf_quant_config_format
//    (quant_method "modelopt", config_groups, ignore);
//  - compressed-tensors' nvfp4-pack-quantized: config.json quantization_config as llm-compressor
//    writes it for the NVFP4 (W4A4) and NVFP4A16 (weight-only) presets.
// The routed-experts-only case keeps NVIDIA's V4 release layout (modelopt_v4_layout.h).
#include <string>
#include <string_view>
#include <vector>

namespace fp4kit {

struct Nvfp4Layout {
  bool compressed_tensors = false;
  bool weight_only = false;                   // no activation scales: W4A16_NVFP4 / NVFP4A16
  std::vector<std::string> quantized_layers;  // NVFP4 modules (or containers), in order
  std::vector<std::string> exclude_modules;   // linear modules left as they are (names or "*" patterns)
  bool mixed = false;                         // some scaled weights stay in their source format

  std::string quant_algo() const;  // "NVFP4", "W4A16_NVFP4" or "MIXED_PRECISION"
  // config.json with quantization_config replaced (ModelOpt, compressed-tensors) or, for a mixed
  // ModelOpt checkpoint, the source's kept and extended. Keys sorted, 2-space indent, trailing
  // newline. InputError naming `label` unless the source is a JSON object.
  std::string config_json(std::string_view source_config, const std::string& label) const;
  // hf_quant_config.json (ModelOpt only): insertion order, 2-space indent.
  std::string hf_quant_config_json() const;
};

}  // namespace fp4kit
