#pragma once
// The f32 matrix product of the forward pass: y = x W^T with x [M, K], W [N, K] (a linear layer's
// [out, in] weight, row-major) and y [M, N], all row-major and dense.
//
// Summation order (part of the contract; -ffp-contract=off, so no fused multiply-add anywhere):
// every y[m, n] is a dot product over k computed in 8 lanes. Lane j (0..7) starts at +0 and adds the
// products x[k]*w[k] (each rounded to f32) for k = j, j+8, j+16, ... in increasing k; a lane past the
// end of the row adds +0 instead. The lanes are then combined as
//   ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7)).
// The scalar `_ref` and the vector paths (matmul_simd.cpp, every ISA) follow this order exactly, so they agree bit for bit, and the
// result of an element depends neither on M, N, the tiling nor the number of threads.
#include <cstddef>

#include "formats/isa.h"

namespace fp4kit::engine {

struct MatmulKernels {
  // y[m, n] for m in [0, M), n in [0, N); ldx, ldw, ldy are row strides in floats.
  void (*matmul)(const float* x, size_t ldx, const float* w, size_t ldw, float* y, size_t ldy, size_t M,
                 size_t N, size_t K);
  // One dot product of length K, in the same order.
  float (*dot)(const float* a, const float* b, size_t K);
};
const MatmulKernels& matmul_kernels(Isa isa = preferred_isa());

namespace matmul_ref {
void matmul(const float* x, size_t ldx, const float* w, size_t ldw, float* y, size_t ldy, size_t M, size_t N,
            size_t K);
float dot(const float* a, const float* b, size_t K);
}  // namespace matmul_ref

namespace matmul_simd {
// The vector kernels for `isa`, nullptr where none were compiled.
const MatmulKernels* kernels_for(Isa isa);
}

// y = x W^T on up to `threads` threads (blocks of outputs; the result does not depend on `threads`).
void matmul(const float* x, const float* w, float* y, size_t M, size_t N, size_t K, unsigned threads);
inline float dot(const float* a, const float* b, size_t K) { return matmul_kernels().dot(a, b, K); }

}  // namespace fp4kit::engine
