#include "convert/calibration.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "base/error.h"
#include "convert/fingerprint.h"
#include "io/quote_name.h"
#include "io/safetensors_file.h"
#include "models/fused_groups.h"

namespace fp4kit {

namespace {

// The members of a fused group share a fallback (w1 and w3, gate_proj and up_proj): they are fused
// before it is taken. Named by the group's first member.
std::string fallback_group(const std::string& projection) {
  for (const auto& group : fused_leaf_groups())
    for (std::string_view member : group)
      if (member == projection) return std::string(group.front());
  return projection;
}

std::string list_names(const std::vector<std::string>& names) {
  std::string out;
  const size_t shown = std::min<size_t>(names.size(), 5);
  for (size_t i = 0; i < shown; ++i) out += (i ? ", " : "") + io::quote_name(names[i]);
  if (names.size() > shown) out += " and " + std::to_string(names.size() - shown) + " more";
  return out;
}

}  // namespace

std::string projection_of(const std::string& module) {
  const size_t dot = module.rfind('.');
  return dot == std::string::npos ? module : module.substr(dot + 1);
}

Calibration load_calibration(const std::string& path) {
  Calibration c;
  c.path = path;
  const io::SafetensorsFile file = io::SafetensorsFile::open(path);
  Fingerprint f;
  for (const io::TensorInfo& t : file.tensors()) {
    const std::string where = path + ": tensor " + io::quote_name(t.name);
    if (!t.name.ends_with(kInputAmaxSuffix))
      throw InputError(where + ": is not a '<module>" + std::string(kInputAmaxSuffix) + "' calibration value");
    if (t.dtype != DType::F32) throw InputError(where + ": is " + std::string(dtype_name(t.dtype)) + ", not F32");
    if (!t.shape.empty()) throw InputError(where + ": has shape " + io::shape_string(t.shape) + ", not [] (0-d)");
    float v = 0;
    file.read(t, std::as_writable_bytes(std::span(&v, 1)));
    if (!std::isfinite(v) || !(v > 0.0f))
      throw InputError(where + ": input amax " + std::to_string(v) + " is not a finite positive number");
    const std::string module = t.name.substr(0, t.name.size() - kInputAmaxSuffix.size());
    c.input_amax.emplace(module, v);
    f.add(t.name);
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    f.add(uint64_t{bits});
  }
  c.fingerprint = f.hex();
  return c;
}

InputAmax resolve_input_amax(const Calibration& calibration, const std::vector<std::string>& quantized,
                             const std::vector<std::string>& known) {
  const std::set<std::string> known_set(known.begin(), known.end());
  std::vector<std::string> unknown;
  for (const auto& [module, value] : calibration.input_amax)
    if (!known_set.count(module)) unknown.push_back(module);
  if (!unknown.empty())
    throw InputError(calibration.path + ": calibrates modules the checkpoint has no expert or scaled weight for: " +
                     list_names(unknown));

  // Fused values: every member of a fused group (w1/w3, q/k/v...) takes the largest value calibrated
  // in the group; where only some members were calibrated, the others take it too (they see the
  // same input).
  std::map<std::string, float> fused = calibration.input_amax;
  for (const auto& [module, value] : calibration.input_amax) {
    float group_max = value;
    const std::vector<std::string> siblings = fused_siblings_of(module);
    for (const std::string& sibling : siblings)
      if (const auto other = calibration.input_amax.find(sibling); other != calibration.input_amax.end())
        group_max = std::max(group_max, other->second);
    fused[module] = group_max;
    for (const std::string& sibling : siblings)
      if (!calibration.input_amax.count(sibling)) fused[sibling] = group_max;
  }
  std::map<std::string, float> fallback;  // by fallback group, over every calibrated module
  for (const auto& [module, value] : fused) {
    if (module.find(".experts.") == std::string::npos) continue;
    float& f = fallback[fallback_group(projection_of(module))];
    f = std::max(f, value);
  }

  InputAmax out;
  std::vector<std::string> uncovered;
  for (const std::string& module : quantized) {
    if (const auto it = fused.find(module); it != fused.end()) {
      out.by_module[module] = it->second;
      continue;
    }
    // Only experts fall back (as the exporter's uncalibrated experts do); any other module needs
    // its own value or its fused partner's.
    const bool expert = module.find(".experts.") != std::string::npos;
    const auto fb = expert ? fallback.find(fallback_group(projection_of(module))) : fallback.end();
    if (fb == fallback.end()) {
      uncovered.push_back(module);
      continue;
    }
    out.by_module[module] = fb->second;
    out.fallbacks.push_back(module);
  }
  if (!uncovered.empty())
    throw InputError(uncovered.front().find(".experts.") != std::string::npos
                         ? calibration.path + ": has no input amax for any " + projection_of(uncovered.front()) +
                               " expert, so nothing can stand in for " + list_names(uncovered)
                         : calibration.path + ": has no input amax for " + list_names(uncovered) +
                               " (only experts fall back to another expert's value); calibrate them, or keep "
                               "them as they are with --exclude");
  return out;
}

}  // namespace fp4kit
