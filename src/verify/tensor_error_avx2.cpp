// AVX2 form of TensorError::add_ref: the same double operations per lane in the same order (no FMA
// contraction), 16 values a step, one value per lane. A step holding a NaN or an Inf on either
// side is handed to the scalar definition, which keeps the lane of every value.
#include <immintrin.h>

#include <algorithm>
#include <bit>

#include "verify/tensor_error.h"

#include "formats/avx2_begin.h"

namespace fp4kit::verify {

namespace {

constexpr size_t kStep = TensorError::kLanes;
static_assert(kStep == 16, "four vectors of four double lanes");

}  // namespace

void tensor_error_add_avx2(TensorError& e, const float* x, const float* ref, size_t n) {
  // Scalar head up to the next value that falls in lane 0.
  const size_t head = std::min(n, (kStep - e.values % kStep) % kStep);
  e.add_ref(x, ref, head);
  size_t i = head;
  if (n - i < kStep) return e.add_ref(x + i, ref + i, n - i);
  const uint64_t base = e.values;  // a multiple of kStep: value i + j of this call falls in lane j

  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  const __m256 inf = _mm256_set1_ps(__builtin_inff());
  const __m256d abs_mask_d = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFF));
  __m256d sig[4], noi[4];
  auto load = [&] {
    for (int k = 0; k < 4; ++k) {
      sig[k] = _mm256_loadu_pd(e.signal_lanes.data() + 4 * k);
      noi[k] = _mm256_loadu_pd(e.noise_lanes.data() + 4 * k);
    }
  };
  auto store = [&] {
    for (int k = 0; k < 4; ++k) {
      _mm256_storeu_pd(e.signal_lanes.data() + 4 * k, sig[k]);
      _mm256_storeu_pd(e.noise_lanes.data() + 4 * k, noi[k]);
    }
  };
  load();
  __m256d max_abs = _mm256_set1_pd(e.max_abs);
  uint64_t exact = 0;
  for (; i + kStep <= n; i += kStep) {
    const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
    const __m256 r0 = _mm256_loadu_ps(ref + i), r1 = _mm256_loadu_ps(ref + i + 8);
    // |v| >= Inf (unordered: NaN too) on either side: the scalar path counts and skips those pairs.
    const __m256 bad = _mm256_or_ps(
        _mm256_or_ps(_mm256_cmp_ps(_mm256_and_ps(x0, abs_mask), inf, _CMP_NLT_UQ),
                     _mm256_cmp_ps(_mm256_and_ps(x1, abs_mask), inf, _CMP_NLT_UQ)),
        _mm256_or_ps(_mm256_cmp_ps(_mm256_and_ps(r0, abs_mask), inf, _CMP_NLT_UQ),
                     _mm256_cmp_ps(_mm256_and_ps(r1, abs_mask), inf, _CMP_NLT_UQ)));
    if (_mm256_movemask_ps(bad)) {
      store();
      e.values = base + (i - head);  // add_ref takes each value's lane from e.values
      e.add_ref(x + i, ref + i, kStep);
      load();
      continue;
    }
    exact += static_cast<uint64_t>(std::popcount(static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(x0, r0, _CMP_EQ_OQ))))) +
             static_cast<uint64_t>(std::popcount(static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(x1, r1, _CMP_EQ_OQ)))));
    const __m128 xs[4] = {_mm256_castps256_ps128(x0), _mm256_extractf128_ps(x0, 1), _mm256_castps256_ps128(x1),
                          _mm256_extractf128_ps(x1, 1)};
    const __m128 rs[4] = {_mm256_castps256_ps128(r0), _mm256_extractf128_ps(r0, 1), _mm256_castps256_ps128(r1),
                          _mm256_extractf128_ps(r1, 1)};
    for (int k = 0; k < 4; ++k) {
      const __m256d xd = _mm256_cvtps_pd(xs[k]), rd = _mm256_cvtps_pd(rs[k]);
      const __m256d d = _mm256_sub_pd(xd, rd);
      sig[k] = _mm256_add_pd(sig[k], _mm256_mul_pd(rd, rd));
      noi[k] = _mm256_add_pd(noi[k], _mm256_mul_pd(d, d));
      max_abs = _mm256_max_pd(max_abs, _mm256_and_pd(d, abs_mask_d));
    }
  }
  store();
  alignas(32) double m[4];
  _mm256_store_pd(m, max_abs);
  e.max_abs = std::max(e.max_abs, std::max(std::max(m[0], m[1]), std::max(m[2], m[3])));
  e.exact += exact;
  e.values = base + (i - head);
  e.add_ref(x + i, ref + i, n - i);
}

}  // namespace fp4kit::verify

#include "formats/avx2_end.h"
