#pragma once
// Dense BF16 products through cuBLASLt, y = x·Wᵀ with F32 accumulation: the baseline every weight
// kernel is measured against, and what the engine uses for weights it keeps in BF16. Plain C++
// header: no CUDA headers.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "cuda/runtime.h"
#include "cuda/weight_gemm.h"

namespace fp4kit::cuda {

// A cuBLASLt handle with its own workspace and one cached algorithm per problem (shape, output type
// and operand alignment), chosen by cuBLASLt's heuristic on first use. Calls on one CublasGemm share
// the workspace, so they must be ordered: issue them on one stream (or order the streams). The plan
// cache is guarded by a mutex; a call may be captured in a CUDA graph.
class CublasGemm {
 public:
  static constexpr size_t kDefaultWorkspaceBytes = size_t{32} << 20;  // what cuBLAS advises for Hopper

  // How split-K algorithms may add their partial sums for a BF16 output: in F32 only (the result
  // is one rounding of the F32 sum), or in any scheme cuBLASLt offers, BF16 included (what a caller
  // with default preferences gets, e.g. a framework's matmul: the baseline to measure against).
  enum class Bf16Partials : uint8_t { F32Only, AnyScheme };

  explicit CublasGemm(size_t workspace_bytes = kDefaultWorkspaceBytes, Bf16Partials partials = Bf16Partials::F32Only);
  ~CublasGemm();
  CublasGemm(const CublasGemm&) = delete;
  CublasGemm& operator=(const CublasGemm&) = delete;

  // y[M, N] = alpha · x[M, K] · W[N, K]ᵀ, all row-major and dense; x and W BF16 bits, y F32 or BF16
  // (rounded once from the F32 result, unless built with Bf16Partials::AnyScheme). M = 0 does
  // nothing; N, K must be positive. InputError for bad arguments, DeviceError (naming the call and
  // the shape) when cuBLASLt fails or has no algorithm.
  void bf16_gemm(const uint16_t* x, const uint16_t* w, void* y, GemmOutput out, int64_t m, int64_t n, int64_t k,
                 StreamHandle stream, float alpha = 1.0f);

  // y[M, N] = x[M, K] · W[N, K]ᵀ in full F32 (F32 products and sums, no TF32), with row strides ldx
  // (>= K) and ldy (>= N) for x and y, W dense: the engine's F32 check mode.
  void f32_gemm(const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, int64_t m, int64_t n, int64_t k,
                StreamHandle stream);

  // Distinct problems planned so far (one heuristic query each).
  size_t cached_plans() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fp4kit::cuda
