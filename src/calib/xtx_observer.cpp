#include "calib/xtx_observer.h"

#include <string>

#include "calib/xtx_device_rows.h"

namespace fp4kit {

void XtxObserver::on_linear_input(const engine::LinearInput& in) {
  const std::string name(in.name);
  if (!is_calibrated_module(name)) return;
  // A K that is not a multiple of 16 is never quantized to NVFP4: nothing to weight.
  if (in.cols % 16 != 0) return;
  const bool weighted = w2_rows_weighted(name, w2_) && !in.routing_weights.empty();
  table_.observe(name, in.x, in.rows, in.cols, weighted ? in.routing_weights.data() : nullptr, threads_);
}

void XtxObserver::on_linear_device_rows(const engine::DeviceLinearInput& in) {
  if (!is_calibrated_module(in.name) || in.cols % 16 != 0) return;  // as on the CPU
  auto it = device_.find(in.name);
  if (it == device_.end()) {
    const std::string name(in.name);
    it = device_.emplace(name, DeviceModule{cuda::XtxBlockSums(in.cols, "XᵀX blocks of " + name, in.stream), 0}).first;
  }
  it->second.sums.add(xtx_rows_of(in, w2_rows_weighted(in.name, w2_)), in.stream);
  it->second.rows += in.rows;
  stream_ = in.stream;
}

void XtxObserver::end_layer() {
  for (auto& [name, m] : device_) table_.add(name, XtxBlocks{m.sums.cols(), m.rows, m.sums.read(stream_)});
  device_.clear();
}

}  // namespace fp4kit
