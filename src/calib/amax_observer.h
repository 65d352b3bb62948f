#pragma once
// The observer that turns the forward pass's linear inputs into max-calibration statistics: one
// AmaxTable entry per quantizable projection (attention wq_a, wq_b, wkv, wo_a, wo_b, the indexer's
// wq_b, shared and routed experts), and the count of tokens each routed expert saw.
//
// w2's input: the serving engines (vLLM, SGLang, TensorRT-LLM) quantize h = silu(g) * u and apply the
// routing weight after w2, so `Unweighted` is what their `input_scale` must cover; DeepSeek's own
// inference code and ModelOpt's V4 calibration feed w2 weight * h (`Weighted`). See docs/calibrate.md.
#include <cstdint>
#include <map>
#include <string>

#include "calib/amax_table.h"
#include "engine/observer.h"

namespace fp4kit {

enum class W2Input : uint8_t { Unweighted, Weighted };
std::string_view w2_input_name(W2Input);

class AmaxObserver : public engine::LinearObserver {
 public:
  explicit AmaxObserver(W2Input w2) : w2_(w2) {}
  void on_linear_input(const engine::LinearInput& input) override;
  void on_linear_amax(const engine::LinearAmax& input) override;

  AmaxTable& table() { return table_; }
  // Rows each routed expert's w1 received ("layers.N.ffn.experts.E" -> rows); with all experts
  // observed that is every token of the layer.
  const std::map<std::string, int64_t>& expert_rows() const { return expert_rows_; }
  void clear() {
    table_ = {};
    expert_rows_.clear();
  }

 private:
  W2Input w2_;
  AmaxTable table_;
  std::map<std::string, int64_t> expert_rows_;
};

// Whether a module's input is calibrated: the GEMM weights a recipe may quantize, not the BF16
// compressor and indexer projections nor the router.
bool is_calibrated_module(std::string_view module);

// Whether the module's rows are seen times their routing weight: a routed expert's w2 with
// W2Input::Weighted.
bool w2_rows_weighted(std::string_view module, W2Input w2);

}  // namespace fp4kit
