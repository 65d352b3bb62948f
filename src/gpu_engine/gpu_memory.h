#pragma once
// The GPU memory budget of a forward pass (`--gpu-memory`): a size (base/byte_size.h: "80GB",
// "80GiB", "512MiB", bytes) or a share of the device's memory ("90%"). Plain C++: the CLI parses it
// without CUDA.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/byte_size.h"
#include "base/error.h"

namespace fp4kit::gpu_engine {

struct GpuMemoryBudget {
  size_t bytes = 0;     // a size, or
  double fraction = 0;  // a share of the device's memory (0 < fraction <= 1)
  bool set() const { return bytes > 0 || fraction > 0; }
  size_t resolve(size_t device_total) const {
    return bytes > 0 ? bytes : static_cast<size_t>(std::floor(fraction * static_cast<double>(device_total)));
  }
};

// Empty: no budget (the device's free memory). InputError naming the flag otherwise.
inline GpuMemoryBudget parse_gpu_memory(const std::string& text) {
  GpuMemoryBudget b;
  if (text.empty()) return b;
  if (text.back() == '%') {
    double v = 0;
    size_t used = 0;
    try {
      v = std::stod(text.substr(0, text.size() - 1), &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used + 1 != text.size() || !(v > 0) || !(v <= 100))
      throw InputError("--gpu-memory " + text + ": a share is a percentage above 0 and at most 100, e.g. 90%");
    b.fraction = v / 100.0;
    return b;
  }
  b.bytes = parse_byte_size(text, "--gpu-memory");
  if (b.bytes == 0) throw InputError("--gpu-memory " + text + ": less than one byte");
  return b;
}

}  // namespace fp4kit::gpu_engine
