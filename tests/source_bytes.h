#pragma once
// Storage bytes of f32 values in a dense source dtype (BF16 and F16 round to nearest even), as a
// safetensors file would hold them.
#include <cstdint>
#include <cstring>
#include <vector>

#include "formats/bf16.h"
#include "formats/dtype.h"
#include "formats/f16.h"

namespace fp4kit::testing {

inline std::vector<uint8_t> source_bytes(const std::vector<float>& values, DType dtype) {
  std::vector<uint8_t> out(values.size() * (dtype == DType::F32 ? 4 : 2));
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::F32) {
      std::memcpy(out.data() + 4 * i, &values[i], 4);
    } else {
      const uint16_t b = dtype == DType::BF16 ? BF16::from_float(values[i]).bits : F16::from_float(values[i]).bits;
      std::memcpy(out.data() + 2 * i, &b, 2);
    }
  }
  return out;
}

}  // namespace fp4kit::testing
