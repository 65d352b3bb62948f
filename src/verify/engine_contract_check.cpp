#include "verify/engine_contract_check.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <regex>
#include <string>

#include "io/quote_name.h"
#include "io/tensor_info.h"
#include "models/deepseek_v4.h"
#include "verify/config_requirement.h"
#include "verify/engine_contract_check_hf.h"
#include "verify/engine_findings.h"

namespace fp4kit::verify {

namespace {

const std::vector<std::regex>& row_patterns() {
  static const std::vector<std::regex> patterns = [] {
    std::vector<std::regex> p;
    for (const LoadRow& row : deepseek_v4_load_rows()) p.emplace_back(std::string(row.pattern), std::regex::ECMAScript | std::regex::optimize);
    return p;
  }();
  return patterns;
}

std::vector<std::string_view> suffixes(LoadFormat format, bool nvfp4_experts) {
  switch (format) {
    case LoadFormat::Plain: return {};
    case LoadFormat::Fp8Block: return {"weight", "scale"};
    case LoadFormat::RoutedExpert:
      if (nvfp4_experts) return {"weight", "weight_scale", "weight_scale_2", "input_scale"};
      return {"weight", "scale"};
  }
  return {};
}

std::string_view format_text(LoadFormat format, bool nvfp4_experts) {
  switch (format) {
    case LoadFormat::Plain: return "a plain tensor";
    case LoadFormat::Fp8Block: return "FP8 block (.weight, .scale)";
    case LoadFormat::RoutedExpert:
      return nvfp4_experts ? "NVFP4 (.weight, .weight_scale, .weight_scale_2, .input_scale)" : "MXFP4 (.weight, .scale)";
  }
  return "";
}

struct RowMatch {
  size_t row;
  std::string module, suffix;  // suffix "" for a plain tensor
};

// The row that consumes tensor `name`, if any.
std::optional<RowMatch> match_row(const std::string& name, bool nvfp4_experts) {
  const auto& rows = deepseek_v4_load_rows();
  const auto& patterns = row_patterns();
  const size_t dot = name.rfind('.');
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].format == LoadFormat::Plain) {
      if (std::regex_match(name, patterns[i])) return RowMatch{i, name, ""};
      continue;
    }
    if (dot == std::string::npos) continue;
    const std::string module = name.substr(0, dot), suffix = name.substr(dot + 1);
    for (std::string_view s : suffixes(rows[i].format, nvfp4_experts))
      if (s == suffix && std::regex_match(module, patterns[i])) return RowMatch{i, module, suffix};
  }
  return std::nullopt;
}

// Why nothing consumes `name`: a module the engine does load, but in a format without this suffix.
std::string unconsumed_reason(const std::string& name, Engine engine, bool nvfp4_experts) {
  const auto& rows = deepseek_v4_load_rows();
  const auto& patterns = row_patterns();
  const size_t dot = name.rfind('.');
  if (dot != std::string::npos) {
    const std::string module = name.substr(0, dot), suffix = name.substr(dot + 1);
    for (size_t i = 0; i < rows.size(); ++i) {
      const bool module_known = rows[i].format == LoadFormat::Plain ? std::regex_match(module + ".weight", patterns[i])
                                                                     : std::regex_match(module, patterns[i]);
      if (module_known)
        return "'" + module + "' loads into " + std::string(rows[i].parameter[static_cast<size_t>(engine)]) + ", which is " +
               std::string(format_text(rows[i].format, nvfp4_experts)) + ": no slot for '." + suffix + "' (the loader's " +
               "params_dict lookup fails)";
    }
  }
  return "no parameter of its DeepSeek V4 model has this name (names it loads: DS-native layers.N.attn/ffn..., "
         "experts w1/w2/w3)";
}

std::string parameter_text(const LoadRow& row, Engine engine, const RowMatch& m) {
  std::string p(row.parameter[static_cast<size_t>(engine)]);
  const bool w2 = m.module.ends_with(".w2");
  for (auto [key, value] : {std::pair<std::string, std::string>{"{proj}", w2 ? "w2" : "w13"}, {"{suffix}", m.suffix}})
    for (size_t at; (at = p.find(key)) != std::string::npos;) p.replace(at, key.size(), value);
  return p;
}

struct Expected {
  DType dtype;
  std::vector<int64_t> shape;
  bool filled = false;
};

// Every tensor the loader fills, with dtype and shape as it creates the parameter: the official
// layout's, except routed experts as NVFP4 when config.json says so.
bool contract_skips(const EngineContract& contract, const std::string& name) {
  for (std::string_view prefix : contract.skipped_prefixes)
    if (name.starts_with(prefix)) return true;
  return false;
}

std::map<std::string, Expected> expected_tensors(const DeepseekV4Config& cfg, const EngineContract& contract, bool nvfp4_experts) {
  std::map<std::string, Expected> out;
  for (const TensorSpec& spec : deepseek_v4_tensors(cfg)) {
    if (contract_skips(contract, spec.name)) continue;
    if (spec.role == TensorRole::RoutedExpert && spec.storage == Storage::Mxfp4 && nvfp4_experts) {
      if (spec.is_scale) continue;
      const std::string module = spec.name.substr(0, spec.name.size() - std::string_view(".weight").size());
      const int64_t n = spec.shape[0], k = spec.shape[1] * 2;  // MXFP4 packs two values per byte
      out[module + ".weight"] = {DType::U8, {n, k / 2}};
      out[module + ".weight_scale"] = {DType::F8_E4M3, {n, k / contract.nvfp4_group}};
      out[module + ".weight_scale_2"] = {DType::F32, {}};
      if (contract.reads_input_scales) out[module + ".input_scale"] = {DType::F32, {}};
      continue;
    }
    out[spec.name] = {spec.dtype, spec.shape};
  }
  return out;
}

}  // namespace

const nlohmann::json* config_file(const LayoutConfig& config, std::string_view file) {
  if (file == "config.json") return config.config ? &*config.config : nullptr;
  return config.hf_quant ? &*config.hf_quant : nullptr;
}

std::optional<nlohmann::json> at_pointer(const nlohmann::json& j, std::string_view pointer) {
  try {
    const nlohmann::json::json_pointer p{std::string(pointer)};
    if (!j.contains(p)) return std::nullopt;
    return j.at(p);
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;  // a parent that is not an object: the field is not there
  }
}

// "" when the requirement holds, else what is wrong.
std::string requirement_problem(const ConfigRequirement& r, const nlohmann::json* file, const nlohmann::json* model_config) {
  if (!file) return r.file_optional ? "" : std::string(r.file) + " is missing or not valid JSON";
  const std::optional<nlohmann::json> v = at_pointer(*file, r.pointer);
  const std::string where = std::string(r.file) + " " + std::string(r.pointer);
  switch (r.need) {
    case ConfigNeed::Present:
      return v ? "" : where + " is missing";
    case ConfigNeed::Equals:
    case ConfigNeed::AbsentOrEquals: {
      if (!v) return r.need == ConfigNeed::AbsentOrEquals ? "" : where + " is missing, the loader needs " + std::string(r.value);
      const nlohmann::json want = nlohmann::json::parse(r.value);
      return *v == want ? "" : where + " is " + v->dump() + ", the loader needs " + want.dump();
    }
    case ConfigNeed::OneOf:
    case ConfigNeed::AbsentOrOneOf: {
      if (!v) return r.need == ConfigNeed::AbsentOrOneOf ? "" : where + " is missing, the loader needs one of " + std::string(r.value);
      for (const nlohmann::json& want : nlohmann::json::parse(r.value))
        if (*v == want) return "";
      return where + " is " + v->dump() + ", the loader needs one of " + std::string(r.value);
    }
    case ConfigNeed::StartsWithNoCase: {
      const std::string prefix = nlohmann::json::parse(r.value).get<std::string>();
      if (!v) return where + " is missing, the loader needs a string starting with \"" + prefix + "\"";
      std::string text = v->is_string() ? v->get<std::string>() : "";
      std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      return text.starts_with(prefix) ? "" : where + " is " + v->dump() + ", the loader needs a string starting with \"" + prefix + "\"";
    }
    case ConfigNeed::LayerList: {
      if (!v) return where + " is missing";
      if (!v->is_array()) return where + " is not a list";
      for (const nlohmann::json& e : *v)
        if (!e.is_number_integer()) return where + " holds " + e.dump() + ", not an integer";
      const nlohmann::json* layers = model_config && model_config->contains("num_hidden_layers") ? &(*model_config)["num_hidden_layers"] : nullptr;
      if (layers && layers->is_number_integer() && static_cast<int64_t>(v->size()) < layers->get<int64_t>())
        return where + " has " + std::to_string(v->size()) + " entries for " + layers->dump() + " layers";
      return "";
    }
    case ConfigNeed::FlatObject: {
      if (!v) return "";
      if (!v->is_object()) return where + " is " + std::string(v->type_name()) + ", not a dict";
      for (const auto& [key, value] : v->items())
        if (value.is_object()) return where + " is nested per component ('" + key + "' is a dict), the loader reads one flat dict";
      return "";
    }
  }
  return "";
}

namespace {

EngineVerdict check_engine(Engine engine, const LayoutConfig& config, const CheckpointTensors& tensors, const Nvfp4Inventory& inventory,
                           VerifyReport& report) {
  const EngineContract& contract = deepseek_v4_contract(engine);
  EngineVerdict verdict;
  verdict.engine = std::string(engine_name(engine));
  if (config.layout != Layout::ModelOptV4Mixed) {
    verdict.reason = "its table covers DeepSeek V4 in NVIDIA's release layout (modelopt-v4-mixed); how it loads a " +
                     std::string(layout_name(config.layout)) + " checkpoint is not tabled";
    return verdict;
  }
  if (!config.config) {
    verdict.reason = "no readable config.json (reported by the config checks)";
    return verdict;
  }
  const nlohmann::json& cj = *config.config;
  if (cj.contains("model_type") && cj["model_type"] != contract.model_type) {
    verdict.reason = "its table covers model_type \"" + std::string(contract.model_type) + "\", this is " + cj["model_type"].dump() +
                     " (the other tabled model types: deepseek_v3, deepseek_v32, kimi_k2, llama, qwen3_moe)";
    return verdict;
  }
  bool any_input_scale = false;
  for (const Nvfp4Module& m : inventory.modules) any_input_scale = any_input_scale || !m.input_scale.empty();
  if (contract.reads_input_scales && !inventory.modules.empty() && !any_input_scale) {
    verdict.reason = "a weight-only export: " + std::string(contract.input_scales_why) + ", and this checkpoint has no input scales";
    return verdict;
  }
  verdict.checked = true;
  Findings findings(engine, report);

  for (const ConfigRequirement& r : contract.config) {
    const std::string problem = requirement_problem(r, config_file(config, r.file), &cj);
    if (!problem.empty()) findings.add("engine.config_field", std::string(r.file), problem + ": " + std::string(r.why));
  }

  const bool nvfp4_experts = at_pointer(cj, "/quantization_config/moe_quant_algo") == nlohmann::json("NVFP4");
  std::map<std::string, Expected> expected;
  try {
    const DeepseekV4Config cfg = DeepseekV4Config::from_json(cj, "config.json");
    // The model is built tensor by tensor: a config describing absurdly many would exhaust memory
    // before it said anything (V4 Pro: 62 blocks x 384 experts, 24k expert blocks).
    const auto within = [](int64_t v, int64_t most) { return v >= 0 && v <= most; };
    if (!within(cfg.num_hidden_layers, 10'000) || !within(cfg.num_nextn_predict_layers, 100) ||
        !within(cfg.n_routed_experts, 100'000) ||
        (cfg.num_hidden_layers + cfg.num_nextn_predict_layers) * cfg.n_routed_experts > 200'000) {
      findings.add("engine.config_field", "config.json",
                   "config.json describes " + std::to_string(cfg.num_hidden_layers) + " layers, " +
                       std::to_string(cfg.num_nextn_predict_layers) + " MTP blocks and " + std::to_string(cfg.n_routed_experts) +
                       " experts, beyond any checkpoint; the model is not built");
      return verdict;
    }
    expected = expected_tensors(cfg, contract, nvfp4_experts);
  } catch (const std::exception& e) {
    findings.add("engine.config_field", "config.json", std::string("cannot build the model from config.json: ") + e.what());
    return verdict;
  }

  const auto& rows = deepseek_v4_load_rows();
  verdict.skipped_why = std::string(contract.skipped_why);
  for (const TensorRef& t : tensors.tensors) {
    if (contract_skips(contract, t.name)) {
      ++verdict.tensors_skipped;
      continue;
    }
    const std::optional<RowMatch> m = match_row(t.name, nvfp4_experts);
    if (!m || rows[m->row].parameter[static_cast<size_t>(engine)].empty()) {
      findings.add("engine.tensor_unconsumed", t.name,
                   io::quote_name(t.name) + " (" + t.file + ") loads into no parameter: " + unconsumed_reason(t.name, engine, nvfp4_experts));
      continue;
    }
    const std::string parameter = parameter_text(rows[m->row], engine, *m);
    const auto e = expected.find(t.name);
    if (e == expected.end()) {
      findings.add("engine.tensor_unconsumed", t.name,
                   io::quote_name(t.name) + " (" + t.file + ") would load into " + parameter +
                       ", but the model config.json describes has no such tensor (layer count, compress_ratios, hash layers, "
                       "experts or the routed experts' format say otherwise)");
      continue;
    }
    e->second.filled = true;
    ++verdict.tensors_consumed;
    if (t.dtype != e->second.dtype)
      findings.add("engine.dtype", t.name,
                   io::quote_name(t.name) + " is " + std::string(dtype_name(t.dtype)) + " " + io::shape_string(t.shape) + ", but " +
                       parameter + " is created " + std::string(dtype_name(e->second.dtype)) + " " + io::shape_string(e->second.shape));
    else if (t.shape != e->second.shape)
      findings.add("engine.shape", t.name,
                   io::quote_name(t.name) + " has shape " + io::shape_string(t.shape) + ", but " + parameter + " expects " +
                       io::shape_string(e->second.shape) +
                       (m->suffix == "weight_scale" ? " (one E4M3 scale per " + std::to_string(contract.nvfp4_group) + " values)" : ""));
  }
  for (const auto& [name, e] : expected) {
    if (e.filled) {
      ++verdict.parameters_filled;
      continue;
    }
    const std::optional<RowMatch> m = match_row(name, nvfp4_experts);
    const std::string parameter = m ? parameter_text(rows[m->row], engine, *m) : name;
    findings.add("engine.parameter_unfilled", name,
                 parameter + " needs " + io::quote_name(name) + " (" + std::string(dtype_name(e.dtype)) + " " + io::shape_string(e.shape) +
                     "), which the checkpoint does not hold");
  }
  return verdict;
}

}  // namespace

void check_engine_contracts(const std::vector<Engine>& engines, bool refusal_fails, const LayoutConfig& config,
                            const CheckpointTensors& tensors, const Nvfp4Inventory& inventory, VerifyReport& report) {
  const HfFamilyContract* family = config.config ? hf_family_contract(*config.config) : nullptr;
  for (Engine engine : engines)
    report.engines.push_back(family ? check_hf_engine(engine, *family, config, tensors, inventory, report, refusal_fails)
                                    : check_engine(engine, config, tensors, inventory, report));
}

}  // namespace fp4kit::verify
