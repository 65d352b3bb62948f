#include "synth/random_fill.h"

namespace fp4kit::synth {

namespace random_fill_ref {
void fill(Distribution d, CounterRng rng, uint64_t first, size_t n, float* out) {
  if (d == Distribution::StudentT4) {
    for (size_t i = 0; i < n; ++i) out[i] = student_t4(half_word(rng, first + i));
  } else {
    for (size_t i = 0; i < n; ++i) out[i] = normal_approx(rng.bits(first + i));
  }
}
}  // namespace random_fill_ref

RandomFill random_fill(Isa isa) {
  if (RandomFill f = random_fill_simd::fill_for(isa)) return f;
  return random_fill_ref::fill;
}

}  // namespace fp4kit::synth
