#include "cuda/device_facts.cuh"

#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "cuda/check.cuh"

namespace fp4kit::cuda {
namespace {

constexpr int kMaxDevices = 64;

struct FactsTable {
  std::once_flag once[kMaxDevices];
  DeviceFacts facts[kMaxDevices];
};

FactsTable& facts_table() {
  static FactsTable table;
  return table;
}

struct SharedMemoryAllowances {
  std::mutex mutex;
  std::map<std::pair<int, const void*>, size_t> bytes;  // (device, kernel) -> the allowance set
};

SharedMemoryAllowances& allowances() {
  static SharedMemoryAllowances a;
  return a;
}

}  // namespace

const DeviceFacts& current_device_facts() {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  if (device < 0 || device >= kMaxDevices)
    throw DeviceError("device " + std::to_string(device) + ": fp4kit keeps the facts of devices 0.." +
                      std::to_string(kMaxDevices - 1) + " only");
  FactsTable& t = facts_table();
  // A call that throws leaves the flag unset, so the next call asks again.
  std::call_once(t.once[device], [&] {
    DeviceFacts f;
    f.ordinal = device;
    check(cudaDeviceGetAttribute(&f.multiprocessors, cudaDevAttrMultiProcessorCount, device), "multiprocessor count");
    check(cudaDeviceGetAttribute(&f.major, cudaDevAttrComputeCapabilityMajor, device), "compute capability");
    check(cudaDeviceGetAttribute(&f.minor, cudaDevAttrComputeCapabilityMinor, device), "compute capability");
    t.facts[device] = f;
  });
  return t.facts[device];
}

void allow_dynamic_shared_memory(const void* kernel, size_t bytes, const char* kernel_name) {
  const int device = current_device_facts().ordinal;
  SharedMemoryAllowances& a = allowances();
  const std::lock_guard<std::mutex> lock(a.mutex);
  size_t& set = a.bytes[{device, kernel}];
  if (bytes <= set) return;
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
        [&] { return std::string(kernel_name) + ": dynamic shared memory of " + std::to_string(bytes) + " bytes"; });
  set = bytes;
}

}  // namespace fp4kit::cuda
