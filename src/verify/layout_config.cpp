#include "verify/layout_config.h"

#include <fnmatch.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "base/error.h"
#include "io/strict_json.h"

namespace fp4kit::verify {

namespace {

constexpr int64_t kGroupSize = 16;

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }
// Reads and parses one JSON file; nullopt (with a finding when it exists but is bad) otherwise.
std::optional<nlohmann::json> read_json(const std::string& path, const std::string& label, VerifyReport& report) {
  if (!std::filesystem::exists(path)) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  try {
    nlohmann::json j = io::parse_strict_json(text.str(), path);
    if (!j.is_object()) {
      report.add("config.malformed", Severity::Fail, label, path + ": is a JSON " + std::string(j.type_name()) + ", not an object");
      return std::nullopt;
    }
    return j;
  } catch (const InputError& e) {
    report.add("config.malformed", Severity::Fail, label, e.what());
    return std::nullopt;
  }
}

const nlohmann::json* field(const nlohmann::json& j, const std::string& key) {
  if (!j.is_object()) return nullptr;
  const auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

std::string string_field(const nlohmann::json& j, const std::string& key) {
  const nlohmann::json* f = field(j, key);
  return f && f->is_string() ? f->get<std::string>() : "";
}

std::vector<std::string> string_list(const nlohmann::json* j) {
  std::vector<std::string> out;
  if (j && j->is_array())
    for (const auto& v : *j)
      if (v.is_string()) out.push_back(v.get<std::string>());
  return out;
}

// Group sizes must be 16: the NVFP4 block every engine kernel assumes.
void check_group_size(const nlohmann::json& holder, const std::string& where, bool required, VerifyReport& report,
                      const std::string& label) {
  const nlohmann::json* g = field(holder, "group_size");
  if (!g) {
    if (required)
      report.add("config.field_missing", Severity::Fail, label, where + ": no group_size (the engines require it; NVFP4 needs 16)");
    return;
  }
  if (!g->is_number_integer() || g->get<int64_t>() != kGroupSize)
    report.add("config.group_size", Severity::Fail, label, where + ": group_size is " + g->dump() + ", NVFP4 needs 16");
}

void read_quantized_layers(const nlohmann::json* layers, const std::string& where, LayoutConfig& out,
                           VerifyReport& report, const std::string& label) {
  if (!layers || !layers->is_object()) {
    report.add("config.field_missing", Severity::Fail, label,
               where + ": quant_algo MIXED_PRECISION without a quantized_layers object (the engines cannot tell which "
                       "modules are NVFP4)");
    return;
  }
  for (const auto& [module, entry] : layers->items()) {
    const std::string at = where + ".quantized_layers['" + module + "']";
    if (string_field(entry, "quant_algo") != "NVFP4")
      report.add("config.quant_algo", Severity::Fail, module,
                 at + ": quant_algo is " + (field(entry, "quant_algo") ? field(entry, "quant_algo")->dump() : "missing") +
                     ", expected \"NVFP4\"");
    check_group_size(entry, at, true, report, module);
    out.quantized_layers.emplace(module, entry);
  }
}

std::set<std::string> as_set(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }

void read_modelopt_hf(const nlohmann::json& hf, const std::string& path, LayoutConfig& out, VerifyReport& report) {
  const std::string label = "hf_quant_config.json";
  const nlohmann::json* q = field(hf, "quantization");
  if (!q || !q->is_object()) {
    report.add("config.field_missing", Severity::Fail, label, path + ": no \"quantization\" object");
    return;
  }
  if (const nlohmann::json* p = field(hf, "producer"))
    out.producer = string_field(*p, "name") + (string_field(*p, "version").empty() ? "" : " " + string_field(*p, "version"));
  out.quant_algo = string_field(*q, "quant_algo");
  if (out.quant_algo != "NVFP4" && out.quant_algo != "W4A16_NVFP4" && out.quant_algo != "MIXED_PRECISION")
    report.add("config.quant_algo", Severity::Fail, label,
               path + ": quantization.quant_algo is " + (field(*q, "quant_algo") ? field(*q, "quant_algo")->dump() : "missing") +
                   ", expected \"NVFP4\", \"W4A16_NVFP4\" or \"MIXED_PRECISION\"");
  check_group_size(*q, path + ": quantization", true, report, label);
  if (!field(*q, "kv_cache_quant_algo"))
    report.add("config.field_missing", Severity::Fail, label,
               path + ": quantization has no kv_cache_quant_algo (vLLM requires the key, null for none)");
  const nlohmann::json* ex = field(*q, "exclude_modules");
  if (!ex || !ex->is_array())
    report.add("config.field_missing", Severity::Fail, label,
               path + ": quantization has no exclude_modules list (vLLM requires it)");
  out.exclude = string_list(ex);
  if (out.quant_algo == "MIXED_PRECISION") read_quantized_layers(field(*q, "quantized_layers"), path + ": quantization", out, report, label);
  out.activations_declared = out.quant_algo == "NVFP4";
}

}  // namespace

std::string_view layout_name(Layout l) {
  switch (l) {
    case Layout::ModelOptV4Mixed: return "modelopt-v4-mixed";
    case Layout::ModelOpt: return "modelopt";
    case Layout::CompressedTensors: return "compressed-tensors";
    case Layout::Unknown: break;
  }
  return "unknown";
}

std::string module_of_weight(const std::string& weight) {
  for (std::string_view suffix : {".weight_packed", ".weight"})
    if (weight.ends_with(suffix)) return weight.substr(0, weight.size() - suffix.size());
  return weight;
}

namespace {
bool pattern_matches(const std::string& pattern, const std::string& module) {
  if (starts_with(pattern, "re:")) {
    try {
      return std::regex_match(module, std::regex(pattern.substr(3)));
    } catch (const std::regex_error&) {
      return false;
    }
  }
  if (pattern == module) return true;
  if (starts_with(module, pattern + ".")) return true;
  // fnmatch on the module and on its weight's name (ModelOpt's exclude patterns match either).
  return fnmatch(pattern.c_str(), module.c_str(), 0) == 0 || fnmatch(pattern.c_str(), (module + ".weight").c_str(), 0) == 0;
}
}  // namespace

bool is_excluded(const LayoutConfig& config, const std::string& module) {
  for (const std::string& pattern : config.exclude)
    if (pattern_matches(pattern, module) || pattern_matches(pattern, "model." + module)) return true;
  return false;
}

std::string quantized_layer_of(const LayoutConfig& config, const std::string& module) {
  for (const auto& [prefix, entry] : config.quantized_layers)
    if (module == prefix || starts_with(module, prefix + ".")) return prefix;
  return "";
}

LayoutConfig read_layout_config(const std::string& dir, VerifyReport& report) {
  LayoutConfig out;
  const std::string config_path = dir + "/config.json", hf_path = dir + "/hf_quant_config.json";
  out.config = read_json(config_path, "config.json", report);
  out.hf_quant = read_json(hf_path, "hf_quant_config.json", report);
  if (!out.config && !std::filesystem::exists(config_path))
    report.add("config.missing", Severity::Fail, "config.json", config_path + ": missing (the engines read the model and its quantization from it)");

  const nlohmann::json* qc = out.config ? field(*out.config, "quantization_config") : nullptr;
  if (qc && !qc->is_object()) {
    report.add("config.malformed", Severity::Fail, "config.json", config_path + ": quantization_config is not an object");
    qc = nullptr;
  }
  const std::string method = qc ? string_field(*qc, "quant_method") : "";
  const std::string cq = "config.json: quantization_config";

  if (method == "compressed-tensors") {
    out.layout = Layout::CompressedTensors;
    out.quant_algo = "NVFP4";
    const nlohmann::json* groups = field(*qc, "config_groups");
    if (!groups || !groups->is_object() || groups->empty()) {
      report.add("config.field_missing", Severity::Fail, "config.json", cq + " has no config_groups");
    } else {
      bool activations = false;
      for (const auto& [name, group] : groups->items()) {
        const std::string at = cq + ".config_groups." + name;
        const std::string format = string_field(group, "format").empty() ? string_field(*qc, "format") : string_field(group, "format");
        if (format != "nvfp4-pack-quantized")
          report.add("config.quant_algo", Severity::Fail, "config.json",
                     at + ": format is \"" + format + "\", expected \"nvfp4-pack-quantized\"");
        const nlohmann::json* w = field(group, "weights");
        if (!w || !w->is_object()) {
          report.add("config.field_missing", Severity::Fail, "config.json", at + " has no weights scheme");
          continue;
        }
        if (!field(*w, "num_bits") || field(*w, "num_bits")->dump() != "4" || string_field(*w, "type") != "float")
          report.add("config.quant_algo", Severity::Fail, "config.json", at + ".weights is not num_bits 4, type float (NVFP4)");
        if (string_field(*w, "strategy") != "tensor_group")
          report.add("config.quant_algo", Severity::Fail, "config.json",
                     at + ".weights.strategy is \"" + string_field(*w, "strategy") + "\", NVFP4 needs \"tensor_group\"");
        check_group_size(*w, at + ".weights", true, report, "config.json");
        const nlohmann::json* a = field(group, "input_activations");
        if (a && a->is_object()) {
          const nlohmann::json* dyn = field(*a, "dynamic");
          activations = activations || !(dyn && dyn->is_boolean() && dyn->get<bool>());
        }
      }
      out.activations_declared = activations;
    }
    out.exclude = string_list(field(*qc, "ignore"));
    // compressed-tensors matches ignore entries exactly or as "re:" regular expressions, never as globs.
    for (const std::string& pattern : out.exclude)
      if (!starts_with(pattern, "re:") && pattern.find_first_of("*?[") != std::string::npos)
        report.add("config.ignore_glob", Severity::Warn, pattern,
                   cq + ".ignore entry '" + pattern + "' is a glob; compressed-tensors matches ignore entries exactly or "
                   "as 're:' regular expressions, so it may match no module");
    if (const nlohmann::json* v = field(*qc, "version")) out.producer = "compressed-tensors " + (v->is_string() ? v->get<std::string>() : v->dump());
    else out.producer = "compressed-tensors";
    return out;
  }

  if ((method == "fp8" || method == "deepseek_v4_fp8") && (field(*qc, "moe_quant_algo") || out.hf_quant)) {
    // DeepSeek V4 experts-only: vLLM's DeepseekV4FP8Config (which takes either quant_method) picks
    // NVFP4 experts by moe_quant_algo.
    out.layout = Layout::ModelOptV4Mixed;
    if (string_field(*qc, "moe_quant_algo") != "NVFP4")
      report.add(field(*qc, "moe_quant_algo") ? "config.quant_algo" : "config.field_missing", Severity::Fail, "config.json",
                 cq + ".moe_quant_algo is " + (field(*qc, "moe_quant_algo") ? field(*qc, "moe_quant_algo")->dump() : "missing") +
                     ": vLLM and SGLang then load the routed experts as MXFP4, not NVFP4");
    out.quant_algo = string_field(*qc, "quant_algo");
    if (out.quant_algo != "MIXED_PRECISION")
      report.add(field(*qc, "quant_algo") ? "config.quant_algo" : "config.field_missing", Severity::Fail, "config.json",
                 cq + ".quant_algo is " + (field(*qc, "quant_algo") ? field(*qc, "quant_algo")->dump() : "missing") +
                     ", expected \"MIXED_PRECISION\" (FP8 blocks + NVFP4 experts)");
    check_group_size(*qc, cq, true, report, "config.json");
    read_quantized_layers(field(*qc, "quantized_layers"), cq, out, report, "config.json");
    out.exclude = string_list(field(*qc, "ignore"));
    if (!field(*qc, "ignore")) report.add("config.field_missing", Severity::Fail, "config.json", cq + " has no ignore list");
    const nlohmann::json* groups = field(*qc, "config_groups");
    const nlohmann::json* g0 = groups ? field(*groups, "group_0") : nullptr;
    if (!g0) report.add("config.field_missing", Severity::Fail, "config.json", cq + " has no config_groups.group_0");
    else {
      check_group_size(g0 && field(*g0, "weights") ? *field(*g0, "weights") : nlohmann::json::object(), cq + ".config_groups.group_0.weights", true, report, "config.json");
      const nlohmann::json* a = field(*g0, "input_activations");
      out.activations_declared = a && a->is_object() && !(field(*a, "dynamic") && field(*a, "dynamic")->is_boolean() && field(*a, "dynamic")->get<bool>());
    }
    if (const nlohmann::json* p = field(*qc, "producer"))
      out.producer = string_field(*p, "name") + (string_field(*p, "version").empty() ? "" : " " + string_field(*p, "version"));
    if (out.hf_quant) {
      LayoutConfig hf;
      VerifyReport hf_report;
      read_modelopt_hf(*out.hf_quant, hf_path, hf, hf_report);
      for (Finding& f : hf_report.findings) report.findings.push_back(std::move(f));
      if (hf.quant_algo != out.quant_algo)
        report.add("config.mismatch", Severity::Fail, "hf_quant_config.json",
                   "hf_quant_config.json says quant_algo \"" + hf.quant_algo + "\", config.json \"" + out.quant_algo + "\"");
      std::set<std::string> a, b;
      for (const auto& [k, v] : hf.quantized_layers) a.insert(k);
      for (const auto& [k, v] : out.quantized_layers) b.insert(k);
      if (a != b)
        report.add("config.mismatch", Severity::Fail, "hf_quant_config.json",
                   "hf_quant_config.json and config.json list different quantized_layers (" + std::to_string(a.size()) +
                       " vs " + std::to_string(b.size()) + " entries)");
      if (as_set(hf.exclude) != as_set(out.exclude))
        report.add("config.mismatch", Severity::Fail, "hf_quant_config.json",
                   "hf_quant_config.json exclude_modules and config.json quantization_config.ignore differ");
    }
    return out;
  }

  // vLLM and SGLang both take modelopt_fp4 as a ModelOpt NVFP4 quant_method (docs/verify.md's sources).
  const bool modelopt_method = method == "modelopt" || method == "modelopt_fp4";
  if (modelopt_method || out.hf_quant) {
    out.layout = Layout::ModelOpt;
    if (out.hf_quant) {
      read_modelopt_hf(*out.hf_quant, hf_path, out, report);
      if (qc) {
        const std::string algo = string_field(*qc, "quant_algo");
        if (!modelopt_method)
          report.add("config.quant_method", Severity::Fail, "config.json",
                     cq + ".quant_method is \"" + method + "\" but hf_quant_config.json is a ModelOpt NVFP4 config");
        else if (algo != out.quant_algo)
          report.add("config.mismatch", Severity::Fail, "config.json",
                     cq + ".quant_algo is \"" + algo + "\", hf_quant_config.json says \"" + out.quant_algo + "\"");
        if (field(*qc, "ignore") && as_set(string_list(field(*qc, "ignore"))) != as_set(out.exclude))
          report.add("config.mismatch", Severity::Fail, "config.json",
                     cq + ".ignore differs from hf_quant_config.json exclude_modules");
      }
    } else {
      // config.json alone (ModelOpt >= 0.31 writes it there): vLLM reads `ignore` as exclude_modules.
      out.quant_algo = string_field(*qc, "quant_algo");
      if (out.quant_algo != "NVFP4" && out.quant_algo != "W4A16_NVFP4" && out.quant_algo != "MIXED_PRECISION")
        report.add("config.quant_algo", Severity::Fail, "config.json",
                   cq + ".quant_algo is \"" + out.quant_algo + "\", expected \"NVFP4\", \"W4A16_NVFP4\" or \"MIXED_PRECISION\"");
      if (!field(*qc, "ignore")) report.add("config.field_missing", Severity::Fail, "config.json", cq + " has no ignore list");
      out.exclude = string_list(field(*qc, "ignore"));
      if (out.quant_algo == "MIXED_PRECISION") read_quantized_layers(field(*qc, "quantized_layers"), cq, out, report, "config.json");
      else if (const nlohmann::json* groups = field(*qc, "config_groups"); groups && field(*groups, "group_0") &&
                                                                         field(*field(*groups, "group_0"), "weights"))
        check_group_size(*field(*field(*groups, "group_0"), "weights"), cq + ".config_groups.group_0.weights", true, report, "config.json");
      else
        check_group_size(*qc, cq, true, report, "config.json");
      out.activations_declared = out.quant_algo == "NVFP4";
      if (const nlohmann::json* p = field(*qc, "producer"))
        out.producer = string_field(*p, "name") + (string_field(*p, "version").empty() ? "" : " " + string_field(*p, "version"));
    }
    return out;
  }
  return out;  // Unknown: the structure checks say what is missing once they know the tensors
}

}  // namespace fp4kit::verify
