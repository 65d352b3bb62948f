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

}  // namespace

void copy_with_kernel(void* dst, const void* src, size_t bytes, StreamHandle stream) {
  const std::string what = "copy_with_kernel [bytes=" + std::to_string(bytes) + "]";
  if (bytes % 16 != 0 || reinterpret_cast<uintptr_t>(dst) % 16 != 0 || reinterpret_cast<uintptr_t>(src) % 16 != 0)
    throw InputError(what + ": pointers and size must be multiples of 16 bytes");
  if (bytes == 0) return;
  int device = 0, sms = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  const size_t vectors = bytes / 16;
  const size_t need = (vectors + size_t{kThreads} * kUnroll - 1) / (size_t{kThreads} * kUnroll);
  const unsigned blocks = static_cast<unsigned>(std::max<size_t>(1, std::min<size_t>(need, size_t(sms) * 8)));
  copy_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<const uint4*>(src), static_cast<uint4*>(dst), vectors);
  check_launch("copy_with_kernel", [&] { return "bytes=" + std::to_string(bytes); });
}

}  // namespace fp4kit::cuda
