#pragma once
// GPU tests run where a CUDA GPU is present and skip with the reason elsewhere (a CPU-only CI
// machine that still compiles the kernels).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "cuda/device.h"
#include "cuda/runtime.h"

#define FP4KIT_REQUIRE_GPU()                                               \
  do {                                                                     \
    std::string fp4kit_why_no_gpu;                                         \
    if (!::fp4kit::cuda::probe(0, &fp4kit_why_no_gpu))                     \
      GTEST_SKIP() << "no GPU to run on: " << fp4kit_why_no_gpu;           \
  } while (0)

namespace fp4kit::testing {

// n floats drawn uniformly from [lo, hi) with a fixed seed.
inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -2.0f, float hi = 2.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

// A device copy of `v` (at least one byte, so that empty inputs still have an address).
template <class T>
cuda::DeviceBuffer upload(const std::vector<T>& v, const cuda::Stream& s, const char* what) {
  cuda::DeviceBuffer d(std::max<size_t>(v.size() * sizeof(T), 1), what);
  if (!v.empty()) cuda::copy_to_device(d.data(), v.data(), v.size() * sizeof(T), s);
  return d;
}

// `count` elements of T copied back from device memory, after everything queued on `s`.
template <class T>
std::vector<T> read_back(const void* device, size_t count, const cuda::Stream& s) {
  std::vector<T> v(count);
  if (count) cuda::copy_to_host(v.data(), device, count * sizeof(T), s);
  s.synchronize("test read-back");
  return v;
}

}  // namespace fp4kit::testing
