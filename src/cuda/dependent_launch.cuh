#pragma once
// Programmatic dependent launch (sm_90+). A kernel launched with programmatic stream serialization
// (the weight GEMMs' decode kernels) may start while the kernel before it on the stream still runs:
// it calls wait_for_previous_grid() before it reads what that kernel wrote. A kernel lets such a
// successor start by calling allow_next_grid(); the kernels of a decode step do so first thing, so
// that the next product's launch and its reads of resident weights overlap their work. Both are
// no-ops where the launch did not allow it, and before sm_90.
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

}  // namespace fp4kit::cuda
