#include <cuda_runtime.h>

#include "cuda/device.h"

#ifndef FP4KIT_CUDA_ARCH_LIST
#define FP4KIT_CUDA_ARCH_LIST ""
#endif

namespace fp4kit::cuda {

namespace {
// An empty kernel: launching it proves the binary holds code this GPU can run.
__global__ void probe_kernel() {}
}  // namespace

bool compiled() { return true; }
std::string compiled_archs() { return FP4KIT_CUDA_ARCH_LIST; }

std::optional<DeviceInfo> probe(int ordinal, std::string* why_not) {
  auto fail = [&](const std::string& why) -> std::optional<DeviceInfo> {
    if (why_not) *why_not = why;
    return std::nullopt;
  };
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return fail(std::string("no usable CUDA driver or GPU (") + cudaGetErrorString(err) + ")");
  }
  if (count == 0) return fail("no CUDA GPU found");
  if (ordinal < 0 || ordinal >= count)
    return fail("GPU " + std::to_string(ordinal) + " does not exist (" + std::to_string(count) + " found)");
  cudaDeviceProp p{};
  if ((err = cudaGetDeviceProperties(&p, ordinal)) != cudaSuccess || (err = cudaSetDevice(ordinal)) != cudaSuccess)
    return fail(std::string("GPU ") + std::to_string(ordinal) + ": " + cudaGetErrorString(err));
  probe_kernel<<<1, 1>>>();
  if ((err = cudaDeviceSynchronize()) != cudaSuccess || (err = cudaGetLastError()) != cudaSuccess) {
    cudaGetLastError();
    return fail(std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) +
                "): this fp4kit has code for " + FP4KIT_CUDA_ARCH_LIST + " only (" + cudaGetErrorString(err) + ")");
  }
  DeviceInfo info;
  info.ordinal = ordinal;
  info.name = p.name;
  info.sm_major = p.major;
  info.sm_minor = p.minor;
  info.multiprocessors = p.multiProcessorCount;
  info.l2_bytes = static_cast<size_t>(p.l2CacheSize);
  info.shared_memory_per_block_optin = p.sharedMemPerBlockOptin;
  cudaMemGetInfo(&info.free_memory, &info.total_memory);
  return info;
}

}  // namespace fp4kit::cuda
