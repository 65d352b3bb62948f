#pragma once
// The observer that turns the forward pass's linear inputs into the XᵀX blocks of activation-
// weighted scale search (calib/xtx_table.h), for the same modules whose input amax calibration
// records (is_calibrated_module). w2 of a routed expert sees its rows as the amax observer does:
// h, or routing weight × h with W2Input::Weighted.
//
// On the CPU the rows arrive on the host (on_linear_input) and are summed there. A pass on the GPU
// shows them in device memory (on_linear_device_rows): each module's sums are kept in F64 on the
// device (cuda/xtx_device_sums.h: K·128 bytes) across the layer's chunks and come back to the table
// once, at end_layer(). The products are the CPU's; only the order of the F64 sums differs.
#include <map>
#include <string>

#include "calib/amax_observer.h"
#include "calib/xtx_table.h"
#include "cuda/xtx_device_sums.h"
#include "engine/observer.h"

namespace fp4kit {

class XtxObserver : public engine::LinearObserver {
 public:
  XtxObserver(W2Input w2, unsigned threads) : w2_(w2), threads_(threads) {}
  void on_linear_input(const engine::LinearInput& input) override;
  // A pass on the GPU: the amax values are not this observer's; the rows come on the device.
  void on_linear_amax(const engine::LinearAmax&) override {}
  bool wants_device_rows() const override { return true; }
  void on_linear_device_rows(const engine::DeviceLinearInput& input) override;
  // After a layer ran: the sums kept on the device join the table (nothing to do on the CPU).
  void end_layer();

  XtxTable& table() { return table_; }
  void clear() {
    table_ = {};
    device_.clear();
  }

 private:
  struct DeviceModule {
    cuda::XtxBlockSums sums;
    int64_t rows = 0;
  };
  W2Input w2_;
  unsigned threads_;
  XtxTable table_;
  std::map<std::string, DeviceModule, std::less<>> device_;
  CUstream_st* stream_ = nullptr;  // the pass's
};

// Both observers see every input, `first` before `second`; rows on the device go to those that
// want them.
class ObserverPair : public engine::LinearObserver {
 public:
  ObserverPair(engine::LinearObserver& first, engine::LinearObserver& second) : first_(first), second_(second) {}
  void on_linear_input(const engine::LinearInput& input) override {
    first_.on_linear_input(input);
    second_.on_linear_input(input);
  }
  void on_linear_amax(const engine::LinearAmax& input) override {
    first_.on_linear_amax(input);
    second_.on_linear_amax(input);
  }
  bool wants_device_rows() const override { return first_.wants_device_rows() || second_.wants_device_rows(); }
  void on_linear_device_rows(const engine::DeviceLinearInput& input) override {
    if (first_.wants_device_rows()) first_.on_linear_device_rows(input);
    if (second_.wants_device_rows()) second_.on_linear_device_rows(input);
  }

 private:
  engine::LinearObserver& first_;
  engine::LinearObserver& second_;
};

}  // namespace fp4kit
