#pragma once
// Activation calibration for the NVFP4 experts: `--calib FILE`, a safetensors file of F32 0-d
// tensors `<module>.input_amax` (e.g. `layers.0.ffn.experts.3.w1.input_amax`), and the exporter's
// rules that turn it into one input amax per quantized module: the members of a fused group (w1/w3,
// gate_proj/up_proj, wq_a/wkv, q/k/v: models/fused_groups.h) take the largest of their values
// (they see the same input), and a missing expert falls back to the largest value of its
// projection over every calibrated expert of every layer.
#include <map>
#include <string>
#include <vector>

namespace fp4kit {

struct Calibration {
  std::string path;
  std::map<std::string, float> input_amax;  // module -> value, as stored
  std::string fingerprint;                  // of the file's bytes, for the resume manifest
};

inline constexpr std::string_view kInputAmaxSuffix = ".input_amax";

// InputError naming the file and the tensor for: an unreadable or malformed file, a tensor whose
// name does not end in ".input_amax", a dtype other than F32, a shape other than 0-d, a value
// that is NaN, infinite, zero or negative.
Calibration load_calibration(const std::string& path);

struct InputAmax {
  std::map<std::string, float> by_module;  // every module asked for
  std::vector<std::string> fallbacks;      // modules that took their projection's fallback
};

// One amax per entry of `quantized` (module names). InputError naming them for calibrated modules
// that are not in `known` (every expert matrix and scaled weight of the checkpoint), for an expert
// projection with no calibrated value at all, so that nothing could fall back, and for any other
// module without a value (only experts fall back).
InputAmax resolve_input_amax(const Calibration& calibration, const std::vector<std::string>& quantized,
                             const std::vector<std::string>& known);

// "w1" for "layers.0.ffn.experts.3.w1", "gate_proj" for "model.layers.1.mlp.experts.0.gate_proj".
std::string projection_of(const std::string& module);

}  // namespace fp4kit
