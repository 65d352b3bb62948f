#include "cuda/bandwidth_copy.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "base/error.h"
#include "cuda/check.cuh"

namespace fp4kit::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 4;  // independent 16-byte loads in flight per thread

__global__ void __launch_bounds__(kThreads) copy_kernel(const uint4* __restrict__ src, uint4* __restrict__ dst,
                                                        size_t vectors) {
  const size_t stride = static_cast<size_t>(gridDim.x) * kThreads;
  for (size_t base = static_cast<size_t>(blockIdx.x) * kThreads + threadIdx.x; base < vectors;
       base += kUnroll * stride) {
    uint4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (base + u * stride < vectors) v[u] = __ldcs(src + base + u * stride);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (base + u * stride < vectors) __stcs(dst + base + u * stride, v[u]);
  }
}

__global__ void __launch_bounds__(kThreads) read_kernel(const uint4* __restrict__ src, size_t vectors, uint32_t* sink) {
  const size_t stride = static_cast<size_t>(gridDim.x) * kThreads;
  uint32_t acc = 0;
  for (size_t base = static_cast<size_t>(blockIdx.x) * kThreads + threadIdx.x; base < vectors;
       base += kUnroll * stride) {
    uint4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      v[u] = base + u * stride < vectors ? __ldcs(src + base + u * stride) : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  if (acc == 0x9E3779B9u) *sink = acc;
}

// Blocks for `vectors` 16-byte vectors: one pass of kUnroll loads per thread where that takes at
// most 8 blocks per multiprocessor, else a grid-stride loop over 8 per multiprocessor.
unsigned stream_blocks(size_t vectors) {
  int device = 0, sms = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  const size_t need = (vectors + size_t{kThreads} * kUnroll - 1) / (size_t{kThreads} * kUnroll);
  return static_cast<unsigned>(std::max<size_t>(1, std::min<size_t>(need, size_t(sms) * 8)));
}

}  // namespace

void read_with_kernel(const void* src, size_t bytes, uint32_t* sink, StreamHandle stream) {
  if (bytes % 16 != 0 || reinterpret_cast<uintptr_t>(src) % 16 != 0 || sink == nullptr)
    throw InputError("read_with_kernel [bytes=" + std::to_string(bytes) + "]: the pointer and size must be multiples of 16 bytes, and a sink given");
  if (bytes == 0) return;
  const size_t vectors = bytes / 16;
  read_kernel<<<stream_blocks(vectors), kThreads, 0, stream>>>(static_cast<const uint4*>(src), vectors, sink);
  check_launch("read_with_kernel", [&] { return "bytes=" + std::to_string(bytes); });
}

void copy_with_kernel(void* dst, const void* src, size_t bytes, StreamHandle stream) {
  const std::string what = "copy_with_kernel [bytes=" + std::to_string(bytes) + "]";
  if (bytes % 16 != 0 || reinterpret_cast<uintptr_t>(dst) % 16 != 0 || reinterpret_cast<uintptr_t>(src) % 16 != 0)
    throw InputError(what + ": pointers and size must be multiples of 16 bytes");
  if (bytes == 0) return;
  const size_t vectors = bytes / 16;
  copy_kernel<<<stream_blocks(vectors), kThreads, 0, stream>>>(static_cast<const uint4*>(src), static_cast<uint4*>(dst), vectors);
  check_launch("copy_with_kernel", [&] { return "bytes=" + std::to_string(bytes); });
}

}  // namespace fp4kit::cuda
