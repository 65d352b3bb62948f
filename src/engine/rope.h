#pragma once
// Rotary position embedding as DeepSeek V4 applies it: to the last `dim` entries of a vector, in
// interleaved pairs (x[2i], x[2i+1]) rotated by p * inv_freq[i]. The frequencies, angles, cos and sin
// are formed in f32 the way transformers forms them, so large positions agree too.
#include <cstdint>
#include <vector>

#include "engine/model_config.h"

namespace fp4kit::engine {

class Rope {
 public:
  // Plain RoPE with base `theta`, or YaRN-scaled frequencies (attention factor 1: cos and sin are
  // not scaled) when `yarn` is enabled.
  Rope(int64_t dim, float theta, const YarnParams& yarn);
  int64_t dim() const { return dim_; }
  const std::vector<float>& inv_freq() const { return inv_freq_; }
  // Rotates v[0 .. dim) (the rope slice) to `position`; `inverse` rotates by -angle.
  void apply(float* v, int64_t position, bool inverse = false) const;

 private:
  int64_t dim_;
  std::vector<float> inv_freq_;
};

}  // namespace fp4kit::engine
