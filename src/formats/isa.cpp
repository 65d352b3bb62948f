#include "formats/isa.h"

#include <cstdlib>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace fp4kit {

std::string_view isa_name(Isa isa) { return isa == Isa::Avx2 ? "avx2" : "scalar"; }

std::optional<Isa> isa_from_name(std::string_view name) {
  if (name == "scalar") return Isa::Scalar;
  if (name == "avx2") return Isa::Avx2;
  return std::nullopt;
}

namespace {

// AVX2, FMA and F16C, and an OS that saves the YMM registers (XCR0 bits 1 and 2).
bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
  if (!(fma && osxsave && avx && f16c)) return false;
  unsigned xcr0_lo, xcr0_hi;
  __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  if ((xcr0_lo & 0x6u) != 0x6u) return false;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 0, a, b, c, d);
  return b & (1u << 5);
#else
  return false;
#endif
}

}  // namespace

bool isa_supported(Isa isa) {
  if (isa == Isa::Scalar) return true;
  static const bool avx2 = cpu_has_avx2();
  return avx2;
}

Isa preferred_isa() {
  static const Isa chosen = [] {
    Isa best = isa_supported(Isa::Avx2) ? Isa::Avx2 : Isa::Scalar;
    if (const char* env = std::getenv("FP4KIT_ISA")) {
      if (auto want = isa_from_name(env); want && isa_supported(*want)) return *want;
    }
    return best;
  }();
  return chosen;
}

}  // namespace fp4kit
