#pragma once
// Instruction sets the fast paths are compiled for, and the run-time choice between them. Every fast
// path is written once with Highway (src/*/*_simd.cpp) and compiled for each of these; `Scalar` is
// the project's own scalar reference (the `_ref` functions), not a Highway target.
#include <optional>
#include <string_view>
#include <vector>

namespace fp4kit {

enum class Isa { Scalar, Avx2, Avx512, Neon, Sve, Sve2 };

std::string_view isa_name(Isa);
std::optional<Isa> isa_from_name(std::string_view);
// Whether this binary holds code for `isa` and this CPU can run it.
bool isa_supported(Isa);
// The best supported ISA, unless the environment variable FP4KIT_ISA names another supported one.
Isa preferred_isa();
// Every supported ISA but Scalar, best first: what the tests compare with the references.
std::vector<Isa> simd_isas();
// The ISA whose code runs for `isa` in a fast path that was not compiled for `isa` itself (on SVE
// CPUs, the paths that hold vectors in arrays run their NEON code); Scalar when there is none.
Isa isa_fallback(Isa);
// Highway's target bit for `isa` (0 for Scalar).
long long isa_highway_target(Isa);

}  // namespace fp4kit
