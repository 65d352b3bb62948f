#pragma once
// A read-only view of dense floating-point elements (BF16, F16 or F32) in their storage bytes.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "formats/bf16.h"
#include "formats/dtype.h"
#include "formats/f16.h"

namespace fp4kit {

struct FloatSpan {
  const void* data = nullptr;
  DType dtype = DType::F32;  // BF16, F16 or F32
  size_t size = 0;           // elements

  float at(size_t i) const {
    switch (dtype) {
      case DType::BF16: {
        uint16_t b;
        std::memcpy(&b, static_cast<const uint8_t*>(data) + 2 * i, 2);
        return BF16{b}.to_float();
      }
      case DType::F16: {
        uint16_t b;
        std::memcpy(&b, static_cast<const uint8_t*>(data) + 2 * i, 2);
        return F16{b}.to_float();
      }
      default: {
        float f;
        std::memcpy(&f, static_cast<const uint8_t*>(data) + 4 * i, 4);
        return f;
      }
    }
  }
  FloatSpan subspan(size_t offset, size_t count) const {
    const size_t width = dtype_bits(dtype) / 8;
    return FloatSpan{static_cast<const uint8_t*>(data) + offset * width, dtype, count};
  }
};

}  // namespace fp4kit
