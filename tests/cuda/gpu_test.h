#pragma once
// GPU tests run where a CUDA GPU is present and skip with the reason elsewhere (a CPU-only CI
// machine that still compiles the kernels).
#include <gtest/gtest.h>

#include <string>

#include "cuda/device.h"

#define FP4KIT_REQUIRE_GPU()                                               \
  do {                                                                     \
    std::string fp4kit_why_no_gpu;                                         \
    if (!::fp4kit::cuda::probe(0, &fp4kit_why_no_gpu))                     \
      GTEST_SKIP() << "no GPU to run on: " << fp4kit_why_no_gpu;           \
  } while (0)
