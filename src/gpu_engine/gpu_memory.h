#pragma once
// The GPU memory budget of a forward pass (`--gpu-memory`): a size ("80GB", "80GiB", "512MiB",
// plain bytes) or a share of the device's memory ("90%"). Plain C++: the CLI parses it without CUDA.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

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
  const auto bad = [&] {
    return InputError("--gpu-memory " + text + ": expected a size (80GB, 80GiB, 512MiB, bytes) or a share (90%)");
  };
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    throw bad();
  }
  std::string unit = text.substr(used);
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!(v > 0) || !std::isfinite(v)) throw bad();
  if (unit == "%") {
    if (v > 100) throw bad();
    b.fraction = v / 100.0;
    return b;
  }
  double scale = 0;
  if (unit.empty() || unit == "b") scale = 1;
  else if (unit == "k" || unit == "kb") scale = 1e3;
  else if (unit == "m" || unit == "mb") scale = 1e6;
  else if (unit == "g" || unit == "gb") scale = 1e9;
  else if (unit == "t" || unit == "tb") scale = 1e12;
  else if (unit == "kib") scale = 1024.0;
  else if (unit == "mib") scale = 1024.0 * 1024;
  else if (unit == "gib") scale = 1024.0 * 1024 * 1024;
  else if (unit == "tib") scale = 1024.0 * 1024 * 1024 * 1024;
  else throw bad();
  b.bytes = static_cast<size_t>(v * scale);
  if (b.bytes == 0) throw bad();
  return b;
}

}  // namespace fp4kit::gpu_engine
