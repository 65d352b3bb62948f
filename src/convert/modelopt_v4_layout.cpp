#include "convert/modelopt_v4_layout.h"

#include "base/error.h"
#include "io/strict_json.h"

namespace fp4kit {

namespace {

constexpr int kV4GroupSize = 16;

nlohmann::ordered_json v4_producer() { return {{"name", "modelopt"}, {"version", "dsv4-nvfp4-experts"}}; }

nlohmann::ordered_json quantized_layers_json(const std::vector<std::string>& layers) {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (const std::string& layer : layers) out[layer] = {{"quant_algo", "NVFP4"}, {"group_size", kV4GroupSize}};
  return out;
}

nlohmann::json nvfp4_tensor_args() {
  return {{"dynamic", false}, {"num_bits", 4}, {"type", "float"}, {"group_size", kV4GroupSize}};
}

}  // namespace

std::vector<std::string> ModeloptV4Layout::exclude_modules() const {
  // Attention and shared experts keep their FP8 blocks, the head stays BF16; MTP stays in the
  // source format unless its experts were converted, and then only its projections are left out.
  if (includes_mtp_experts) return {"*.attn.*", "*.ffn.shared_experts.*", "head", "mtp.*.e_proj", "mtp.*.h_proj"};
  return {"*.attn.*", "*.ffn.shared_experts.*", "head", "mtp.*"};
}

std::string ModeloptV4Layout::config_json(std::string_view source_config, const std::string& label) const {
  nlohmann::json config = io::parse_strict_json(source_config, label);
  if (!config.is_object()) throw InputError(label + ": is a JSON " + std::string(config.type_name()) + ", not an object");
  nlohmann::json q = config.contains("quantization_config") ? config.at("quantization_config") : nlohmann::json::object();
  if (!q.is_object()) throw InputError(label + ": quantization_config is not an object");
  q["moe_quant_algo"] = "NVFP4";
  q["quant_algo"] = "MIXED_PRECISION";
  q["kv_cache_quant_algo"] = nullptr;
  q["group_size"] = kV4GroupSize;
  q["producer"] = v4_producer();
  q["config_groups"] = {{"group_0", {{"weights", nvfp4_tensor_args()},
                                     {"input_activations", nvfp4_tensor_args()},
                                     {"targets", {"Linear"}}}}};
  q["quantized_layers"] = nlohmann::json(quantized_layers_json(quantized_layers));
  q["ignore"] = exclude_modules();
  config["quantization_config"] = q;
  return config.dump(2) + "\n";
}

std::string ModeloptV4Layout::hf_quant_config_json() const {
  nlohmann::ordered_json j = {{"producer", v4_producer()},
                              {"quantization", {{"quant_algo", "MIXED_PRECISION"},
                                                {"kv_cache_quant_algo", nullptr},
                                                {"group_size", kV4GroupSize},
                                                {"quantized_layers", quantized_layers_json(quantized_layers)},
                                                {"exclude_modules", exclude_modules()}}}};
  return j.dump(2);
}

}  // namespace fp4kit
