// AVX2 fast path of the searched NVFP4 block scales (mse, four-over-six). Bit-identical to the scalar
// reference: every loss is computed with the same f32 operations in the same order, only which
// values share a vector differs.
//  - mse: a vector holds 8 consecutive candidates, so each candidate's squared errors are
//    accumulated element by element as mse_block_loss does (in order within each of the kernel's
//    threads, the square fused into the addition, then the threads' sums widest offset first). The
//    window and its fallback to all 126 candidates are mse_sweep_window's; the choice is the
//    reference's strict-less scan: the smallest loss below +inf, the first of equal ones, else
//    candidate 0.
//  - four-over-six: a vector holds 8 elements of one block and torch's pairwise sum of the 16
//    squared errors is a tree of horizontal adds; blocks holding NaN go to the reference.
// The fake-quant scales and the export are the reference's own functions, the elements are
// quantized by the NVFP4 fast path (itself bit-identical to its reference).
#include <immintrin.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "formats/nvfp4.h"
#include "formats/nvfp4_four_over_six.h"
#include "formats/nvfp4_mse_sweep.h"
#include "formats/nvfp4_scale_search.h"

#include "formats/avx2_begin.h"
#include "formats/avx2_common.h"

namespace fp4kit::nvfp4_search_avx2 {
namespace {

using namespace fp4kit::avx2;

constexpr int kCandidates = Nvfp4MseCandidates::kCount;
// A window may start at any candidate and its last vector reads 7 past its last candidate.
constexpr int kPaddedCandidates = kCandidates + 8;
constexpr size_t kChunkBlocks = 64;  // blocks searched before their amaxes are exported

inline float horizontal_max(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

inline float horizontal_min(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_min_ss(m, _mm_movehdup_ps(m)));
}

// fp4_round_magnitude as a value, E2M1::kValues[E2M1::magnitude_code(y)], for every y: NaN and
// anything above 6 give 6, negatives 0. The rest is rounded half to even to the grid step of its
// binade (0.5 below 2, 1 below 4, 2 above) by adding and subtracting 2^22 times the binade's power
// of two (at least 1): one float rounding, whose ties go to the even multiple as the grid's do.
inline __m256 e2m1_round(__m256 y) {
  // minps returns its second operand when either is NaN, so NaN becomes 6.
  const __m256 c = _mm256_max_ps(_mm256_min_ps(y, _mm256_set1_ps(6.0f)), _mm256_setzero_ps());
  const __m256i binade = _mm256_max_epi32(_mm256_and_si256(_mm256_castps_si256(c), _mm256_set1_epi32(0x7F800000)),
                                          _mm256_set1_epi32(0x3F800000));
  const __m256 shift = _mm256_castsi256_ps(_mm256_add_epi32(binade, _mm256_set1_epi32(22 << 23)));
  return _mm256_sub_ps(_mm256_add_ps(c, shift), shift);
}

// ---- mse ----------------------------------------------------------------------------------------

// The candidates' scales and reciprocals, padded so that any 8 consecutive ones load as a vector.
struct MseTables {
  alignas(32) float scale[kPaddedCandidates];
  alignas(32) float reciprocal[kPaddedCandidates];

  explicit MseTables(const Nvfp4MseCandidates& cand) {
    for (int k = 0; k < kPaddedCandidates; ++k) {
      // (The padding is never chosen: the scan masks everything past the window.)
      scale[k] = k < kCandidates ? cand.scale(k) : 1.0f;
      reciprocal[k] = k < kCandidates ? cand.reciprocal(k) : 1.0f;
    }
  }
};

// |w| - q*scale as one fused multiply-add, for 8 candidates at once.
inline __m256 mse_difference(const float* magnitude, __m256 scale, __m256 reciprocal) {
  const __m256 a = _mm256_broadcast_ss(magnitude);
  return _mm256_fnmadd_ps(e2m1_round(_mm256_mul_ps(a, reciprocal)), scale, a);
}

// mse_block_loss of candidates k0 .. k0+7: `Lanes` threads of 16/Lanes elements each.
template <int Lanes>
inline __m256 mse_losses(const float* magnitudes, const MseTables& t, int k0) {
  constexpr int kPerLane = 16 / Lanes;
  const __m256 scale = _mm256_loadu_ps(t.scale + k0), reciprocal = _mm256_loadu_ps(t.reciprocal + k0);
  __m256 acc[Lanes];
  for (int lane = 0; lane < Lanes; ++lane) {
    const __m256 d = mse_difference(magnitudes + lane * kPerLane, scale, reciprocal);
    acc[lane] = _mm256_mul_ps(d, d);
  }
  for (int j = 1; j < kPerLane; ++j)
    for (int lane = 0; lane < Lanes; ++lane) {
      const __m256 d = mse_difference(magnitudes + lane * kPerLane + j, scale, reciprocal);
      acc[lane] = _mm256_fmadd_ps(d, d, acc[lane]);
    }
  for (int offset = Lanes / 2; offset > 0; offset /= 2)
    for (int lane = 0; lane < offset; ++lane) acc[lane] = _mm256_add_ps(acc[lane], acc[lane + offset]);
  return acc[0];
}

// The winner among candidates [w.first, w.last], chosen as sweep_range chooses it.
template <int Lanes>
int mse_choose(const float* magnitudes, const MseTables& t, Nvfp4MseWindow w) {
  const __m256 inf = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  const __m256i past_last = _mm256_set1_epi32(w.last + 1);
  const __m256i lane_index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int vectors = (w.last - w.first) / 8 + 1;
  __m256 losses[(kCandidates + 7) / 8];
  __m256 best = inf;
  for (int v = 0; v < vectors; ++v) {
    const int k0 = w.first + 8 * v;
    const __m256 loss = mse_losses<Lanes>(magnitudes, t, k0);
    // Only losses below +inf can replace the scan's start (NaN never does), only in the window.
    const __m256i k = _mm256_add_epi32(_mm256_set1_epi32(k0), lane_index);
    const __m256 counts = _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(past_last, k)),
                                        _mm256_cmp_ps(loss, inf, _CMP_LT_OQ));
    losses[v] = _mm256_blendv_ps(inf, loss, counts);
    best = _mm256_min_ps(best, losses[v]);
  }
  const float smallest = horizontal_min(best);
  if (!(smallest < std::numeric_limits<float>::infinity())) return 0;
  for (int v = 0; v < vectors; ++v) {
    const int mask = _mm256_movemask_ps(_mm256_cmp_ps(losses[v], _mm256_set1_ps(smallest), _CMP_EQ_OQ));
    if (mask) return w.first + 8 * v + __builtin_ctz(static_cast<unsigned>(mask));
  }
  return 0;
}

template <DType D>
void mse_block_amax(FloatSpan src, float global_amax, const Nvfp4MseCandidates& cand, const MseTables& tables,
                    float* block_amax) {
  const bool four_lanes = mse_sweep_lanes(src.dtype) == 4;
  alignas(32) float magnitudes[16];
  for (size_t b = 0; b < src.size / 16; ++b) {
    const __m256 x0 = load8<D>(src.data, 16 * b), x1 = load8<D>(src.data, 16 * b + 8);
    const __m256 a0 = abs_ps(x0), a1 = abs_ps(x1);
    // mse_sweep: a NaN element means the full sweep, otherwise the window of the block amax.
    Nvfp4MseWindow w;
    if (!_mm256_movemask_ps(_mm256_cmp_ps(x0, x1, _CMP_UNORD_Q)))
      w = mse_sweep_window(horizontal_max(_mm256_max_ps(a0, a1)), global_amax);
    int k = 0;  // a window of candidate 0 alone (an all-zero block) ends where the scan starts
    if (w.last > 0) {
      _mm256_store_ps(magnitudes, a0);
      _mm256_store_ps(magnitudes + 8, a1);
      k = four_lanes ? mse_choose<4>(magnitudes, tables, w) : mse_choose<2>(magnitudes, tables, w);
    }
    block_amax[b] = cand.block_amax(k);
  }
}

// ---- four-over-six -------------------------------------------------------------------------------

// One candidate block scale as nvfp4_scalar_quant applies it.
struct FakeQuant {
  __m256 scale, reciprocal;
  bool zero;
  explicit FakeQuant(float s) : zero(s == 0.0f) {
    const float safe = four_over_six_safe_scale(s);
    scale = _mm256_set1_ps(safe);
    reciprocal = _mm256_set1_ps(1.0f / safe);
  }
};

// The squared errors of 8 elements, as four_over_six_block_loss computes them.
inline __m256 squared_errors(__m256 x, const FakeQuant& f) {
  __m256 xq = _mm256_setzero_ps();
  if (!f.zero) {
    const __m256 magnitude = _mm256_mul_ps(e2m1_round(_mm256_mul_ps(abs_ps(x), f.reciprocal)), f.scale);
    const __m256 negated = _mm256_xor_ps(magnitude, _mm256_set1_ps(-0.0f));
    xq = _mm256_blendv_ps(negated, magnitude, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ));
  }
  const __m256 d = _mm256_sub_ps(x, xq);
  return _mm256_mul_ps(d, d);
}

// torch_sum16 of both candidates' 16 squared errors (elements 0-7 in lo, 8-15 in hi): adjacent
// pairs, pairs of pairs, quads, halves.
inline void pairwise_sums(__m256 lo6, __m256 hi6, __m256 lo4, __m256 hi4, float* loss6, float* loss4) {
  // [6:s0-3 6:s8-11 4:s0-3 4:s8-11 | 6:s4-7 6:s12-15 4:s4-7 4:s12-15]
  const __m256 quads = _mm256_hadd_ps(_mm256_hadd_ps(lo6, hi6), _mm256_hadd_ps(lo4, hi4));
  const __m128 halves = _mm_add_ps(_mm256_castps256_ps128(quads), _mm256_extractf128_ps(quads, 1));
  const __m128 sums = _mm_hadd_ps(halves, halves);
  *loss6 = _mm_cvtss_f32(sums);
  *loss4 = _mm_cvtss_f32(_mm_movehdup_ps(sums));
}

template <DType D>
void four_over_six_block_amax(FloatSpan src, const Nvfp4SearchScaling& sc, const FourOverSixFakeScale& fake_scale,
                              float* block_amax) {
  for (size_t b = 0; b < src.size / 16; ++b) {
    const __m256 x0 = load8<D>(src.data, 16 * b), x1 = load8<D>(src.data, 16 * b + 8);
    if (_mm256_movemask_ps(_mm256_cmp_ps(x0, x1, _CMP_UNORD_Q))) {
      nvfp4_search_block_amax(src.subspan(16 * b, 16), sc, block_amax + b);
      continue;
    }
    const float amax = horizontal_max(_mm256_max_ps(abs_ps(x0), abs_ps(x1)));
    const FakeQuant six(fake_scale(amax)), four(fake_scale(amax * 1.5f));
    float loss6, loss4;
    pairwise_sums(squared_errors(x0, six), squared_errors(x1, six), squared_errors(x0, four),
                  squared_errors(x1, four), &loss6, &loss4);
    block_amax[b] = four_over_six_prefers_four(loss6, loss4) ? amax * 1.5f : amax;
  }
}

// ---- whole tensors -------------------------------------------------------------------------------

// What a search needs of the global amax, computed once per call.
struct Search {
  const Nvfp4SearchScaling& sc;
  Nvfp4MseCandidates candidates;
  MseTables tables;
  FourOverSixFakeScale fake_scale;

  explicit Search(const Nvfp4SearchScaling& scaling)
      : sc(scaling), candidates(scaling.global_amax), tables(candidates), fake_scale(scaling.global_amax) {
    require_no_statistics(scaling.method);
  }

  template <DType D>
  void block_amax(FloatSpan src, float* out) const {
    if (sc.method == Nvfp4ScaleMethod::Mse) return mse_block_amax<D>(src, sc.global_amax, candidates, tables, out);
    four_over_six_block_amax<D>(src, sc, fake_scale, out);
  }
};

template <DType D>
void block_amax_impl(FloatSpan src, const Nvfp4SearchScaling& sc, float* out) {
  Search(sc).block_amax<D>(src, out);
}

template <DType D>
void quantize_impl(FloatSpan src, const Nvfp4SearchScaling& sc, uint8_t* packed, uint8_t* scales) {
  const Search search(sc);
  const float fp8_max = scale_method_fp8_max(sc.method);
  const bool cuda = sc.numerics == Nvfp4Numerics::ModelOptCuda;
  const size_t blocks = src.size / 16;
  float amax[kChunkBlocks];
  for (size_t first = 0; first < blocks; first += kChunkBlocks) {
    const size_t count = blocks - first < kChunkBlocks ? blocks - first : kChunkBlocks;
    search.block_amax<D>(src.subspan(16 * first, 16 * count), amax);
    for (size_t b = 0; b < count; ++b)
      scales[first + b] = modelopt_static_block_scale(amax[b], sc.global_amax, fp8_max, cuda);
  }
  // NVFP4QTensor.quantize with the exported scales, as nvfp4_search_quantize does it.
  nvfp4_avx2::kKernels.quantize_with_scales(src, scales, Nvfp4Scaling{sc.numerics, sc.weight_scale_2, src.dtype},
                                            packed);
}

void block_amax(FloatSpan src, const Nvfp4SearchScaling& sc, float* out) {
  switch (src.dtype) {
    case DType::BF16: return block_amax_impl<DType::BF16>(src, sc, out);
    case DType::F16: return block_amax_impl<DType::F16>(src, sc, out);
    default: return block_amax_impl<DType::F32>(src, sc, out);
  }
}

void quantize(FloatSpan src, const Nvfp4SearchScaling& sc, uint8_t* packed, uint8_t* scales) {
  switch (src.dtype) {
    case DType::BF16: return quantize_impl<DType::BF16>(src, sc, packed, scales);
    case DType::F16: return quantize_impl<DType::F16>(src, sc, packed, scales);
    default: return quantize_impl<DType::F32>(src, sc, packed, scales);
  }
}

}  // namespace

const Nvfp4SearchKernels kKernels = {block_amax, quantize};

}  // namespace fp4kit::nvfp4_search_avx2

#include "formats/avx2_end.h"
