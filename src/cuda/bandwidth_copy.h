#pragma once
// A plain streaming copy kernel (16-byte loads and stores, grid-stride): the device's practical
// read + write bandwidth for kernels, which a cudaMemcpy on the copy path may not reach. Plain C++
// header.
#include <cstddef>

#include "cuda/runtime.h"

namespace fp4kit::cuda {

// Copies `bytes` (a multiple of 16) from `src` to `dst` (both 16-byte aligned, not overlapping) on
// `stream`. InputError for misaligned pointers or sizes.
void copy_with_kernel(void* dst, const void* src, size_t bytes, StreamHandle stream);

}  // namespace fp4kit::cuda
