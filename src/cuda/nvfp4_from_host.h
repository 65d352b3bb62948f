#pragma once
// NVFP4 quantization of tensors in host memory, computed on the GPU: host pointers in, host pointers
// out, the same bytes as nvfp4_ref. The tensor goes through the device in pieces of bounded size
// (two in flight, each staged through pinned memory), so any tensor fits. Plain C++ header: the
// CPU-only build links a stand-in that throws InputError ("built without CUDA").
#include <cstdint>

#include "formats/float_span.h"
#include "formats/nvfp4.h"

namespace fp4kit::cuda {

// nvfp4_ref::amax(src): max |x|, NaN if any element is NaN.
float nvfp4_amax_from_host(FloatSpan src);

// nvfp4_ref::quantize(src, scaling, packed, scales): src.size a multiple of 16; packed holds
// src.size/2 bytes, scales src.size/16.
void nvfp4_quantize_from_host(FloatSpan src, const Nvfp4Scaling& scaling, uint8_t* packed, uint8_t* scales);

}  // namespace fp4kit::cuda
