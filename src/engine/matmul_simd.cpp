// Vector fast path of the f32 matrix product, one source for every ISA (Highway): tiles of 4 input
// rows x 2 weight rows, one logical 8-lane accumulator per output (one 8-lane vector on AVX2 and
// AVX-512, two 4-lane vectors on NEON), separate multiply and add (no FMA) in the lane order
// matmul.h defines, so every output equals matmul_ref bit for bit on every ISA. The row tail is
// copied into a zeroed buffer, whose zero lanes add the +0 products the reference adds.
// The accumulators live in arrays, which SVE's sizeless vectors cannot: SVE CPUs run the NEON code.
#define FP4KIT_SIMD_NO_SVE
#include "formats/simd_targets.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "engine/matmul_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <cstddef>
#include <cstring>

#include "engine/matmul.h"

HWY_BEFORE_NAMESPACE();
namespace fp4kit::engine::matmul_simd::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
#if FP4KIT_SIMD_KERNELS

using D = hn::CappedTag<float, 8>;
using V = hn::Vec<D>;
constexpr size_t kLanes = hn::MaxLanes(D());
constexpr size_t kParts = 8 / kLanes;  // vectors per logical 8-lane accumulator
static_assert(kLanes * kParts == 8, "8 logical lanes");

// ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7)) over the 8 logical lanes.
HWY_INLINE float reduce(const V (&s)[kParts]) {
  const D d;
  HWY_ALIGN float l[8];
  for (size_t p = 0; p < kParts; ++p) hn::Store(s[p], d, l + p * kLanes);
  return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

template <int MR, int NR>
void tile(const float* x, size_t ldx, const float* w, size_t ldw, float* y, size_t ldy, size_t K) {
  const D d;
  V acc[MR][NR][kParts];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j)
      for (size_t p = 0; p < kParts; ++p) acc[i][j][p] = hn::Zero(d);
  const auto step = [&](const float* const xs[MR], const float* const ws[NR]) HWY_ATTR {
    for (size_t p = 0; p < kParts; ++p) {
      V wv[NR];
      for (int j = 0; j < NR; ++j) wv[j] = hn::LoadU(d, ws[j] + p * kLanes);
      for (int i = 0; i < MR; ++i) {
        const V xv = hn::LoadU(d, xs[i] + p * kLanes);
        for (int j = 0; j < NR; ++j) acc[i][j][p] = hn::Add(acc[i][j][p], hn::Mul(xv, wv[j]));
      }
    }
  };
  const size_t full = K / 8 * 8;
  const float* xs[MR];
  const float* ws[NR];
  for (size_t k = 0; k < full; k += 8) {
    for (int i = 0; i < MR; ++i) xs[i] = x + i * ldx + k;
    for (int j = 0; j < NR; ++j) ws[j] = w + j * ldw + k;
    step(xs, ws);
  }
  if (full < K) {
    float xt[MR][8] = {}, wt[NR][8] = {};
    for (int i = 0; i < MR; ++i) {
      std::memcpy(xt[i], x + i * ldx + full, (K - full) * sizeof(float));
      xs[i] = xt[i];
    }
    for (int j = 0; j < NR; ++j) {
      std::memcpy(wt[j], w + j * ldw + full, (K - full) * sizeof(float));
      ws[j] = wt[j];
    }
    step(xs, ws);
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

const MatmulKernels* kernels() {
  static const MatmulKernels k{matmul, dot};
  return &k;
}
#else
const MatmulKernels* kernels() { return nullptr; }
#endif

}  // namespace fp4kit::engine::matmul_simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "formats/simd_dispatch.h"

namespace fp4kit::engine::matmul_simd {
HWY_EXPORT(kernels);

const MatmulKernels* kernels_for(Isa isa) {
  const auto entry = simd::table_entry(HWY_DISPATCH_TABLE(kernels), isa);
  return entry ? entry() : nullptr;
}
}  // namespace fp4kit::engine::matmul_simd
#endif
