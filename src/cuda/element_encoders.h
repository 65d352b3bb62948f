#pragma once
// The device element encoders applied to an array of f32 values, one result per value (E4M3 and
// E2M1 codes in the low bits, F16/BF16 as bits): what the tests compare with the CPU codecs
// (formats/e4m3.h, e2m1.h, f16.h, bf16.h). Plain C++ header: device pointers, no CUDA headers.
#include <cstddef>
#include <cstdint>

#include "cuda/runtime.h"

namespace fp4kit::cuda {

enum class ElementEncoding : uint8_t { E4M3, E4M3Saturate, E2M1, F16, BF16 };

void encode_elements(const float* in, size_t n, ElementEncoding encoding, uint16_t* out, StreamHandle stream);

}  // namespace fp4kit::cuda
