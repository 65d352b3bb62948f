#pragma once
// Picks the code compiled for one ISA out of a Highway dispatch table (HWY_EXPORT). Include in the
// `#if HWY_ONCE` part of a *_simd.cpp file, after <hwy/highway.h>. Highway's own HWY_DYNAMIC_DISPATCH
// picks the CPU's best target; the fast paths are chosen by `Isa` instead, so that FP4KIT_ISA and the
// tests can run each target the CPU has.
#include <cstddef>
#include <cstdint>

#include "formats/isa.h"

namespace fp4kit::simd {

// The table's entry for `isa`, or for the ISA it falls back to; nullptr when none was compiled.
template <class Fn, size_t N>
Fn table_entry(Fn const (&table)[N], Isa isa) {
  for (; isa != Isa::Scalar; isa = isa_fallback(isa)) {
    if (!isa_supported(isa)) continue;
    // A file compiled for one target only (its static target, e.g. NEON on aarch64 when SVE is left
    // out) gets a table of that one entry.
    if constexpr (N == 1) {
      if (isa_highway_target(isa) == HWY_STATIC_TARGET && table[0] != nullptr) return table[0];
      continue;
    }
    const int64_t shifted = HWY_CHOSEN_TARGET_SHIFT(isa_highway_target(isa));
    if (shifted == 0) continue;
    const size_t index = hwy::Num0BitsBelowLS1Bit_Nonzero64(static_cast<uint64_t>(shifted));
    if (index < N && table[index] != nullptr) return table[index];
  }
  return nullptr;
}

}  // namespace fp4kit::simd
