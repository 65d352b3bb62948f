#pragma once
// The observer that turns the forward pass's linear inputs into the full XᵀX of every calibrated
// module (calib/xtx_full_file.h), for the same modules whose input amax calibration records. Each
// module's input arrives once per layer (the forward pass shows a layer's projections one at a
// time, every row of the batch at once), so its XᵀX is complete when its input has been seen: it
// is summed in F64, rounded once to F32 and handed to the layer's writer, and only one module's
// sums are in memory at a time. w2 of a routed expert sees its rows as the amax observer does: h,
// or routing weight × h with W2Input::Weighted. Grouped linears (wo_a) get one matrix per group.
#include <cstdint>

#include "calib/amax_observer.h"
#include "calib/xtx_full_file.h"
#include "engine/observer.h"

namespace fp4kit {

class XtxFullObserver : public engine::LinearObserver {
 public:
  XtxFullObserver(W2Input w2, unsigned threads) : w2_(w2), threads_(threads) {}
  void on_linear_input(const engine::LinearInput& input) override;

  // The writer of the layer that runs next (null: inputs are ignored), and wo_a's group count.
  void set_layer(XtxFullLayerWriter* writer, int64_t o_groups) {
    writer_ = writer;
    o_groups_ = o_groups;
  }

 private:
  W2Input w2_;
  unsigned threads_;
  XtxFullLayerWriter* writer_ = nullptr;
  int64_t o_groups_ = 1;
};

// Σ_r (w_r·x_r)(w_r·x_r)ᵀ over the rows of x [rows, stride] restricted to columns [first, first+k),
// in F64 (upper triangle summed, then mirrored), rows in order in chunks: the values do not
// depend on the thread count. row_weights may be null.
std::vector<double> xtx_full_sums(const float* x, int64_t rows, int64_t stride, int64_t first, int64_t k,
                                  const float* row_weights, unsigned threads);

}  // namespace fp4kit
