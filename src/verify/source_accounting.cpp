#include "verify/source_accounting.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "base/error.h"
#include "io/quote_name.h"
#include "io/strict_json.h"

namespace fp4kit::verify {

namespace {

std::string storage_label(Storage s, DType dtype) {
  switch (s) {
    case Storage::Mxfp4: return "mxfp4";
    case Storage::Fp8BlockE8M0:
    case Storage::Fp8BlockF32: return "fp8-block";
    case Storage::Nvfp4: return "nvfp4";
    case Storage::Plain: break;
  }
  std::string name(dtype_name(dtype));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

}  // namespace

SourceAccounting account_for_source(const CheckpointTensors& source, const CheckpointTensors& output,
                                    const Nvfp4Inventory& inventory, VerifyReport& report) {
  SourceAccounting acc;
  const WeightPairing pairing = pair_quantized_weights(source.tensors);
  acc.source_pairing_clean = pairing.problems.empty();
  for (const std::string& p : pairing.problems) report.add("source.pairing", Severity::Warn, "", "source: " + p);

  std::map<std::string, const QuantizedWeight*> source_quantized;  // source weight -> entry
  std::map<std::string, const QuantizedWeight*> scale_owner;       // source scale -> its weight
  for (const QuantizedWeight& q : pairing.quantized) {
    source_quantized[q.weight] = &q;
    scale_owner[q.scale] = &q;
  }
  std::map<std::string, const Nvfp4Module*> nvfp4;  // module -> output module
  std::set<std::string> nvfp4_tensors;              // every output tensor of an NVFP4 module
  for (const Nvfp4Module& m : inventory.modules) {
    nvfp4[m.module] = &m;
    for (const std::string* t : {&m.weight, &m.block_scale, &m.global_scale, &m.input_scale})
      if (!t->empty()) nvfp4_tensors.insert(*t);
  }
  auto nvfp4_module_of_weight = [&](const std::string& name) -> const Nvfp4Module* {
    const std::string module = module_of_weight(name);
    const auto it = nvfp4.find(module);
    return it != nvfp4.end() && (name == module + ".weight" || name == module + ".weight_packed") ? it->second : nullptr;
  };

  for (const TensorRef& s : source.tensors) {
    const TensorRef* o = output.find(s.name);
    if (const Nvfp4Module* m = nvfp4_module_of_weight(s.name)) {
      const auto q = source_quantized.find(s.name);
      SourceWeight w{s.name, storage_label(q == source_quantized.end() ? Storage::Plain : q->second->storage, s.dtype),
                     q != source_quantized.end() && q->second->storage == Storage::Mxfp4 ? q->second->scale : ""};
      if (w.storage == "nvfp4") {
        // An NVFP4 source: the output's same tensor is compared as is.
      }
      acc.source_of[m->module] = std::move(w);
      ++report.quantized_accounted;
      continue;
    }
    if (o) {
      const auto q = source_quantized.find(s.name);
      const bool fp8 = q != source_quantized.end() &&
                       (q->second->storage == Storage::Fp8BlockE8M0 || q->second->storage == Storage::Fp8BlockF32);
      if (o->dtype == s.dtype && o->shape == s.shape) {
        acc.kept.push_back(s.name);
      } else if (fp8 && o->dtype == DType::BF16 && o->shape == q->second->logical_shape) {
        acc.dequantized.push_back(s.name);
      } else {
        report.add("source.changed", Severity::Fail, s.name,
                   io::quote_name(s.name) + " is " + std::string(dtype_name(s.dtype)) + " " + io::shape_string(s.shape) +
                       " in the source (" + s.file + ") but " + std::string(dtype_name(o->dtype)) + " " +
                       io::shape_string(o->shape) + " in the output (" + o->file + ")");
      }
      continue;
    }
    if (const auto owner = scale_owner.find(s.name); owner != scale_owner.end()) {
      // The old block scale of a weight that is NVFP4 now, or BF16 (checked when its weight is).
      const std::string& weight = owner->second->weight;
      const TensorRef* ow = output.find(weight);
      if (nvfp4_module_of_weight(weight) || (ow && ow->dtype == DType::BF16 && owner->second->storage != Storage::Mxfp4 &&
                                             ow->shape == owner->second->logical_shape)) {
        ++report.dropped_accounted;
        continue;
      }
    }
    report.add("source.missing", Severity::Fail, s.name,
               "source tensor " + io::quote_name(s.name) + " (" + s.file + ", " + std::string(dtype_name(s.dtype)) + " " +
                   io::shape_string(s.shape) + ") is not in the output: neither kept, quantized, nor a scale dropped with its weight");
  }
  for (const TensorRef& o : output.tensors) {
    if (source.find(o.name) || nvfp4_tensors.count(o.name)) continue;
    report.add("source.extra", Severity::Warn, o.name,
               "output tensor " + io::quote_name(o.name) + " (" + o.file + ") has no counterpart in the source");
  }
  for (const Nvfp4Module& m : inventory.modules)
    if (!acc.source_of.count(m.module))
      report.add("source.extra", Severity::Warn, m.weight,
                 "NVFP4 weight " + io::quote_name(m.weight) + " has no source weight " + io::quote_name(m.module + ".weight") +
                     ": its error cannot be measured");
  return acc;
}

void check_source_config(const std::string& source_dir, const LayoutConfig& config, VerifyReport& report) {
  const std::string path = source_dir + "/config.json";
  if (!std::filesystem::exists(path) || !config.config) return;
  nlohmann::json src;
  try {
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    src = io::parse_strict_json(text.str(), path);
  } catch (const InputError& e) {
    report.add("source.config_field", Severity::Warn, "config.json", std::string("source ") + e.what());
    return;
  }
  if (!src.is_object()) return;
  const nlohmann::json& out = *config.config;
  for (const auto& [key, value] : src.items()) {
    if (key == "quantization_config") continue;
    const auto it = out.find(key);
    if (it == out.end())
      report.add("source.config_field", Severity::Fail, key,
                 "config.json lost the source's field " + io::quote_name(key) + " (" + value.dump() + ")");
    else if (*it != value)
      report.add("source.config_field", Severity::Fail, key,
                 "config.json changed the source's field " + io::quote_name(key) + ": " + value.dump() + " -> " + it->dump());
  }
  // The experts-only layout keeps the FP8 block config for everything that stays FP8.
  const auto sq = src.find("quantization_config");
  const auto oq = out.find("quantization_config");
  if (config.layout != Layout::ModelOptV4Mixed || sq == src.end() || !sq->is_object() || oq == out.end()) return;
  for (const auto& [key, value] : sq->items()) {
    const auto it = oq->find(key);
    if (it == oq->end())
      report.add("source.config_field", Severity::Fail, "quantization_config." + key,
                 "config.json quantization_config lost the source's field " + io::quote_name(key) + " (" + value.dump() +
                     "), which the FP8 block weights it keeps are loaded with");
    else if (*it != value)
      report.add("source.config_field", Severity::Fail, "quantization_config." + key,
                 "config.json quantization_config changed the source's field " + io::quote_name(key) + ": " + value.dump() +
                     " -> " + it->dump());
  }
}

}  // namespace fp4kit::verify
