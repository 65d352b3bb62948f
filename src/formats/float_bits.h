#pragma once
// Bit casts between f32 and its IEEE-754 representation.
#include <bit>
#include <cstdint>

namespace fp4kit {

inline uint32_t f32_bits(float f) { return std::bit_cast<uint32_t>(f); }
inline float f32_from_bits(uint32_t u) { return std::bit_cast<float>(u); }

}  // namespace fp4kit
