// AVX2 fast path of the f32 matrix product: tiles of 4 input rows x 2 weight rows, one 8-lane
// accumulator per output, separate multiply and add (no FMA) in the lane order matmul.h defines, so
// every output equals matmul_ref bit for bit. The row tail is read with a masked load, whose
// masked-off lanes are +0 and so add the +0 products the reference adds.
#include "engine/matmul.h"

#include <cstddef>
#include <cstdint>

#include <immintrin.h>

#include "formats/avx2_begin.h"

namespace fp4kit::engine::matmul_avx2 {
namespace {

__m256i tail_mask(size_t rest) {
  alignas(32) static const int32_t kLanes[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kLanes + 8 - rest));
}

float reduce(__m256 s) {
  const __m128 t = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));  // s_i + s_{i+4}
  const __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));                                  // t0+t2, t1+t3
  return _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)));
}

template <int MR, int NR>
void tile(const float* x, size_t ldx, const float* w, size_t ldw, float* y, size_t ldy, size_t K) {
  __m256 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  const size_t full = K / 8 * 8;
  for (size_t k = 0; k < full; k += 8) {
    __m256 wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = _mm256_loadu_ps(w + j * ldw + k);
    for (int i = 0; i < MR; ++i) {
      const __m256 xv = _mm256_loadu_ps(x + i * ldx + k);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_add_ps(acc[i][j], _mm256_mul_ps(xv, wv[j]));
    }
  }
  if (full < K) {
    const __m256i mask = tail_mask(K - full);
    __m256 wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = _mm256_maskload_ps(w + j * ldw + full, mask);
    for (int i = 0; i < MR; ++i) {
      const __m256 xv = _mm256_maskload_ps(x + i * ldx + full, mask);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_add_ps(acc[i][j], _mm256_mul_ps(xv, wv[j]));
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) y[i * ldy + j] = reduce(acc[i][j]);
}

template <int MR>
void row_block(const float* x, size_t ldx, const float* w, size_t ldw, float* y, size_t ldy, size_t N, size_t K) {
  size_t n = 0;
  for (; n + 2 <= N; n += 2) tile<MR, 2>(x, ldx, w + n * ldw, ldw, y + n, ldy, K);
  if (n < N) tile<MR, 1>(x, ldx, w + n * ldw, ldw, y + n, ldy, K);
}

void matmul(const float* x, size_t ldx, const float* w, size_t ldw, float* y, size_t ldy, size_t M, size_t N,
            size_t K) {
  size_t m = 0;
  for (; m + 4 <= M; m += 4) row_block<4>(x + m * ldx, ldx, w, ldw, y + m * ldy, ldy, N, K);
  for (; m < M; ++m) row_block<1>(x + m * ldx, ldx, w, ldw, y + m * ldy, ldy, N, K);
}

float dot(const float* a, const float* b, size_t K) {
  float r;
  tile<1, 1>(a, 0, b, 0, &r, 0, K);
  return r;
}

}  // namespace

const MatmulKernels kKernels{matmul, dot};

}  // namespace fp4kit::engine::matmul_avx2

#include "formats/avx2_end.h"
