#include "convert/nvfp4_layout.h"

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "io/strict_json.h"

namespace fp4kit {

namespace {

constexpr int kGroupSize = 16;
constexpr std::string_view kPackedFormat = "nvfp4-pack-quantized";

nlohmann::ordered_json producer() { return {{"name", "modelopt"}, {"version", "fp4kit-nvfp4"}}; }

nlohmann::json modelopt_tensor_args() {
  return {{"dynamic", false}, {"num_bits", 4}, {"type", "float"}, {"group_size", kGroupSize}};
}

// compressed-tensors' QuantizationArgs of the NVFP4 presets.
nlohmann::json compressed_tensors_args(bool activations) {
  return {{"num_bits", 4},
          {"type", "float"},
          {"symmetric", true},
          {"group_size", kGroupSize},
          {"strategy", "tensor_group"},
          {"block_structure", nullptr},
          {"dynamic", activations ? nlohmann::json("local") : nlohmann::json(false)},
          {"actorder", nullptr},
          {"scale_dtype", "float8_e4m3fn"},
          {"zp_dtype", "float8_e4m3fn"},
          {"observer", activations ? "static_minmax" : "memoryless_minmax"},
          {"observer_kwargs", nlohmann::json::object()}};
}

}  // namespace

std::string Nvfp4Layout::quant_algo() const {
  if (mixed) return "MIXED_PRECISION";
  return weight_only ? "W4A16_NVFP4" : "NVFP4";
}

std::string Nvfp4Layout::config_json(std::string_view source_config, const std::string& label) const {
  nlohmann::json config = io::parse_strict_json(source_config, label);
  if (!config.is_object()) throw InputError(label + ": is a JSON " + std::string(config.type_name()) + ", not an object");
  nlohmann::json q;
  if (compressed_tensors) {
    nlohmann::json group = {{"targets", {"Linear"}},
                            {"format", kPackedFormat},
                            {"weights", compressed_tensors_args(false)},
                            {"input_activations", weight_only ? nlohmann::json(nullptr) : compressed_tensors_args(true)},
                            {"output_activations", nullptr}};
    q = {{"quant_method", "compressed-tensors"},
         {"format", kPackedFormat},
         {"quantization_status", "compressed"},
         {"config_groups", {{"group_0", group}}},
         {"ignore", exclude_modules},
         {"kv_cache_scheme", nullptr},
         {"global_compression_ratio", nullptr}};
  } else {
    const nlohmann::json existing = config.contains("quantization_config") ? config.at("quantization_config") : nlohmann::json();
    if (!existing.is_null() && !existing.is_object()) throw InputError(label + ": quantization_config is not an object");
    // A mixed checkpoint still holds the source's FP8 blocks: their description stays.
    q = mixed && existing.is_object() ? existing : nlohmann::json::object();
    nlohmann::json group = {{"weights", modelopt_tensor_args()}, {"targets", {"Linear"}}};
    if (!weight_only) group["input_activations"] = modelopt_tensor_args();
    q["config_groups"] = {{"group_0", group}};
    q["ignore"] = exclude_modules;
    q["quant_algo"] = quant_algo();
    q["kv_cache_quant_algo"] = nullptr;
    q["group_size"] = kGroupSize;
    q["producer"] = producer();
    q["quant_method"] = mixed && existing.is_object() && existing.contains("quant_method") ? existing.at("quant_method")
                                                                                            : nlohmann::json("modelopt");
    if (mixed) {
      nlohmann::json layers = nlohmann::json::object();
      for (const std::string& l : quantized_layers)
        layers[l] = {{"quant_algo", weight_only ? "W4A16_NVFP4" : "NVFP4"}, {"group_size", kGroupSize}};
      q["quantized_layers"] = layers;
    }
  }
  config["quantization_config"] = q;
  return config.dump(2) + "\n";
}

std::string Nvfp4Layout::hf_quant_config_json() const {
  nlohmann::ordered_json quantization = {{"quant_algo", quant_algo()}, {"kv_cache_quant_algo", nullptr},
                                         {"group_size", kGroupSize}};
  if (mixed) {
    nlohmann::ordered_json layers = nlohmann::ordered_json::object();
    for (const std::string& l : quantized_layers)
      layers[l] = {{"quant_algo", weight_only ? "W4A16_NVFP4" : "NVFP4"}, {"group_size", kGroupSize}};
    quantization["quantized_layers"] = layers;
  }
  quantization["exclude_modules"] = exclude_modules;
  const nlohmann::ordered_json j = {{"producer", producer()}, {"quantization", quantization}};
  return j.dump(2);
}

}  // namespace fp4kit
