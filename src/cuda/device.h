#pragma once
// Which CUDA GPU fp4kit runs on, asked without CUDA headers: the CPU-only build (no nvcc at
// configure time) links a version of these functions that reports why there is no GPU, so every
// command builds everywhere and `--device cuda` fails with one clear message instead of a link error.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace fp4kit::cuda {

struct DeviceInfo {
  int ordinal = 0;
  std::string name;
  int sm_major = 0, sm_minor = 0;
  int multiprocessors = 0;
  size_t total_memory = 0, free_memory = 0;
  size_t l2_bytes = 0;
  size_t shared_memory_per_block_optin = 0;
};

// Whether this binary holds CUDA kernels at all.
bool compiled();
// The architectures compiled in, e.g. "sm_90a sm_100a" ("" without CUDA).
std::string compiled_archs();
// Device `ordinal`, or nullopt with the reason in `why_not` (built without CUDA, no driver, no GPU,
// an architecture the binary has no code for).
std::optional<DeviceInfo> probe(int ordinal = 0, std::string* why_not = nullptr);
// probe() or an InputError with the reason: what `--device cuda` calls first (exit code 2).
DeviceInfo require_device(int ordinal = 0);

// The device a command computes on.
enum class Device { Cpu, Cuda };
// "cpu" or "cuda"; InputError naming the flag otherwise.
Device parse_device(std::string_view name);
std::string_view device_name(Device);

}  // namespace fp4kit::cuda
