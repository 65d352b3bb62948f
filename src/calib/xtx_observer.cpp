#include "calib/xtx_observer.h"

#include <string>

namespace fp4kit {

void XtxObserver::on_linear_input(const engine::LinearInput& in) {
  const std::string name(in.name);
  if (!is_calibrated_module(name)) return;
  // A K that is not a multiple of 16 is never quantized to NVFP4: nothing to weight.
  if (in.cols % 16 != 0) return;
  const bool weighted = name.find(".ffn.experts.") != std::string::npos && name.ends_with(".w2") &&
                        w2_ == W2Input::Weighted && !in.routing_weights.empty();
  table_.observe(name, in.x, in.rows, in.cols, weighted ? in.routing_weights.data() : nullptr, threads_);
}

}  // namespace fp4kit
