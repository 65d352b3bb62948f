#pragma once
// Page-locked host memory for the tensor prefetcher's slots, so that a group read from disk goes
// on to the GPU by asynchronous DMA (cudaMemcpyAsync from pageable memory is staged and
// synchronous). The CPU-only build has a stand-in that fails with the usual "built without CUDA".
#include "io/tensor_prefetcher.h"

namespace fp4kit::cuda {

// Blocks from cudaMallocHost (page aligned); DeviceError naming the size when the driver refuses.
io::HostAllocator pinned_host_allocator();

}  // namespace fp4kit::cuda
