#pragma once
// The layer-output error ‖X·Wᵀ − X·Ŵᵀ‖ / ‖X·Wᵀ‖ of converted linears on activations recorded from
// the forward pass: what activation-aware scales and GPTQ are meant to lower.
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "engine/observer.h"
#include "io/checkpoint_index.h"
#include "models/stored_weight.h"

namespace fp4kit::testing {

// ‖X·Wᵀ − X·Ŵᵀ‖² and ‖X·Wᵀ‖² of one linear, with W [N, K] and X [rows, G·K] (G row groups: wo_a).
struct OutputError {
  double error = 0, reference = 0;
};
inline OutputError layer_output_error(const std::vector<float>& x, int64_t rows, int64_t xcols,
                                      const std::vector<float>& w, const std::vector<float>& wq, int64_t n, int64_t k) {
  const int64_t groups = xcols / k, per_group = n / groups;
  OutputError e;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < n; ++o) {
      const float* xr = x.data() + r * xcols + (o / per_group) * k;
      double ref = 0, q = 0;
      for (int64_t c = 0; c < k; ++c) {
        ref += static_cast<double>(xr[c]) * w[static_cast<size_t>(o * k + c)];
        q += static_cast<double>(xr[c]) * wq[static_cast<size_t>(o * k + c)];
      }
      e.error += (ref - q) * (ref - q);
      e.reference += ref * ref;
    }
  return e;
}

inline double relative(const OutputError& e) { return std::sqrt(e.error / e.reference); }

// The inputs of the attention linears (wq_a, wq_b, wkv, wo_a, wo_b) of a forward pass.
class AttentionInputRecorder : public engine::LinearObserver {
 public:
  void on_linear_input(const engine::LinearInput& in) override {
    const std::string name(in.name);
    if (name.find(".attn.w") == std::string::npos || name.find("compressor") != std::string::npos) return;
    auto& [rows, cols, x] = inputs[name];
    rows += in.rows;
    cols = in.cols;
    x.insert(x.end(), in.x, in.x + in.rows * in.cols);
  }
  std::map<std::string, std::tuple<int64_t, int64_t, std::vector<float>>> inputs;
};

// Over the recorded linears that `out_dir` stores as NVFP4: the summed errors against `source`,
// and each linear's in `per_module` when given.
inline OutputError stored_output_error(const AttentionInputRecorder& rec, const StoredWeights& source,
                                       const std::string& out_dir,
                                       std::map<std::string, OutputError>* per_module = nullptr) {
  const auto ckpt = io::Checkpoint::open(out_dir);
  const StoredWeights out(ckpt);
  OutputError total;
  for (const auto& [module, input] : rec.inputs) {
    const auto& [rows, cols, x] = input;
    const std::string weight = module + ".weight";
    if (!out.has(weight) || out.storage(weight) != Storage::Nvfp4) continue;
    const std::vector<int64_t> shape = source.shape(weight);
    const OutputError e =
        layer_output_error(x, rows, cols, source.read_f32(weight), out.read_f32(weight), shape[0], shape[1]);
    total.error += e.error;
    total.reference += e.reference;
    if (per_module) (*per_module)[module] = e;
  }
  return total;
}

}  // namespace fp4kit::testing
