#include <cuda_runtime.h>

#include "cuda/check.cuh"
#include "cuda/pinned_host_allocator.h"

namespace fp4kit::cuda {

io::HostAllocator pinned_host_allocator() {
  return {[](size_t bytes) {
            void* p = nullptr;
            check(cudaMallocHost(&p, bytes ? bytes : 1),
                  "cudaMallocHost for prefetched tensors (" + std::to_string(bytes) + " bytes)");
            return static_cast<std::byte*>(p);
          },
          [](std::byte* p) { cudaFreeHost(p); }};
}

}  // namespace fp4kit::cuda
