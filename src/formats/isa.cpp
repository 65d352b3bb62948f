#include "formats/isa.h"

#include <cstdint>
#include <cstdlib>

#include "formats/simd_targets.h"
#include <hwy/targets.h>

namespace fp4kit {

namespace {

struct IsaName {
  Isa isa;
  std::string_view name;
};
constexpr IsaName kNames[] = {{Isa::Scalar, "scalar"}, {Isa::Avx2, "avx2"}, {Isa::Avx512, "avx512"},
                              {Isa::Neon, "neon"},     {Isa::Sve, "sve"},   {Isa::Sve2, "sve2"}};
// Best first.
constexpr Isa kSimdOrder[] = {Isa::Avx512, Isa::Avx2, Isa::Sve2, Isa::Sve, Isa::Neon};

// What the CPU runs, detected once: Highway's SupportedTargets() runs CPUID again on every call,
// and under a hypervisor each CPUID traps to the host (measured on a 2-core VM: 79 % of an eval of
// the tiny fixture went there, through the kernel lookup of every product).
int64_t cpu_targets() {
  static const int64_t targets = hwy::SupportedTargets();
  return targets;
}

}  // namespace

std::string_view isa_name(Isa isa) {
  for (const IsaName& n : kNames)
    if (n.isa == isa) return n.name;
  return "scalar";
}

std::optional<Isa> isa_from_name(std::string_view name) {
  for (const IsaName& n : kNames)
    if (n.name == name) return n.isa;
  return std::nullopt;
}

long long isa_highway_target(Isa isa) {
  switch (isa) {
    case Isa::Avx2: return HWY_AVX2;
    case Isa::Avx512: return HWY_AVX3;
    case Isa::Neon: return HWY_NEON;
    case Isa::Sve: return HWY_SVE;
    case Isa::Sve2: return HWY_SVE2;
    case Isa::Scalar: break;
  }
  return 0;
}

bool isa_supported(Isa isa) {
  if (isa == Isa::Scalar) return true;
  const long long target = isa_highway_target(isa);
  // HWY_TARGETS: what this build compiles (simd_targets.h); SupportedTargets: what the CPU runs.
  return (target & HWY_TARGETS) != 0 && (target & cpu_targets()) != 0;
}

Isa isa_fallback(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return Isa::Avx2;
    case Isa::Sve2: return Isa::Sve;
    case Isa::Sve: return Isa::Neon;
    default: return Isa::Scalar;
  }
}

std::vector<Isa> simd_isas() {
  std::vector<Isa> out;
  for (Isa isa : kSimdOrder)
    if (isa_supported(isa)) out.push_back(isa);
  return out;
}

Isa preferred_isa() {
  static const Isa chosen = [] {
    if (const char* env = std::getenv("FP4KIT_ISA")) {
      if (auto want = isa_from_name(env); want && isa_supported(*want)) return *want;
    }
    const std::vector<Isa> simd = simd_isas();
    return simd.empty() ? Isa::Scalar : simd.front();
  }();
  return chosen;
}

}  // namespace fp4kit
