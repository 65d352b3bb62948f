#pragma once
// A plain streaming copy kernel (16-byte loads and stores, grid-stride): the device's practical
// read + write bandwidth for kernels, which a cudaMemcpy on the copy path may not reach. Plain C++
// header.
#include <cstddef>
#include <cstdint>

#include "cuda/runtime.h"

namespace fp4kit::cuda {

// Copies `bytes` (a multiple of 16) from `src` to `dst` (both 16-byte aligned, not overlapping) on
// `stream`. InputError for misaligned pointers or sizes.
void copy_with_kernel(void* dst, const void* src, size_t bytes, StreamHandle stream);

// Reads `bytes` (a multiple of 16, 16-byte aligned) at `src` once and writes nothing but, where the
// bytes' XOR is 0x9E3779B9 in some thread, that word to `*sink` (so no read can be left out): the
// least time any kernel needs to stream a tensor of this size, ramp-up and tail included.
void read_with_kernel(const void* src, size_t bytes, uint32_t* sink, StreamHandle stream);

}  // namespace fp4kit::cuda
