#pragma once
// The hot loops of weight synthesis: runs of consecutive draws of one stream, with a vector fast
// path (every ISA) that gives exactly the bits of the scalar samplers in random.h.
#include <cstddef>
#include <cstdint>

#include "formats/isa.h"
#include "synth/random.h"

namespace fp4kit::synth {

enum class Distribution : uint8_t {
  StudentT4,     // out[i] = student_t4(half_word(rng, first + i)): two draws per word
  NormalApprox,  // out[i] = normal_approx(rng.bits(first + i)): a word per draw
};

// n draws of `rng` from draw `first` on.
using RandomFill = void (*)(Distribution, CounterRng rng, uint64_t first, size_t n, float* out);
RandomFill random_fill(Isa isa = preferred_isa());

namespace random_fill_ref {
void fill(Distribution, CounterRng rng, uint64_t first, size_t n, float* out);
}
namespace random_fill_simd {
// The vector form for `isa` (random_fill_simd.cpp), nullptr where none was compiled.
RandomFill fill_for(Isa isa);
}

}  // namespace fp4kit::synth
