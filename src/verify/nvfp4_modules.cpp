#include "verify/nvfp4_modules.h"

#include <cmath>
#include <cstring>
#include <map>

#include "base/error.h"
#include "io/quote_name.h"
#include "models/fused_groups.h"

namespace fp4kit::verify {

namespace {

std::optional<float> read_f32_scalar(const io::Checkpoint& ckpt, const std::string& name) {
  const auto [file, info] = ckpt.find(name);
  if (!file || info->dtype != DType::F32 || info->numel() != 1) return std::nullopt;
  float v = 0;
  file->read(*info, std::as_writable_bytes(std::span(&v, 1)));
  return v;
}

std::string exact_number(double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string name_in_file(const CheckpointTensors& tensors, const std::string& name) {
  const TensorRef* t = tensors.find(name);
  return io::quote_name(name) + (t ? " in " + t->file : "");
}

}  // namespace

double Nvfp4Module::global_multiplier() const {
  if (!global_value) return 0.0;
  return compressed_tensors ? 1.0 / static_cast<double>(*global_value) : static_cast<double>(*global_value);
}

Nvfp4Inventory check_nvfp4_modules(const io::Checkpoint& ckpt, const CheckpointTensors& tensors,
                                   const LayoutConfig& config, VerifyReport& report) {
  Nvfp4Inventory inv;
  const WeightPairing pairing = pair_quantized_weights(tensors.tensors);
  for (const std::string& p : pairing.problems) {
    // The pairing names the tensor in quotes; keep the first quoted name as the subject.
    std::string subject;
    if (const size_t a = p.find('\''); a != std::string::npos)
      if (const size_t b = p.find('\'', a + 1); b != std::string::npos) subject = p.substr(a + 1, b - a - 1);
    report.add("nvfp4.pairing", Severity::Fail, subject, ckpt.dir() + "/" + p);
  }
  inv.pairing_clean = pairing.problems.empty();
  inv.plain = pairing.plain;

  for (const QuantizedWeight& q : pairing.quantized) {
    if (q.storage != Storage::Nvfp4) {
      inv.other_quantized.push_back(q);
      continue;
    }
    Nvfp4Module m;
    m.weight = q.weight;
    m.module = module_of_weight(q.weight);
    m.block_scale = q.scale;
    m.logical_shape = q.logical_shape;
    m.compressed_tensors = q.weight.ends_with(".weight_packed");
    for (const std::string& c : q.companions) {
      if (c.ends_with(".weight_scale_2") || c.ends_with(".weight_global_scale")) m.global_scale = c;
      if (c.ends_with(".input_scale") || c.ends_with(".input_global_scale")) m.input_scale = c;
    }
    // Names of one layout only: engines look for exactly one set.
    const bool ct_global = m.global_scale.ends_with(".weight_global_scale");
    const bool ct_input = m.input_scale.empty() ? m.compressed_tensors : m.input_scale.ends_with(".input_global_scale");
    if (m.compressed_tensors != ct_global || m.compressed_tensors != ct_input)
      report.add("nvfp4.mixed_names", Severity::Fail, m.weight,
                 "NVFP4 weight " + name_in_file(tensors, m.weight) + " mixes ModelOpt and compressed-tensors names (" +
                     m.global_scale + (m.input_scale.empty() ? "" : ", " + m.input_scale) + ")");
    if (config.layout == Layout::CompressedTensors && !m.compressed_tensors)
      report.add("nvfp4.layout_mismatch", Severity::Fail, m.weight,
                 "config.json declares compressed-tensors but " + name_in_file(tensors, m.weight) +
                     " has ModelOpt names (weight_scale_2); compressed-tensors loads 'weight_packed' and 'weight_global_scale'");
    if ((config.layout == Layout::ModelOpt || config.layout == Layout::ModelOptV4Mixed) && m.compressed_tensors)
      report.add("nvfp4.layout_mismatch", Severity::Fail, m.weight,
                 "config declares ModelOpt but " + name_in_file(tensors, m.weight) +
                     " has compressed-tensors names; ModelOpt loads 'weight' and 'weight_scale_2'");
    // Per-tensor scales: ModelOpt writes 0-d, compressed-tensors [1].
    for (const std::string& s : {m.global_scale, m.input_scale}) {
      if (s.empty()) continue;
      const TensorRef* t = tensors.find(s);
      if (t && !t->shape.empty() == !m.compressed_tensors)
        report.add("nvfp4.scale_shape", Severity::Warn, s,
                   name_in_file(tensors, s) + " is F32 " + io::shape_string(t->shape) + "; " +
                       (m.compressed_tensors ? "compressed-tensors writes [1]" : "ModelOpt writes a 0-d scalar []"));
    }
    m.global_value = read_f32_scalar(ckpt, m.global_scale);
    if (!m.input_scale.empty()) m.input_value = read_f32_scalar(ckpt, m.input_scale);
    // The engines divide by these: 1/input_scale (ModelOpt), 1/weight_global_scale (CT); a zero,
    // negative or non-finite value breaks the GEMM's alpha.
    auto check_value = [&](const std::string& name, const std::optional<float>& v, const char* check) {
      if (!v) return;
      const float x = *v;
      std::string what;
      if (std::isnan(x)) what = "NaN";
      else if (std::isinf(x)) what = x > 0 ? "+Inf" : "-Inf";
      else if (x == 0.0f) what = "zero";
      else if (x < 0.0f) what = "negative (" + exact_number(x) + ")";
      if (!what.empty())
        report.add(check, Severity::Fail, name,
                   name_in_file(tensors, name) + " is " + what + "; the engines divide by it or multiply the GEMM output by it");
    };
    check_value(m.global_scale, m.global_value, "scale.global_invalid");
    check_value(m.input_scale, m.input_value, "scale.input_invalid");
    inv.modules.push_back(std::move(m));
  }
  std::sort(inv.modules.begin(), inv.modules.end(), [](const auto& a, const auto& b) { return a.module < b.module; });

  // Input scales: on all NVFP4 weights or on none.
  size_t with_input = 0;
  for (const Nvfp4Module& m : inv.modules) with_input += !m.input_scale.empty();
  if (with_input == 0 && !inv.modules.empty() && config.activations_declared)
    report.add("nvfp4.no_input_scale", Severity::Warn, "",
               "no NVFP4 weight has an input scale although the config declares NVFP4 activations: weight-only output; "
               "vLLM's ModelOpt NVFP4 MoE method then runs with uninitialised activation scales (serve with a "
               "weight-only kernel or convert with calibration)");
  if (with_input > 0 && with_input < inv.modules.size()) {
    std::vector<std::string> lacking;
    for (const Nvfp4Module& m : inv.modules)
      if (m.input_scale.empty()) lacking.push_back(m.module);
    for (const std::string& module : lacking)
      report.add("nvfp4.input_scale_missing", Severity::Fail, module,
                 "NVFP4 module " + io::quote_name(module) + " has no input scale (" +
                     io::quote_name(module + (inv.modules.front().compressed_tensors ? ".input_global_scale" : ".input_scale")) +
                     ") while " + std::to_string(with_input) + " others have one: the engine loads uninitialised memory");
  }

  // Fused groups share their per-tensor scales bit for bit.
  std::map<FusedGroupKey, std::vector<const Nvfp4Module*>> groups;
  std::map<std::string, const Nvfp4Module*> by_module;
  for (const Nvfp4Module& m : inv.modules) {
    by_module[m.module] = &m;
    FusedGroupKey g = fused_group_of(m.module);
    if (!g.members.empty()) groups[std::move(g)].push_back(&m);
  }
  for (const auto& [key, members] : groups) {
    const std::string& parent = key.parent;
    const std::string& names = key.members;
    // A member stored in another format cannot share the fused GEMM.
    for (const std::string& module : fused_siblings_of(members.front()->module)) {
      if (by_module.count(module)) continue;
      for (const char* suffix : {".weight", ".weight_packed"})
        if (tensors.find(module + suffix))
          report.add("fusion.mixed_storage", Severity::Fail, module,
                     io::quote_name(module + suffix) + " is not NVFP4 but " + io::quote_name(members.front()->module) +
                         " is: the engines load " + names + " of " + io::quote_name(parent) + " into one fused GEMM of one format");
    }
    const Nvfp4Module& first = *members.front();
    for (size_t i = 1; i < members.size(); ++i) {
      const Nvfp4Module& other = *members[i];
      auto same_bits = [](const std::optional<float>& a, const std::optional<float>& b) {
        if (!a || !b) return !a && !b;
        uint32_t x, y;
        std::memcpy(&x, &*a, 4);
        std::memcpy(&y, &*b, 4);
        return x == y;
      };
      if (!same_bits(first.global_value, other.global_value)) {
        const double ratio = first.global_multiplier() != 0.0 ? other.global_multiplier() / first.global_multiplier() : 0.0;
        report.add("fusion.global_scale", Severity::Fail, other.global_scale,
                   names + " of " + io::quote_name(parent) + " have different global scales: " + name_in_file(tensors, first.global_scale) +
                       " = " + exact_number(first.global_value.value_or(NAN)) + ", " + name_in_file(tensors, other.global_scale) + " = " +
                       exact_number(other.global_value.value_or(NAN)) + ". The engines load them into one fused GEMM with a single "
                       "global scale (w1's for MoE experts, the largest for linear layers), so one of them is dequantized "
                       "off by a factor " + exact_number(ratio));
      }
      if (!same_bits(first.input_value, other.input_value) && first.input_value && other.input_value)
        report.add("fusion.input_scale", Severity::Fail, other.input_scale,
                   names + " of " + io::quote_name(parent) + " have different input scales: " + name_in_file(tensors, first.input_scale) +
                       " = " + exact_number(*first.input_value) + ", " + name_in_file(tensors, other.input_scale) + " = " +
                       exact_number(*other.input_value) + "; they quantize the same activation, and the engines keep only one value");
    }
  }
  return inv;
}

}  // namespace fp4kit::verify
