#pragma once
// Storage dtypes as safetensors names them, declared once in a trait table.
#include <cstdint>
#include <optional>
#include <string_view>

namespace fp4kit {

enum class DType : uint8_t {
  BOOL, U8, I8, U16, I16, F16, BF16, U32, I32, F32, U64, I64, F64,
  F8_E4M3, F8_E5M2, F8_E8M0, F4, F6_E2M3, F6_E3M2, C64,
};

enum class DTypeKind : uint8_t { Bool, UInt, Int, Float, Complex };

struct DTypeTraits {
  DType dtype;
  std::string_view name;  // as written in a safetensors header
  unsigned bits;          // storage bits per element (4 for F4: two per byte)
  DTypeKind kind;
};

inline constexpr DTypeTraits kDTypeTable[] = {
    {DType::BOOL, "BOOL", 8, DTypeKind::Bool},       {DType::U8, "U8", 8, DTypeKind::UInt},
    {DType::I8, "I8", 8, DTypeKind::Int},            {DType::U16, "U16", 16, DTypeKind::UInt},
    {DType::I16, "I16", 16, DTypeKind::Int},         {DType::F16, "F16", 16, DTypeKind::Float},
    {DType::BF16, "BF16", 16, DTypeKind::Float},     {DType::U32, "U32", 32, DTypeKind::UInt},
    {DType::I32, "I32", 32, DTypeKind::Int},         {DType::F32, "F32", 32, DTypeKind::Float},
    {DType::U64, "U64", 64, DTypeKind::UInt},        {DType::I64, "I64", 64, DTypeKind::Int},
    {DType::F64, "F64", 64, DTypeKind::Float},       {DType::F8_E4M3, "F8_E4M3", 8, DTypeKind::Float},
    {DType::F8_E5M2, "F8_E5M2", 8, DTypeKind::Float}, {DType::F8_E8M0, "F8_E8M0", 8, DTypeKind::Float},
    {DType::F4, "F4", 4, DTypeKind::Float},          {DType::F6_E2M3, "F6_E2M3", 6, DTypeKind::Float},
    {DType::F6_E3M2, "F6_E3M2", 6, DTypeKind::Float}, {DType::C64, "C64", 64, DTypeKind::Complex},
};

constexpr const DTypeTraits& traits(DType d) { return kDTypeTable[static_cast<unsigned>(d)]; }
constexpr std::string_view dtype_name(DType d) { return traits(d).name; }
constexpr unsigned dtype_bits(DType d) { return traits(d).bits; }

constexpr std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& t : kDTypeTable)
    if (t.name == name) return t.dtype;
  return std::nullopt;
}

// The dense floating-point dtypes NVFP4 quantization accepts as input.
constexpr bool is_quantizable_source(DType d) {
  return d == DType::BF16 || d == DType::F16 || d == DType::F32;
}

static_assert([] {
  for (unsigned i = 0; i < std::size(kDTypeTable); ++i)
    if (static_cast<unsigned>(kDTypeTable[i].dtype) != i) return false;
  return true;
}(), "kDTypeTable must be indexed by DType");

}  // namespace fp4kit
