#pragma once
// The observer that turns the forward pass's linear inputs into the XᵀX blocks of activation-
// weighted scale search (calib/xtx_table.h), for the same modules whose input amax calibration
// records (is_calibrated_module). w2 of a routed expert sees its rows as the amax observer does:
// h, or routing weight × h with W2Input::Weighted. It needs the rows themselves, so a pass on the
// GPU (which reports only amax values) cannot feed it.
#include "calib/amax_observer.h"
#include "calib/xtx_table.h"
#include "engine/observer.h"

namespace fp4kit {

class XtxObserver : public engine::LinearObserver {
 public:
  XtxObserver(W2Input w2, unsigned threads) : w2_(w2), threads_(threads) {}
  void on_linear_input(const engine::LinearInput& input) override;

  XtxTable& table() { return table_; }
  void clear() { table_ = {}; }

 private:
  W2Input w2_;
  unsigned threads_;
  XtxTable table_;
};

// Both observers see every input, `first` before `second`.
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

 private:
  engine::LinearObserver& first_;
  engine::LinearObserver& second_;
};

}  // namespace fp4kit
