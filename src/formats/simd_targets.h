// The Highway targets the fast paths are compiled for. Include first in every *_simd.cpp file (and
// in isa.cpp), before any Highway header. The fixed-function targets Highway also knows (SSSE3,
// SSE4, AVX3_DL, SVE_256, SVE2_128) add build time and nothing these kernels use; HWY_SCALAR, the
// x86 baseline, is compiled by Highway but never chosen (the project's scalar references take its
// place). A file that holds vectors in arrays or structs defines FP4KIT_SIMD_NO_SVE before including
// this: SVE vectors are sizeless types, which C++ cannot put there, so on SVE CPUs that file runs
// its NEON code (isa_fallback).
// A file's kernels sit inside `#if FP4KIT_SIMD_KERNELS` in the per-target namespace, with an #else
// that exports nullptr: Highway's HWY_SCALAR/EMU128 fallbacks get no copy of them.
// (No include guard: a *_simd.cpp file is re-included once per target by Highway.)
#ifndef HWY_DISABLED_TARGETS
#if defined(FP4KIT_SIMD_NO_SVE)
#define HWY_DISABLED_TARGETS \
  (HWY_SSSE3 | HWY_SSE4 | HWY_AVX3_DL | HWY_SVE_256 | HWY_SVE2_128 | HWY_SVE | HWY_SVE2)
#else
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_SSE4 | HWY_AVX3_DL | HWY_SVE_256 | HWY_SVE2_128)
#endif
#endif
#define FP4KIT_SIMD_KERNELS (HWY_TARGET != HWY_SCALAR && HWY_TARGET != HWY_EMU128)
