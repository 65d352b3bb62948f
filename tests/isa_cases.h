#pragma once
// The ISAs a fast-path test runs: the scalar reference and every SIMD target this CPU has.
#include <gtest/gtest.h>

#include <vector>

#include "formats/isa.h"

// Skips the test where this CPU runs none of the SIMD targets the fast paths are compiled for.
#define FP4KIT_REQUIRE_SIMD()                  \
  if (::fp4kit::simd_isas().empty())           \
  GTEST_SKIP() << "this CPU runs none of the SIMD targets the fast paths are compiled for"

namespace fp4kit {

// Scalar first, then every supported SIMD ISA, best first.
inline std::vector<Isa> all_isas() {
  std::vector<Isa> out{Isa::Scalar};
  for (Isa isa : simd_isas()) out.push_back(isa);
  return out;
}

}  // namespace fp4kit
