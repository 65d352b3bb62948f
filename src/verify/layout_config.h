#pragma once
// The quantization config an NVFP4 checkpoint declares, read from config.json
// (`quantization_config`) and hf_quant_config.json, and the rules the serving engines apply to it:
// which layout it is, which modules it says are NVFP4 and which it leaves out.
//
// Layouts: ModelOpt's DeepSeek V4 experts-only release (`quant_method: fp8` + `moe_quant_algo:
// NVFP4` + a MIXED_PRECISION manifest), ModelOpt's general NVFP4 / W4A16_NVFP4 / MIXED_PRECISION
// export (`quant_method: modelopt`), and compressed-tensors `nvfp4-pack-quantized`.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "verify/verify_report.h"

namespace fp4kit::verify {

enum class Layout : uint8_t { ModelOptV4Mixed, ModelOpt, CompressedTensors, Unknown };
std::string_view layout_name(Layout);

struct LayoutConfig {
  Layout layout = Layout::Unknown;
  std::optional<nlohmann::json> config;    // config.json, if present and valid
  std::optional<nlohmann::json> hf_quant;  // hf_quant_config.json, if present and valid
  std::string quant_algo;                  // "NVFP4", "W4A16_NVFP4", "MIXED_PRECISION", "" if none
  std::string producer;                    // "modelopt dsv4-nvfp4-experts", ...
  // Modules left unquantized: exclude_modules / ignore (fnmatch patterns, CT "re:" regexes).
  std::vector<std::string> exclude;
  // MIXED_PRECISION: module prefix -> its entry ({"quant_algo": "NVFP4", "group_size": 16}).
  std::map<std::string, nlohmann::json> quantized_layers;
  bool activations_declared = false;  // the config says input activations are NVFP4 with static scales
};

// Reads DIR/config.json and DIR/hf_quant_config.json. A missing or malformed file, and every field
// the engines need that is absent or wrong, is a finding in `report` (never an exception).
LayoutConfig read_layout_config(const std::string& dir, VerifyReport& report);

// The module of a weight tensor name: "a.b.weight" -> "a.b" ("a.b.weight_packed" -> "a.b").
std::string module_of_weight(const std::string& weight);

// Whether the config leaves `module` unquantized, matching as the engines do: an exact name, a
// dotted prefix, an fnmatch pattern, or (compressed-tensors) a "re:" regular expression; also
// after the "model." prefix vLLM adds to DeepSeek names.
bool is_excluded(const LayoutConfig&, const std::string& module);
// The quantized_layers key covering `module` (itself or a dotted prefix); "" if none.
std::string quantized_layer_of(const LayoutConfig&, const std::string& module);

}  // namespace fp4kit::verify
