#pragma once
// GPU tests run where a CUDA GPU is present and skip with the reason elsewhere (a CPU-only CI
// machine that still compiles the kernels).
#include <gtest/gtest.h>

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

// `count` elements of T copied back from device memory, after everything queued on `s`.
template <class T>
std::vector<T> read_back(const void* device, size_t count, const cuda::Stream& s) {
  std::vector<T> v(count);
  if (count) cuda::copy_to_host(v.data(), device, count * sizeof(T), s);
  s.synchronize("test read-back");
  return v;
}

}  // namespace fp4kit::testing
