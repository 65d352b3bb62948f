#pragma once
// The distribution of one linear layer's weight [rows = out features, cols = in features]:
//   w[r][c] = t4(r, c) / sqrt(cols) * row_scale[r] * column_gain[c]
// t4: unit-variance Student-t with 4 degrees of freedom (heavy tails, as trained weights have);
// row_scale = 2^U(-1,1): output channels differ in scale, so block scales differ;
// column_gain = U(10, 50) on ~0.1% of the input channels (outlier features), 1 elsewhere.
#include <cstdint>
#include <vector>

#include "synth/random.h"

namespace fp4kit::synth {

class LinearWeight {
 public:
  static constexpr double kOutlierColumnRate = 0.001;
  static constexpr float kOutlierGainMin = 10.0f, kOutlierGainMax = 50.0f;

  LinearWeight(CounterRng rng, int64_t cols);
  // Rows [row_begin, row_end), row-major: (row_end - row_begin) * cols floats.
  void rows(int64_t row_begin, int64_t row_end, float* out) const;
  // 2^U(-1,1) / sqrt(cols): the factor of row `row` before column gains.
  float row_factor(int64_t row) const;
  const std::vector<float>& column_gain() const { return column_gain_; }

 private:
  CounterRng values_, row_scales_;
  int64_t cols_;
  float inv_sqrt_cols_;
  std::vector<float> column_gain_;
  bool has_outliers_ = false;
};

}  // namespace fp4kit::synth
