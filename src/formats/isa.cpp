#include "formats/isa.h"

#include <cstdlib>

namespace fp4kit {

std::string_view isa_name(Isa isa) { return isa == Isa::Avx2 ? "avx2" : "scalar"; }

std::optional<Isa> isa_from_name(std::string_view name) {
  if (name == "scalar") return Isa::Scalar;
  if (name == "avx2") return Isa::Avx2;
  return std::nullopt;
}

bool isa_supported(Isa isa) {
  if (isa == Isa::Scalar) return true;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
#else
  return false;
#endif
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
