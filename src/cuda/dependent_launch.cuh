#pragma once
// Programmatic dependent launch (sm_90+). A kernel launched with programmatic stream serialization
// (launch_dependent(); the weight GEMMs' decode kernels) may start while the kernel before it on the
// stream still runs: it calls wait_for_previous_grid() before it reads anything that kernel (or any
// before it) wrote — the small kernels of a decode step as their first statement. A kernel lets such
// a successor start by calling allow_next_grid(); the small kernels do so first thing, so that the
// next kernel's launch, and a product's first reads of resident weights, overlap their work. Both
// are no-ops where the launch did not allow it, and before sm_90.
#include <cuda_runtime.h>

#include <utility>

#include "cuda/device_facts.cuh"

namespace fp4kit::cuda {

__device__ __forceinline__ void wait_for_previous_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void allow_next_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// kernel<<<grid, block, smem, stream>>>(args...), allowed to start before the kernel before it ends
// where the device has dependent launches (sm_90+). The kernel must call wait_for_previous_grid()
// before anything else. The launch's error, as cudaLaunchKernelEx returns it.
template <class... Params, class... Args>
cudaError_t launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                             Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attr;
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  if (current_device_facts().major >= 9) config.attrs = &attr, config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace fp4kit::cuda
