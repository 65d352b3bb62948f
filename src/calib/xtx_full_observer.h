#pragma once
// The observer that turns the forward pass's linear inputs into the full XᵀX of every calibrated
// module (calib/xtx_full_file.h), for the same modules whose input amax calibration records. Each
// module's input arrives once per layer (the forward pass shows a layer's projections one at a
// time, every row of the batch at once), so its XᵀX is complete when its input has been seen: it
// is summed in F64, rounded once to F32 and handed to the layer's writer, and only one module's
// sums are in memory at a time. w2 of a routed expert sees its rows as the amax observer does: h,
// or routing weight × h with W2Input::Weighted. Grouped linears (wo_a) get one matrix per group.
//
// A pass on the GPU shows the rows in device memory (on_linear_device_rows), and the matrices are
// summed there (cuda/xtx_device_sums.h: F64, cuBLAS DSYRK; the CPU's products, another order of
// sums). Where the pass runs a layer's sequences in chunks, a module's rows arrive once per chunk:
// its F64 sums (groups·K²·8 bytes) stay on the device until its last chunk, then come back
// (rounded to F32 on the device) to the writer. A layer in one chunk thus holds one module's
// matrix at a time; a layer in several chunks holds every module's until the last chunk, and a
// DeviceError names the module and the bytes where they do not fit.
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "calib/amax_observer.h"
#include "calib/xtx_full_file.h"
#include "cuda/xtx_device_sums.h"
#include "cuda/xtx_full.h"
#include "engine/observer.h"

namespace fp4kit {

class XtxFullObserver : public engine::LinearObserver {
 public:
  XtxFullObserver(W2Input w2, unsigned threads);
  ~XtxFullObserver() override;
  void on_linear_input(const engine::LinearInput& input) override;
  // A pass on the GPU: the amax values are not this observer's; the rows come on the device.
  void on_linear_amax(const engine::LinearAmax&) override {}
  bool wants_device_rows() const override { return true; }
  void on_linear_device_rows(const engine::DeviceLinearInput& input) override;
  // After a layer ran: matrices still on the device (a pass that did not mark a last chunk) go to
  // the writer.
  void end_layer();

  // The writer of the layer that runs next (null: inputs are ignored), and wo_a's group count.
  void set_layer(XtxFullLayerWriter* writer, int64_t o_groups) {
    writer_ = writer;
    o_groups_ = o_groups;
  }

 private:
  struct DeviceModule {
    cuda::XtxFullSums sums;
    int64_t rows = 0;
  };
  // The module's input split into groups (wo_a) of a width that is a multiple of 16; false for
  // inputs that are not recorded.
  bool recorded(std::string_view name, int64_t cols, int64_t& groups) const;
  void flush(std::map<std::string, DeviceModule, std::less<>>::iterator module);

  W2Input w2_;
  unsigned threads_;
  XtxFullLayerWriter* writer_ = nullptr;
  int64_t o_groups_ = 1;
  std::map<std::string, DeviceModule, std::less<>> device_;
  std::unique_ptr<cuda::XtxFullWorkspace> workspace_;  // made at the first rows on the device
  CUstream_st* stream_ = nullptr;                      // the pass's
};

// Σ_r (w_r·x_r)(w_r·x_r)ᵀ over the rows of x [rows, stride] restricted to columns [first, first+k),
// in F64 (upper triangle summed, then mirrored), rows in order in chunks: the values do not
// depend on the thread count. row_weights may be null.
std::vector<double> xtx_full_sums(const float* x, int64_t rows, int64_t stride, int64_t first, int64_t k,
                                  const float* row_weights, unsigned threads);

}  // namespace fp4kit
