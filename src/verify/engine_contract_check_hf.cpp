#include "verify/engine_contract_check_hf.h"

#include <algorithm>
#include <bit>
#include <map>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "io/quote_name.h"
#include "io/tensor_info.h"
#include "verify/config_requirement.h"
#include "verify/engine_findings.h"

namespace fp4kit::verify {

namespace {

// One tensor the loader fills: the dtypes it takes and the shapes it accepts.
struct Slot {
  std::vector<DType> dtypes;
  std::vector<std::vector<int64_t>> shapes;
  bool required = true;
  std::string module;  // the module (linear) or tensor (plain) it belongs to
  bool filled = false;
};

// The loaders copy plain tensors into parameters of the model dtype (default_weight_loader's copy_
// converts between float types): any float dtype loads, nothing else does.
const std::vector<DType> kFloat = {DType::BF16, DType::F16, DType::F32};
// Per-tensor scales go into one slot of a per-shard vector: a 0-d tensor or a [1] one.
const std::vector<std::vector<int64_t>> kScalar = {{}, {1}};
// ... except where the loader fuses two siblings' scales by keeping one 0-d value (ZeroDimScaleRow).
const std::vector<std::vector<int64_t>> kZeroDim = {{}};

std::string dtypes_text(const std::vector<DType>& dtypes) {
  std::string s;
  for (DType d : dtypes) s += (s.empty() ? "" : "|") + std::string(dtype_name(d));
  return s;
}

std::string shapes_text(const std::vector<std::vector<int64_t>>& shapes) {
  std::string s;
  for (const auto& shape : shapes) s += (s.empty() ? "" : " or ") + io::shape_string(shape);
  return s;
}

const std::vector<std::regex>& fused_patterns(const HfFamilyContract& family) {
  static std::map<const HfFamilyContract*, std::vector<std::regex>> cache;  // the tables are static: built once each
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  auto& patterns = cache[&family];
  if (patterns.empty())
    for (const FusedRow& row : family.fused) patterns.emplace_back(std::string(row.pattern), std::regex::ECMAScript | std::regex::optimize);
  return patterns;
}

// The fused row of `module` for this engine, or -1.
int fused_row(const HfFamilyContract& family, Engine engine, const std::string& module) {
  const auto& patterns = fused_patterns(family);
  for (size_t i = 0; i < patterns.size(); ++i)
    if (!family.fused[i].parameter[static_cast<size_t>(engine)].empty() && std::regex_match(module, patterns[i])) return static_cast<int>(i);
  return -1;
}

std::string parameter_of(const HfFamilyContract& family, Engine engine, const std::string& module) {
  const int row = fused_row(family, engine, module);
  return row < 0 ? "'" + module + "'" : std::string(family.fused[static_cast<size_t>(row)].parameter[static_cast<size_t>(engine)]);
}

bool in_mtp_layer(const std::string& name, int64_t layers) {
  static const std::regex layer(R"(^model\.layers\.(\d{1,9})\.)");
  std::smatch m;
  return std::regex_search(name, m, layer) && std::stoll(m[1].str()) >= layers;
}

struct HfExpected {
  std::map<std::string, Slot> slots;
  std::map<std::string, std::string> format;  // module -> what the loader builds, for messages
  // Modules the config quantizes but the engine's loader reads as a plain '.weight' -> why.
  std::map<std::string, std::string> unquantized_only;
  // Quantized modules whose per-tensor scales the loader takes only 0-d -> why.
  std::map<std::string, std::string> zero_dim_scales;
};

// The first row whose pattern matches `module`, or nullptr.
template <class Row>
const Row* matching_row(const std::vector<Row>& rows, const std::vector<std::regex>& patterns, const std::string& module) {
  for (size_t i = 0; i < patterns.size(); ++i)
    if (std::regex_match(module, patterns[i])) return &rows[i];
  return nullptr;
}

template <class Row>
std::vector<std::regex> hf_row_patterns(const std::vector<Row>& rows) {
  std::vector<std::regex> patterns;
  for (const Row& row : rows) patterns.emplace_back(std::string(row.pattern), std::regex::ECMAScript | std::regex::optimize);
  return patterns;
}

HfExpected expected_slots(const std::vector<LoaderModule>& modules, const LayoutConfig& config, HfLayout layout, bool w4a4,
                        int64_t group, const HfEngineContract& contract) {
  const std::vector<std::regex> unquantized_only = hf_row_patterns(contract.unquantized_only);
  const std::vector<std::regex> zero_dim = hf_row_patterns(contract.zero_dim_scales);
  HfExpected e;
  for (const LoaderModule& m : modules) {
    if (!m.linear) {
      e.slots[m.name] = {kFloat, {m.shape}, true, m.name};
      e.format[m.name] = "a plain tensor";
      continue;
    }
    const int64_t n = m.shape[0], k = m.shape[1];
    if (is_excluded(config, m.name)) {
      e.slots[m.name + ".weight"] = {kFloat, {m.shape}, true, m.name};
      e.format[m.name] = "unquantized (the config excludes it): .weight only";
      continue;
    }
    if (const UnquantizedOnlyRow* row = matching_row(contract.unquantized_only, unquantized_only, m.name)) {
      e.slots[m.name + ".weight"] = {kFloat, {m.shape}, true, m.name};
      e.format[m.name] = "read as an unquantized .weight only";
      e.unquantized_only[m.name] = std::string(row->why);
      continue;
    }
    const bool ct = layout == HfLayout::CompressedTensors;
    const ZeroDimScaleRow* zero_dim_row = matching_row(contract.zero_dim_scales, zero_dim, m.name);
    if (zero_dim_row) e.zero_dim_scales[m.name] = std::string(zero_dim_row->why);
    const std::vector<std::vector<int64_t>>& scalar = zero_dim_row ? kZeroDim : kScalar;
    e.slots[m.name + (ct ? ".weight_packed" : ".weight")] = {{DType::U8}, {{n, k / 2}}, true, m.name};
    e.slots[m.name + ".weight_scale"] = {{DType::F8_E4M3}, {{n, k / group}}, true, m.name};
    e.slots[m.name + (ct ? ".weight_global_scale" : ".weight_scale_2")] = {{DType::F32}, scalar, true, m.name};
    // W4A4 methods quantize activations with the input scale; ModelOpt's W4A16 linear keeps a
    // placeholder slot for it (and its FusedMoE always has one) unless the engine's has no such
    // parameter; compressed-tensors' W4A16 has none.
    static const std::regex expert(R"(.*\.experts\.\d+\.[^.]+)");
    const bool no_w4a16_input_scale =
        !w4a4 && !ct && !contract.w4a16_linear_input_scale_why.empty() && !std::regex_match(m.name, expert);
    if ((w4a4 || !ct) && !no_w4a16_input_scale)
      e.slots[m.name + (ct ? ".input_global_scale" : ".input_scale")] = {{DType::F32}, scalar, w4a4, m.name};
    e.format[m.name] = ct ? (w4a4 ? "NVFP4 (.weight_packed, .weight_scale, .weight_global_scale, .input_global_scale)"
                                  : "NVFP4A16 (.weight_packed, .weight_scale, .weight_global_scale)")
                       : w4a4 ? "NVFP4 (.weight, .weight_scale, .weight_scale_2, .input_scale)"
                       : no_w4a16_input_scale
                           ? "W4A16_NVFP4 (.weight, .weight_scale, .weight_scale_2; no input scale parameter: " +
                                 std::string(contract.w4a16_linear_input_scale_why) + ")"
                           : "W4A16_NVFP4 (.weight, .weight_scale, .weight_scale_2, optional .input_scale)";
  }
  return e;
}

std::string hf_unconsumed_reason(const std::string& name, const HfExpected& e, const HfFamilyContract& family, Engine engine) {
  if (name.ends_with(".mlp.gate.e_score_correction_bias") && family.engines[static_cast<size_t>(engine)].gate_bias_needs_noaux_tc)
    return "its router creates e_score_correction_bias only when config.json's topk_method is \"noaux_tc\" (DeepSeek V3's "
           "released config says so)";
  const size_t dot = name.rfind('.');
  if (dot != std::string::npos) {
    const std::string module = name.substr(0, dot);
    if (const auto u = e.unquantized_only.find(module); u != e.unquantized_only.end())
      return "the loader reads '" + module + "' as an unquantized .weight only, so its NVFP4 '" + name.substr(dot) +
             "' is never loaded and the module cannot be quantized for this engine: " + u->second;
    if (const auto f = e.format.find(module); f != e.format.end())
      return "'" + module + "' loads into " + parameter_of(family, engine, module) + ", which is " + f->second + ": no slot for '" +
             name.substr(dot) + "' (the loader's params_dict lookup fails)";
  }
  return "no parameter of its " + std::string(family.family) + " model has this name (the loader's params_dict lookup fails)";
}

// Siblings fused into one parameter must carry bit-identical per-tensor scales: the engine keeps one
// value (vLLM: the largest for linears, w1's for w13) and dequantizes the others with it.
// Modules the engine reads as a plain weight are reported by the walk and left out here.
void check_fused_scales(const HfFamilyContract& family, Engine engine, const Nvfp4Inventory& inventory, const HfExpected& expected,
                        Findings& findings) {
  std::map<std::pair<std::string, int>, const Nvfp4Module*> groups;  // (parent, row) -> its first member
  for (const Nvfp4Module& m : inventory.modules) {
    const int row = fused_row(family, engine, m.module);
    if (row < 0 || expected.unquantized_only.contains(m.module)) continue;
    const size_t dot = m.module.rfind('.');
    const auto [it, inserted] = groups.try_emplace({m.module.substr(0, dot == std::string::npos ? 0 : dot), row}, &m);
    if (inserted) continue;
    const Nvfp4Module& first = *it->second;
    const std::string parameter(family.fused[static_cast<size_t>(row)].parameter[static_cast<size_t>(engine)]);
    const auto differs = [](std::optional<float> a, std::optional<float> b) {
      return a && b && std::bit_cast<uint32_t>(*a) != std::bit_cast<uint32_t>(*b);
    };
    if (differs(m.global_value, first.global_value))
      findings.add("engine.fused_scale", m.global_scale,
                   io::quote_name(m.global_scale) + " is " + std::to_string(*m.global_value) + " but " + io::quote_name(first.global_scale) +
                       " is " + std::to_string(*first.global_value) + ": both load into " + parameter +
                       ", which keeps one global scale for all its shards, so one of them is dequantized wrong");
    if (differs(m.input_value, first.input_value))
      findings.add("engine.fused_scale", m.input_scale,
                   io::quote_name(m.input_scale) + " is " + std::to_string(*m.input_value) + " but " + io::quote_name(first.input_scale) +
                       " is " + std::to_string(*first.input_value) + ": both load into " + parameter +
                       ", which quantizes its input with one scale");
  }
}

}  // namespace

const HfFamilyContract* hf_family_contract(const nlohmann::json& config) {
  if (!config.is_object() || !config.contains("model_type") || !config["model_type"].is_string()) return nullptr;
  const std::string type = config["model_type"].get<std::string>();
  for (const HfFamilyContract* family : {&deepseek_v3_contract(), &llama_contract()})
    for (std::string_view t : family->model_types)
      if (t == type) return family;
  return nullptr;
}

EngineVerdict check_hf_engine(Engine engine, const HfFamilyContract& family, const LayoutConfig& config,
                              const CheckpointTensors& tensors, const Nvfp4Inventory& inventory, VerifyReport& report,
                              bool refusal_fails) {
  const HfEngineContract& contract = family.engines[static_cast<size_t>(engine)];
  EngineVerdict verdict;
  verdict.engine = std::string(engine_name(engine));
  const std::string table = "its " + std::string(family.family) + " table";
  if (config.layout != Layout::ModelOpt && config.layout != Layout::CompressedTensors) {
    verdict.reason = table + " covers ModelOpt's general layout and compressed-tensors; how it loads a " +
                     std::string(layout_name(config.layout)) + " checkpoint is not tabled";
    return verdict;
  }
  if (config.quant_algo == "MIXED_PRECISION") {
    verdict.reason = table + " covers NVFP4 and W4A16_NVFP4; how it loads a MIXED_PRECISION checkpoint is not tabled";
    return verdict;
  }
  const HfLayout layout = config.layout == Layout::ModelOpt ? HfLayout::ModelOpt : HfLayout::CompressedTensors;
  const bool w4a4 = config.activations_declared;
  const LayoutSupport* support = nullptr;
  for (const LayoutSupport& s : contract.loads)
    if (s.layout == layout) support = &s;
  const bool loads = support && (w4a4 ? support->w4a4 : support->w4a16);
  if (!loads && !(support && support->refused && refusal_fails)) {
    verdict.reason = !support          ? table + " does not cover this layout"
                     : support->refused ? "refuses this layout (fails when named with --engine): " + std::string(support->not_loaded_why)
                                        : std::string(support->not_loaded_why);
    return verdict;
  }
  verdict.checked = true;
  Findings findings(engine, report);
  // A refusal read at source is a load failure: no tensor of it loads, so none is walked.
  if (!loads) {
    findings.add("engine.layout_refused", "config.json",
                 std::string(layout_name(config.layout)) + (w4a4 ? " NVFP4" : " weight-only NVFP4") + " does not load: " +
                     std::string(support->not_loaded_why));
    return verdict;
  }
  const nlohmann::json& cj = *config.config;

  const bool inline_quant = cj.contains("quantization_config");
  const std::vector<ConfigRequirement>& requirements = layout == HfLayout::CompressedTensors ? contract.compressed_tensors_config
                                                       : inline_quant                        ? contract.modelopt_config
                                                                                             : contract.modelopt_config_without_inline;
  for (const ConfigRequirement& r : requirements) {
    const std::string problem = requirement_problem(r, config_file(config, r.file), &cj);
    if (!problem.empty()) findings.add("engine.config_field", std::string(r.file), problem + ": " + std::string(r.why));
  }

  std::vector<LoaderModule> modules;
  int64_t layers = 0;
  try {
    modules = family.modules(cj, contract);
    layers = cj.at("num_hidden_layers").get<int64_t>();
  } catch (const std::exception& e) {
    findings.add("engine.config_field", "config.json", std::string("cannot build the ") + std::string(family.family) + " model from config.json: " + e.what());
    return verdict;
  }
  int64_t group = 16;
  if (const auto g = at_pointer(cj, "/quantization_config/group_size"); g && g->is_number_integer() && g->get<int64_t>() > 0)
    group = g->get<int64_t>();
  HfExpected expected = expected_slots(modules, config, layout, w4a4, group, contract);

  verdict.skipped_why = std::string(contract.skipped_why);
  for (const TensorRef& t : tensors.tensors) {
    if (t.name.find("rotary_emb.inv_freq") != std::string::npos || (contract.skips_mtp_layers && in_mtp_layer(t.name, layers))) {
      ++verdict.tensors_skipped;
      continue;
    }
    const auto s = expected.slots.find(t.name);
    if (s == expected.slots.end()) {
      findings.add("engine.tensor_unconsumed", t.name,
                   io::quote_name(t.name) + " (" + t.file + ") loads into no parameter: " + hf_unconsumed_reason(t.name, expected, family, engine));
      continue;
    }
    Slot& slot = s->second;
    slot.filled = true;
    ++verdict.tensors_consumed;
    const std::string parameter = parameter_of(family, engine, slot.module);
    if (std::find(slot.dtypes.begin(), slot.dtypes.end(), t.dtype) == slot.dtypes.end())
      findings.add("engine.dtype", t.name,
                   io::quote_name(t.name) + " is " + std::string(dtype_name(t.dtype)) + " " + io::shape_string(t.shape) + ", but " + parameter +
                       " is created " + dtypes_text(slot.dtypes) + " " + shapes_text(slot.shapes));
    else if (std::find(slot.shapes.begin(), slot.shapes.end(), t.shape) == slot.shapes.end()) {
      const auto zero_dim = expected.zero_dim_scales.find(slot.module);
      const std::string why = t.name.ends_with(".weight_scale") ? " (one E4M3 scale per " + std::to_string(group) + " values)"
                              : zero_dim != expected.zero_dim_scales.end() ? ": " + zero_dim->second
                                                                            : "";
      findings.add("engine.shape", t.name,
                   io::quote_name(t.name) + " has shape " + io::shape_string(t.shape) + ", but " + parameter + " expects " +
                       shapes_text(slot.shapes) + why);
    }
  }
  for (const auto& [name, slot] : expected.slots) {
    if (slot.filled) {
      ++verdict.parameters_filled;
      continue;
    }
    if (!slot.required) continue;
    findings.add("engine.parameter_unfilled", name,
                 parameter_of(family, engine, slot.module) + " needs " + io::quote_name(name) + " (" + dtypes_text(slot.dtypes) + " " +
                     shapes_text(slot.shapes) + "), which the checkpoint does not hold");
  }
  check_fused_scales(family, engine, inventory, expected, findings);
  return verdict;
}

}  // namespace fp4kit::verify
