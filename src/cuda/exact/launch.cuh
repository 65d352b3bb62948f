#pragma once
// What the launchers of the byte-exact kernels share: grid sizing for grid-stride loops, argument
// checks that name the kernel and the shape, and the host's default NaN.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "base/error.h"
#include "cuda/check.cuh"
#include "cuda/device_facts.cuh"

namespace fp4kit::cuda {

// Multiprocessors of the current device.
inline unsigned sm_count() { return static_cast<unsigned>(std::max(current_device_facts().multiprocessors, 1)); }

// Blocks for a grid-stride kernel over `items` work items, `per_block` of them per block and pass:
// `blocks_per_sm` resident blocks per multiprocessor at most, never more blocks than the work needs.
inline unsigned grid_blocks(size_t items, size_t per_block, unsigned blocks_per_sm = 8) {
  const size_t need = (items + per_block - 1) / per_block;
  const size_t cap = static_cast<size_t>(sm_count()) * blocks_per_sm;
  return static_cast<unsigned>(std::max<size_t>(1, std::min(need, cap)));
}

inline bool is_aligned(const void* p, size_t alignment) { return reinterpret_cast<uintptr_t>(p) % alignment == 0; }

[[noreturn]] inline void throw_bad_argument(const char* kernel, const std::string& shape, const std::string& why) {
  throw InputError(std::string(kernel) + " [" + shape + "]: " + why);
}

inline void require_pointer(const void* p, const char* name, const char* kernel, const std::string& shape) {
  if (!p) throw_bad_argument(kernel, shape, std::string(name) + " is null");
}

inline void require_aligned(const void* p, size_t alignment, const char* name, const char* kernel,
                            const std::string& shape) {
  if (!is_aligned(p, alignment))
    throw_bad_argument(kernel, shape, std::string(name) + " is not " + std::to_string(alignment) + "-byte aligned");
}

// The bits this host's FPU gives for an invalid operation (0/0): 0xFFC00000 on x86, 0x7FC00000 on
// Arm. The CPU references produce it where a GPU gives 0x7FFFFFFF (see host_nan.cuh).
inline uint32_t host_default_nan() {
  volatile float zero = 0.0f;
  const float nan = zero / zero;
  uint32_t bits;
  std::memcpy(&bits, &nan, 4);
  return bits;
}

}  // namespace fp4kit::cuda
