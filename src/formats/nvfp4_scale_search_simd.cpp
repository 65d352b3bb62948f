// Vector fast path of the searched NVFP4 block scales (mse, four-over-six), one source for every ISA
// (Highway). Bit-identical to the scalar reference: every loss is computed with the same f32
// operations in the same order, only which values share a vector differs.
//  - mse: a vector holds consecutive candidates (up to 16: one vector covers a whole window on
//    AVX-512), so each candidate's squared errors are accumulated in its own lane exactly as
//    mse_block_loss does (in order within each of the kernel's threads, the square fused into the
//    addition, then the threads' sums widest offset first), whatever the vector width. The window
//    and its fallback to all 126 candidates are mse_sweep_window's; the choice is the reference's
//    strict-less scan: the smallest loss below +inf, the first of equal ones, else candidate 0.
//  - four-over-six: a vector holds up to 16 elements of one block, and torch's pairwise sum of the 16
//    squared errors is a tree of sums of adjacent lanes (ConcatEven + ConcatOdd), the two candidate
//    scales side by side; blocks holding NaN go to the reference.
// The fake-quant scales and the export are the reference's own functions; the elements are
// quantized by the NVFP4 fast path of the same ISA (itself bit-identical to its reference).
#include "formats/simd_targets.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "formats/nvfp4_scale_search_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "formats/nvfp4.h"
#include "formats/nvfp4_four_over_six.h"
#include "formats/nvfp4_mse_sweep.h"
#include "formats/nvfp4_scale_search.h"
#include "formats/simd_common-inl.h"

// The sweep reproduces the GPU's fused multiply-adds: MulAdd and NegMulAdd must be fused.
#if defined(HWY_DISABLE_BMI2_FMA)
#error "nvfp4_scale_search_simd.cpp needs FMA"
#endif

HWY_BEFORE_NAMESPACE();
namespace fp4kit::nvfp4_search_simd::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
#if FP4KIT_SIMD_KERNELS

using simd::HWY_NAMESPACE::E2m1Round;
using simd::HWY_NAMESPACE::kTargetIsa;
using simd::HWY_NAMESPACE::LoadAsF32;

using DF = hn::CappedTag<float, 16>;  // at most one block, or 16 candidates, per vector
using DI = hn::RebindToSigned<DF>;

constexpr int kCandidates = Nvfp4MseCandidates::kCount;
// A window may start at any candidate and its last vector reads up to 15 past its last candidate.
constexpr int kPaddedCandidates = kCandidates + 16;
constexpr size_t kChunkBlocks = 64;  // blocks searched before their amaxes are exported
constexpr int32_t kMagnitudeBits = 0x7FFFFFFF;
constexpr int32_t kInfBits = 0x7F800000;

// The block's |x| (as f32 bits, so the max is exact and NaN lies above +inf) stored to `magnitudes`
// when given; returns the largest.
template <DType S>
HWY_INLINE int32_t block_magnitudes(DF d, const void* src, size_t first, float* magnitudes) {
  const DI di;
  const auto mask = hn::Set(di, kMagnitudeBits);
  auto top = hn::Zero(di);
  for (size_t j = 0; j < 16; j += hn::Lanes(d)) {
    const auto a = hn::And(hn::BitCast(di, LoadAsF32<S>(d, src, first + j)), mask);
    top = hn::Max(top, a);
    if (magnitudes) hn::Store(hn::BitCast(d, a), d, magnitudes + j);
  }
  return hn::GetLane(hn::MaxOfLanes(di, top));
}

// ---- mse ----------------------------------------------------------------------------------------

// The candidates' scales and reciprocals, padded so that any 16 consecutive ones load as a vector.
struct MseTables {
  HWY_ALIGN float scale[kPaddedCandidates];
  HWY_ALIGN float reciprocal[kPaddedCandidates];

  explicit MseTables(const Nvfp4MseCandidates& cand) {
    for (int k = 0; k < kPaddedCandidates; ++k) {
      // (The padding is never chosen: the scan masks everything past the window.)
      scale[k] = k < kCandidates ? cand.scale(k) : 1.0f;
      reciprocal[k] = k < kCandidates ? cand.reciprocal(k) : 1.0f;
    }
  }
};

// |w| - q*scale as one fused multiply-add (triton_sub_mul), for consecutive candidates.
HWY_INLINE hn::Vec<DF> mse_difference(DF d, float magnitude, hn::Vec<DF> scale, hn::Vec<DF> reciprocal) {
  const auto a = hn::Set(d, magnitude);
  return hn::NegMulAdd(E2m1Round(d, hn::Mul(a, reciprocal)), scale, a);
}

// mse_block_loss with 2 threads of 8 elements (16-bit weights): each thread's d*d, then fma(d, d, acc)
// in order; then thread 0 + thread 1.
HWY_INLINE hn::Vec<DF> mse_losses_2(DF d, const float* magnitudes, hn::Vec<DF> scale, hn::Vec<DF> reciprocal) {
  auto d0 = mse_difference(d, magnitudes[0], scale, reciprocal);
  auto d1 = mse_difference(d, magnitudes[8], scale, reciprocal);
  auto acc0 = hn::Mul(d0, d0), acc1 = hn::Mul(d1, d1);
  for (int j = 1; j < 8; ++j) {
    d0 = mse_difference(d, magnitudes[j], scale, reciprocal);
    d1 = mse_difference(d, magnitudes[8 + j], scale, reciprocal);
    acc0 = hn::MulAdd(d0, d0, acc0);
    acc1 = hn::MulAdd(d1, d1, acc1);
  }
  return hn::Add(acc0, acc1);
}

// The same with 4 threads of 4 elements (F32 weights); the butterfly adds threads 2 apart, then 1.
HWY_INLINE hn::Vec<DF> mse_losses_4(DF d, const float* magnitudes, hn::Vec<DF> scale, hn::Vec<DF> reciprocal) {
  auto d0 = mse_difference(d, magnitudes[0], scale, reciprocal);
  auto d1 = mse_difference(d, magnitudes[4], scale, reciprocal);
  auto d2 = mse_difference(d, magnitudes[8], scale, reciprocal);
  auto d3 = mse_difference(d, magnitudes[12], scale, reciprocal);
  auto acc0 = hn::Mul(d0, d0), acc1 = hn::Mul(d1, d1), acc2 = hn::Mul(d2, d2), acc3 = hn::Mul(d3, d3);
  for (int j = 1; j < 4; ++j) {
    d0 = mse_difference(d, magnitudes[j], scale, reciprocal);
    d1 = mse_difference(d, magnitudes[4 + j], scale, reciprocal);
    d2 = mse_difference(d, magnitudes[8 + j], scale, reciprocal);
    d3 = mse_difference(d, magnitudes[12 + j], scale, reciprocal);
    acc0 = hn::MulAdd(d0, d0, acc0);
    acc1 = hn::MulAdd(d1, d1, acc1);
    acc2 = hn::MulAdd(d2, d2, acc2);
    acc3 = hn::MulAdd(d3, d3, acc3);
  }
  return hn::Add(hn::Add(acc0, acc2), hn::Add(acc1, acc3));
}

template <int kThreads>
HWY_INLINE hn::Vec<DF> mse_losses(DF d, const float* magnitudes, hn::Vec<DF> scale, hn::Vec<DF> reciprocal) {
  if constexpr (kThreads == 2) return mse_losses_2(d, magnitudes, scale, reciprocal);
  else return mse_losses_4(d, magnitudes, scale, reciprocal);
}

// The winner among candidates [w.first, w.last], chosen as sweep_range chooses it.
template <int kThreads>
int mse_choose(const float* magnitudes, const MseTables& t, Nvfp4MseWindow w) {
  const DF d;
  const DI di;
  const int lanes = static_cast<int>(hn::Lanes(d));
  const auto inf = hn::Set(d, std::numeric_limits<float>::infinity());
  const auto past_last = hn::Set(di, w.last + 1);
  float best = std::numeric_limits<float>::infinity();
  int best_k = 0;  // the kernel's start: a block whose every loss is NaN keeps candidate 0
  for (int k0 = w.first; k0 <= w.last; k0 += lanes) {
    const auto scale = hn::LoadU(d, t.scale + k0), reciprocal = hn::LoadU(d, t.reciprocal + k0);
    const auto loss = mse_losses<kThreads>(d, magnitudes, scale, reciprocal);
    // Only losses below +inf can replace the scan's start (NaN never does), only in the window.
    const auto counts = hn::And(hn::RebindMask(d, hn::Lt(hn::Iota(di, k0), past_last)), hn::Lt(loss, inf));
    const auto masked = hn::IfThenElse(counts, loss, inf);
    const auto smallest = hn::MinOfLanes(d, masked);
    const float s = hn::GetLane(smallest);
    if (s < best) {  // strictly: an equal loss in a later vector is a later candidate
      best = s;
      best_k = k0 + static_cast<int>(hn::FindFirstTrue(d, hn::Eq(masked, smallest)));
    }
  }
  return best_k;
}

template <DType S>
void mse_block_amax(FloatSpan src, float global_amax, const Nvfp4MseCandidates& cand, const MseTables& tables,
                    float* block_amax) {
  const DF d;
  const bool four_threads = mse_sweep_lanes(src.dtype) == 4;
  HWY_ALIGN float magnitudes[16];
  for (size_t b = 0; b < src.size / 16; ++b) {
    const int32_t top = block_magnitudes<S>(d, src.data, 16 * b, magnitudes);
    // mse_sweep: a NaN element means the full sweep, otherwise the window of the block amax.
    Nvfp4MseWindow w;
    if (top <= kInfBits) w = mse_sweep_window(std::bit_cast<float>(top), global_amax);
    int k = 0;  // a window of candidate 0 alone (an all-zero block) ends where the scan starts
    if (w.last > 0)
      k = four_threads ? mse_choose<4>(magnitudes, tables, w) : mse_choose<2>(magnitudes, tables, w);
    block_amax[b] = cand.block_amax(k);
  }
}

// ---- four-over-six -------------------------------------------------------------------------------

// One candidate block scale as nvfp4_scalar_quant applies it.
struct FakeQuant {
  float scale, reciprocal;
  bool zero;
  explicit FakeQuant(float s) : zero(s == 0.0f) {
    scale = four_over_six_safe_scale(s);
    reciprocal = 1.0f / scale;
  }
};

// The squared errors of Lanes(d) elements, as four_over_six_block_loss computes them.
HWY_INLINE hn::Vec<DF> squared_errors(DF d, hn::Vec<DF> x, const FakeQuant& f) {
  auto xq = hn::Zero(d);
  if (!f.zero) {
    const auto magnitude = hn::Mul(E2m1Round(d, hn::Mul(hn::Abs(x), hn::Set(d, f.reciprocal))), hn::Set(d, f.scale));
    xq = hn::IfThenElse(hn::Ge(x, hn::Zero(d)), magnitude, hn::Neg(magnitude));
  }
  const auto diff = hn::Sub(x, xq);
  return hn::Mul(diff, diff);
}

// Sums of adjacent lanes: a's pairs, then b's (torch_sum16's s[i] + s[i + width], one level).
HWY_INLINE hn::Vec<DF> pair_sum(DF d, hn::Vec<DF> a, hn::Vec<DF> b) {
  return hn::Add(hn::ConcatEven(d, b, a), hn::ConcatOdd(d, b, a));
}

// torch_sum16 of the 16 squared errors of a block under both candidates: each level of the tree
// sums adjacent partial sums; once the two candidates' sums share a vector they are summed side by
// side, and the last level leaves the 6-candidate's loss in lane 0, the 4-candidate's in lane 1.
template <DType S>
HWY_INLINE void block_losses(DF d, const void* src, size_t first, const FakeQuant& six, const FakeQuant& four,
                             float* loss6, float* loss4) {
  hn::Vec<DF> v;
  switch (hn::Lanes(d)) {  // a constant but on SVE
    case 4: {
      const auto x0 = LoadAsF32<S>(d, src, first), x1 = LoadAsF32<S>(d, src, first + 4);
      const auto x2 = LoadAsF32<S>(d, src, first + 8), x3 = LoadAsF32<S>(d, src, first + 12);
      const auto v6 = pair_sum(d, pair_sum(d, squared_errors(d, x0, six), squared_errors(d, x1, six)),
                               pair_sum(d, squared_errors(d, x2, six), squared_errors(d, x3, six)));
      const auto v4 = pair_sum(d, pair_sum(d, squared_errors(d, x0, four), squared_errors(d, x1, four)),
                               pair_sum(d, squared_errors(d, x2, four), squared_errors(d, x3, four)));
      v = pair_sum(d, v6, v4);
      v = pair_sum(d, v, v);
      break;
    }
    case 8: {
      const auto x0 = LoadAsF32<S>(d, src, first), x1 = LoadAsF32<S>(d, src, first + 8);
      const auto v6 = pair_sum(d, squared_errors(d, x0, six), squared_errors(d, x1, six));
      const auto v4 = pair_sum(d, squared_errors(d, x0, four), squared_errors(d, x1, four));
      v = pair_sum(d, v6, v4);
      v = pair_sum(d, v, v);
      v = pair_sum(d, v, v);
      break;
    }
    default: {
      const auto x = LoadAsF32<S>(d, src, first);
      v = pair_sum(d, squared_errors(d, x, six), squared_errors(d, x, four));
      v = pair_sum(d, v, v);
      v = pair_sum(d, v, v);
      v = pair_sum(d, v, v);
      break;
    }
  }
  *loss6 = hn::GetLane(v);
  *loss4 = hn::ExtractLane(v, 1);
}

template <DType S>
void four_over_six_block_amax(FloatSpan src, const Nvfp4SearchScaling& sc, const FourOverSixFakeScale& fake_scale,
                              float* block_amax) {
  const DF d;
  for (size_t b = 0; b < src.size / 16; ++b) {
    const int32_t top = block_magnitudes<S>(d, src.data, 16 * b, nullptr);
    if (top > kInfBits) {
      nvfp4_search_block_amax(src.subspan(16 * b, 16), sc, block_amax + b);
      continue;
    }
    const float amax = std::bit_cast<float>(top);
    const FakeQuant six(fake_scale(amax)), four(fake_scale(amax * 1.5f));
    float loss6, loss4;
    block_losses<S>(d, src.data, 16 * b, six, four, &loss6, &loss4);
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

  template <DType S>
  void block_amax(FloatSpan src, float* out) const {
    if (sc.method == Nvfp4ScaleMethod::Mse) return mse_block_amax<S>(src, sc.global_amax, candidates, tables, out);
    four_over_six_block_amax<S>(src, sc, fake_scale, out);
  }
};

template <DType S>
void block_amax_impl(FloatSpan src, const Nvfp4SearchScaling& sc, float* out) {
  Search(sc).block_amax<S>(src, out);
}

template <DType S>
void quantize_impl(FloatSpan src, const Nvfp4SearchScaling& sc, uint8_t* packed, uint8_t* scales) {
  const Search search(sc);
  const float fp8_max = scale_method_fp8_max(sc.method);
  const bool cuda = sc.numerics == Nvfp4Numerics::ModelOptCuda;
  const size_t blocks = src.size / 16;
  float amax[kChunkBlocks];
  for (size_t first = 0; first < blocks; first += kChunkBlocks) {
    const size_t count = blocks - first < kChunkBlocks ? blocks - first : kChunkBlocks;
    search.block_amax<S>(src.subspan(16 * first, 16 * count), amax);
    for (size_t b = 0; b < count; ++b)
      scales[first + b] = modelopt_static_block_scale(amax[b], sc.global_amax, fp8_max, cuda);
  }
  // NVFP4QTensor.quantize with the exported scales, as nvfp4_search_quantize does it.
  nvfp4_kernels(kTargetIsa).quantize_with_scales(src, scales, Nvfp4Scaling{sc.numerics, sc.weight_scale_2, src.dtype},
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

const Nvfp4SearchKernels kKernels = {block_amax, quantize};
const Nvfp4SearchKernels* target_kernels() { return &kKernels; }
#else
const Nvfp4SearchKernels* target_kernels() { return nullptr; }
#endif

}  // namespace fp4kit::nvfp4_search_simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "formats/simd_dispatch.h"

namespace fp4kit::nvfp4_search_simd {
HWY_EXPORT(target_kernels);

const Nvfp4SearchKernels* kernels(Isa isa) {
  const auto entry = simd::table_entry(HWY_DISPATCH_TABLE(target_kernels), isa);
  return entry ? entry() : nullptr;
}
}  // namespace fp4kit::nvfp4_search_simd
#endif
