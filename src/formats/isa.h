#pragma once
// Instruction sets the fast paths are written for, and the run-time choice between them.
#include <optional>
#include <string_view>

namespace fp4kit {

enum class Isa { Scalar, Avx2 };

std::string_view isa_name(Isa);
std::optional<Isa> isa_from_name(std::string_view);
// Whether this CPU can run kernels written for `isa`.
bool isa_supported(Isa);
// The best supported ISA, unless the environment variable FP4KIT_ISA names a lower one.
Isa preferred_isa();

}  // namespace fp4kit
