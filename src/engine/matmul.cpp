#include "engine/matmul.h"

#include <algorithm>

#include "base/parallel.h"

namespace fp4kit::engine {

namespace matmul_ref {

float dot(const float* a, const float* b, size_t K) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const size_t full = K / 8 * 8;
  for (size_t k = 0; k < full; k += 8)
    for (size_t j = 0; j < 8; ++j) s[j] += a[k + j] * b[k + j];
  if (full < K)
    for (size_t j = 0; j < 8; ++j) s[j] += full + j < K ? a[full + j] * b[full + j] : 0.0f;
  return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}

void matmul(const float* x, size_t ldx, const float* w, size_t ldw, float* y, size_t ldy, size_t M, size_t N,
            size_t K) {
  for (size_t m = 0; m < M; ++m)
    for (size_t n = 0; n < N; ++n) y[m * ldy + n] = dot(x + m * ldx, w + n * ldw, K);
}

}  // namespace matmul_ref

namespace {
const MatmulKernels kRefKernels{matmul_ref::matmul, matmul_ref::dot};
}

const MatmulKernels& matmul_kernels(Isa isa) {
  if (const MatmulKernels* k = matmul_simd::kernels_for(isa)) return *k;
  return kRefKernels;
}

void matmul(const float* x, const float* w, float* y, size_t M, size_t N, size_t K, unsigned threads) {
  if (M == 0 || N == 0) return;
  const MatmulKernels& kernels = matmul_kernels();
  // Blocks of 64 weight rows x 64 input rows: a weight block stays in cache across its input rows.
  constexpr size_t kBlockN = 64, kBlockM = 64;
  const size_t blocks_n = (N + kBlockN - 1) / kBlockN, blocks_m = (M + kBlockM - 1) / kBlockM;
  parallel_for(blocks_n * blocks_m, 1, threads, [&](size_t begin, size_t end) {
    for (size_t b = begin; b < end; ++b) {
      const size_t n0 = b / blocks_m * kBlockN, m0 = b % blocks_m * kBlockM;
      const size_t nn = std::min(kBlockN, N - n0), mm = std::min(kBlockM, M - m0);
      kernels.matmul(x + m0 * K, K, w + n0 * K, K, y + m0 * N + n0, N, mm, nn, K);
    }
  });
}

}  // namespace fp4kit::engine
