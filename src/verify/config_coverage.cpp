#include "verify/config_coverage.h"

#include <set>

#include "io/quote_name.h"
#include "models/deepseek_v4.h"

namespace fp4kit::verify {

namespace {

// A weight an engine builds as a Linear layer that a "targets: Linear" config would quantize.
bool is_linear_weight(const TensorRef& t) {
  if (t.shape.size() != 2 || !t.name.ends_with(".weight")) return false;
  switch (deepseek_v4_role(t.name)) {
    case TensorRole::AttentionProjection:
    case TensorRole::CompressorProjection:
    case TensorRole::IndexerProjection:
    case TensorRole::RoutedExpert:
    case TensorRole::SharedExpert:
    case TensorRole::MtpProjection:
    case TensorRole::Head:
      return true;
    case TensorRole::Unknown:
      // Other architectures: projections by their usual names.
      return t.name.find("proj") != std::string::npos || t.name.find("lm_head") != std::string::npos;
    default:
      return false;
  }
}

}  // namespace

void check_config_coverage(const LayoutConfig& config, const CheckpointTensors& tensors, const Nvfp4Inventory& inventory,
                           VerifyReport& report) {
  if (inventory.modules.empty()) {
    report.add("nvfp4.none", Severity::Fail, "", tensors.tensors.empty() ? "the checkpoint holds no tensors" :
               "the checkpoint holds no NVFP4 weight (U8 weight + F8_E4M3 weight_scale + F32 per-tensor scale)");
    return;
  }
  if (config.layout == Layout::Unknown) {
    report.add("config.quant_method", Severity::Fail, "config.json",
               "config.json has no NVFP4 quantization_config (quant_method modelopt, compressed-tensors, or fp8 with "
               "moe_quant_algo NVFP4) and there is no hf_quant_config.json: the engines load the " +
                   std::to_string(inventory.modules.size()) + " NVFP4 weights as something else");
    return;
  }
  const bool mixed = config.quant_algo == "MIXED_PRECISION";
  std::set<std::string> used_layers;
  std::set<std::string> nvfp4_modules;
  for (const Nvfp4Module& m : inventory.modules) {
    nvfp4_modules.insert(m.module);
    if (mixed) {
      const std::string layer = quantized_layer_of(config, m.module);
      if (layer.empty())
        report.add("config.undeclared_nvfp4", Severity::Fail, m.module,
                   "NVFP4 weight " + io::quote_name(m.weight) + " is in no quantized_layers entry: the engines build "
                   "its module in another format and the load fails");
      else
        used_layers.insert(layer);
    } else if (is_excluded(config, m.module)) {
      report.add("config.undeclared_nvfp4", Severity::Fail, m.module,
                 "NVFP4 weight " + io::quote_name(m.weight) + " matches the config's exclude list: the engines build "
                 "its module unquantized and the load fails");
    }
  }
  if (mixed)
    for (const auto& [layer, entry] : config.quantized_layers)
      if (!used_layers.count(layer))
        report.add("config.declared_not_quantized", Severity::Fail, layer,
                   "quantized_layers lists " + io::quote_name(layer) + " as NVFP4 but no NVFP4 weight lies under it");

  // Linear weights stored in another format must not be declared NVFP4.
  for (const TensorRef& t : tensors.tensors) {
    if (!is_linear_weight(t)) continue;
    const std::string module = module_of_weight(t.name);
    if (nvfp4_modules.count(module)) continue;
    bool declared = false;
    if (mixed) {
      const std::string layer = quantized_layer_of(config, module);
      // A quantized_layers entry names exactly NVFP4 modules (V4: the routed experts container).
      declared = !layer.empty() && !is_excluded(config, module);
    } else {
      declared = !is_excluded(config, module);
    }
    if (declared)
      report.add("config.declared_not_quantized", Severity::Fail, module,
                 io::quote_name(t.name) + " in " + t.file + " is " + std::string(dtype_name(t.dtype)) +
                     ", not NVFP4, but the config does not exclude it: the engines build NVFP4 parameters for it");
  }

  // FP8 block weights kept in a DeepSeek V4 checkpoint are loaded through the fp8 block config.
  bool fp8_blocks = false;
  for (const QuantizedWeight& q : inventory.other_quantized)
    fp8_blocks = fp8_blocks || q.storage == Storage::Fp8BlockE8M0 || q.storage == Storage::Fp8BlockF32;
  if (fp8_blocks && config.layout == Layout::ModelOptV4Mixed && config.config) {
    const nlohmann::json& qc = config.config->at("quantization_config");
    const auto wbs = qc.find("weight_block_size");
    if (wbs == qc.end() || *wbs != nlohmann::json::array({128, 128}))
      report.add(wbs == qc.end() ? "config.field_missing" : "config.fp8_block", Severity::Fail, "config.json",
                 "config.json: quantization_config.weight_block_size is " + (wbs == qc.end() ? std::string("missing") : wbs->dump()) +
                     " but the checkpoint keeps FP8 128x128 block weights (attention, shared experts)");
    const auto fmt = qc.find("fmt");
    if (fmt == qc.end())
      report.add("config.field_missing", Severity::Fail, "config.json",
                 "config.json: quantization_config has no fmt (\"e4m3\") for the FP8 block weights it keeps");
  }
}

}  // namespace fp4kit::verify
