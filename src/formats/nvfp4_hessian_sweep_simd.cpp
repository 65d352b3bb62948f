// Vector fast path of the activation-weighted NVFP4 block scales (`--scales hessian`), one source for
// every ISA (Highway). Bit-identical to nvfp4_hessian_quantize_ref: every loss is computed with the
// same operations in the same order, only which values share a vector differs. A vector holds
// consecutive candidates, so each candidate's loss is built in its own lane:
//  - the errors d_i = |x_i| - q·scale as one fused multiply-add, e_i = d_i with the sign of x_i;
//  - the diagonal terms in f32 in the mse kernel's order (per thread h_ii·d_i, then d_i·(h_ii·d_i)
//    fused into the addition, in order; the threads' sums widest offset first);
//  - the off-diagonal terms ((2·h_ij)·e_i)·e_j in F64, multiplied and added apart (no fusion, as the
//    reference is compiled), in the reference's (i, j) order. Which h_ij are 0 is a property of the
//    block, so every lane skips the same terms.
// The choice is the reference's strict-less scan in candidate order. Blocks whose H is not usable
// and blocks holding NaN or Inf are left to the reference's own sweep. The elements are quantized
// by the NVFP4 fast path of the same ISA (itself bit-identical to its reference).
#include "formats/simd_targets.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "formats/nvfp4_hessian_sweep_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "formats/nvfp4.h"
#include "formats/nvfp4_hessian_sweep.h"
#include "formats/nvfp4_mse_sweep.h"
#include "formats/nvfp4_scale_search.h"
#include "formats/simd_common-inl.h"

// The errors reproduce the GPU's fused multiply-adds: MulAdd and NegMulAdd must be fused.
#if defined(HWY_DISABLE_BMI2_FMA)
#error "nvfp4_hessian_sweep_simd.cpp needs FMA"
#endif

HWY_BEFORE_NAMESPACE();
namespace fp4kit::nvfp4_hessian_simd::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
#if FP4KIT_SIMD_KERNELS

using simd::HWY_NAMESPACE::E2m1Round;
using simd::HWY_NAMESPACE::kTargetIsa;
using simd::HWY_NAMESPACE::LoadAsF32;

using DF = hn::CappedTag<float, 16>;  // up to 16 candidates per vector
using DD = hn::CappedTag<double, 8>;  // the same candidates' F64 sums, up to 8 per vector

constexpr int kBlock = 16;
constexpr int kCandidates = Nvfp4MseCandidates::kCount;
// A multiple of every vector's lanes and of the 4 F64 vectors summed side by side.
constexpr int kPadded = 128;
constexpr int kMaxTerms = kBlock * (kBlock - 1) / 2;

// The candidates' scales and reciprocals, padded to whole vectors (the padding is never chosen:
// the scan stops at the last candidate).
struct Tables {
  HWY_ALIGN float scale[kPadded];
  HWY_ALIGN float reciprocal[kPadded];

  explicit Tables(const Nvfp4MseCandidates& cand) {
    for (int k = 0; k < kPadded; ++k) {
      scale[k] = k < kCandidates ? cand.scale(k) : 1.0f;
      reciprocal[k] = k < kCandidates ? cand.reciprocal(k) : 1.0f;
    }
  }
};

// One block of finite weights and its usable H, as the sweep reads them.
struct Block {
  float magnitude[kBlock];
  bool negative[kBlock];
  float h_diagonal[kBlock];
  // The off-diagonal terms the reference adds (h_ij != 0, i < j), in its order; 2·h_ij is exact.
  int terms = 0;
  double twice_h[kMaxTerms];
  uint8_t row_i[kMaxTerms], row_j[kMaxTerms];

  Block(const float* x, const HessianBlockWeight& w) {
    int n = 0;  // (a local: the byte stores below could alias a member)
    for (int i = 0; i < kBlock; ++i) {
      magnitude[i] = std::fabs(x[i]);
      negative[i] = std::signbit(x[i]);
      h_diagonal[i] = w.h[static_cast<size_t>(i * kBlock + i)];
      for (int j = i + 1; j < kBlock; ++j) {
        const float h = w.h[static_cast<size_t>(i * kBlock + j)];
        if (h == 0.0f) continue;
        twice_h[n] = 2.0 * static_cast<double>(h);
        row_i[n] = static_cast<uint8_t>(i);
        row_j[n] = static_cast<uint8_t>(j);
        ++n;
      }
    }
    terms = n;
  }
};

// Per-candidate partial results of one block, each row indexed by candidate.
struct Scratch {
  HWY_ALIGN float error[kBlock][kPadded];  // e_i
  HWY_ALIGN double error64[kBlock][kPadded];
  HWY_ALIGN float diagonal[kPadded];
  HWY_ALIGN double cross[kPadded];
};

// d_i of consecutive candidates (triton_sub_mul); stores e_i = sign(x_i)·d_i.
HWY_INLINE hn::Vec<DF> difference(DF d, const Block& b, int i, hn::Vec<DF> scale, hn::Vec<DF> reciprocal, float* error) {
  const auto a = hn::Set(d, b.magnitude[i]);
  const auto diff = hn::NegMulAdd(E2m1Round(d, hn::Mul(a, reciprocal)), scale, a);
  auto e = diff;
  if (b.negative[i]) e = hn::Neg(diff);
  hn::Store(e, d, error + i * kPadded);
  return diff;
}

// A thread's first diagonal term d·(h_ii·d), and each next one fused into its sum.
HWY_INLINE hn::Vec<DF> first_term(DF d, const Block& b, int i, hn::Vec<DF> diff) {
  return hn::Mul(diff, hn::Mul(hn::Set(d, b.h_diagonal[i]), diff));
}
HWY_INLINE hn::Vec<DF> next_term(DF d, const Block& b, int i, hn::Vec<DF> diff, hn::Vec<DF> acc) {
  return hn::MulAdd(diff, hn::Mul(hn::Set(d, b.h_diagonal[i]), diff), acc);
}

// The diagonal sums with 2 threads of 8 elements (16-bit weights): thread 0 + thread 1.
HWY_INLINE hn::Vec<DF> diagonal_2(DF d, const Block& b, hn::Vec<DF> scale, hn::Vec<DF> reciprocal, float* error) {
  auto acc0 = first_term(d, b, 0, difference(d, b, 0, scale, reciprocal, error));
  auto acc1 = first_term(d, b, 8, difference(d, b, 8, scale, reciprocal, error));
  for (int j = 1; j < 8; ++j) {
    acc0 = next_term(d, b, j, difference(d, b, j, scale, reciprocal, error), acc0);
    acc1 = next_term(d, b, 8 + j, difference(d, b, 8 + j, scale, reciprocal, error), acc1);
  }
  return hn::Add(acc0, acc1);
}

// The same with 4 threads of 4 elements (F32 weights): threads 2 apart, then 1.
HWY_INLINE hn::Vec<DF> diagonal_4(DF d, const Block& b, hn::Vec<DF> scale, hn::Vec<DF> reciprocal, float* error) {
  auto acc0 = first_term(d, b, 0, difference(d, b, 0, scale, reciprocal, error));
  auto acc1 = first_term(d, b, 4, difference(d, b, 4, scale, reciprocal, error));
  auto acc2 = first_term(d, b, 8, difference(d, b, 8, scale, reciprocal, error));
  auto acc3 = first_term(d, b, 12, difference(d, b, 12, scale, reciprocal, error));
  for (int j = 1; j < 4; ++j) {
    acc0 = next_term(d, b, j, difference(d, b, j, scale, reciprocal, error), acc0);
    acc1 = next_term(d, b, 4 + j, difference(d, b, 4 + j, scale, reciprocal, error), acc1);
    acc2 = next_term(d, b, 8 + j, difference(d, b, 8 + j, scale, reciprocal, error), acc2);
    acc3 = next_term(d, b, 12 + j, difference(d, b, 12 + j, scale, reciprocal, error), acc3);
  }
  return hn::Add(hn::Add(acc0, acc2), hn::Add(acc1, acc3));
}

// The off-diagonal F64 sum of every candidate: 4 vectors of candidates side by side, so that the
// additions of one candidate stay in order while the vectors' chains overlap.
void cross_sums(const Block& b, Scratch& s) {
  const DD dd;
  const hn::Rebind<float, DD> dh;
  const size_t n = hn::Lanes(dd);
  for (int i = 0; i < kBlock; ++i)
    for (size_t k = 0; k < kPadded; k += n)
      hn::Store(hn::PromoteTo(dd, hn::Load(dh, s.error[i] + k)), dd, s.error64[i] + k);
  for (size_t k = 0; k < kPadded; k += 4 * n) {
    auto c0 = hn::Zero(dd), c1 = hn::Zero(dd), c2 = hn::Zero(dd), c3 = hn::Zero(dd);
    for (int t = 0; t < b.terms; ++t) {
      const auto h = hn::Set(dd, b.twice_h[t]);
      const double* ei = s.error64[b.row_i[t]] + k;
      const double* ej = s.error64[b.row_j[t]] + k;
      c0 = hn::Add(c0, hn::Mul(hn::Mul(h, hn::Load(dd, ei)), hn::Load(dd, ej)));
      c1 = hn::Add(c1, hn::Mul(hn::Mul(h, hn::Load(dd, ei + n)), hn::Load(dd, ej + n)));
      c2 = hn::Add(c2, hn::Mul(hn::Mul(h, hn::Load(dd, ei + 2 * n)), hn::Load(dd, ej + 2 * n)));
      c3 = hn::Add(c3, hn::Mul(hn::Mul(h, hn::Load(dd, ei + 3 * n)), hn::Load(dd, ej + 3 * n)));
    }
    hn::Store(c0, dd, s.cross + k);
    hn::Store(c1, dd, s.cross + k + n);
    hn::Store(c2, dd, s.cross + k + 2 * n);
    hn::Store(c3, dd, s.cross + k + 3 * n);
  }
}

// Both sums of every candidate of a block of finite weights with a usable H (s.cross only where
// b.terms > 0), with `threads` 2 or 4.
void block_sums(const Block& b, const Tables& t, int threads, Scratch& s) {
  const DF d;
  const size_t lanes = hn::Lanes(d);
  for (size_t k = 0; k < kPadded; k += lanes) {
    const auto scale = hn::Load(d, t.scale + k), reciprocal = hn::Load(d, t.reciprocal + k);
    const auto diagonal = threads == 2 ? diagonal_2(d, b, scale, reciprocal, s.error[0] + k)
                                       : diagonal_4(d, b, scale, reciprocal, s.error[0] + k);
    hn::Store(diagonal, d, s.diagonal + k);
  }
  if (b.terms > 0) cross_sums(b, s);
}

// hessian_sweep of a block of finite weights with a usable H.
int sweep(const Block& b, const Tables& t, int threads, Scratch& s) {
  block_sums(b, t, threads, s);
  const bool any = b.terms > 0;
  float best = std::numeric_limits<float>::infinity();
  int best_k = 0;  // a block whose every loss is NaN keeps candidate 0
  for (int k = 0; k < kCandidates; ++k) {
    const float loss = HessianLossTerms{s.diagonal[k], any ? s.cross[k] : 0.0, any}.loss();
    if (loss < best) {  // strictly: equal losses keep the smaller scale
      best = loss;
      best_k = k;
    }
  }
  return best_k;
}

void block_terms(const float* x, const Nvfp4MseCandidates& candidates, const HessianBlockWeight& w, int lanes,
                 HessianLossTerms* terms) {
  const Tables tables(candidates);
  const Block block(x, w);
  Scratch scratch;
  block_sums(block, tables, lanes, scratch);
  const bool any = block.terms > 0;
  for (int k = 0; k < kCandidates; ++k) terms[k] = HessianLossTerms{scratch.diagonal[k], any ? scratch.cross[k] : 0.0, any};
}

HWY_INLINE bool all_finite(const float* x) {
  for (int i = 0; i < kBlock; ++i)
    if (!std::isfinite(x[i])) return false;
  return true;
}

template <DType S>
void quantize_impl(FloatSpan src, size_t first_block, const std::vector<HessianBlockWeight>& weights,
                   const HessianLayout& layout, const Nvfp4SearchScaling& sc, uint8_t* packed, uint8_t* scales,
                   Nvfp4HessianStats* stats) {
  const DF d;
  const Nvfp4MseCandidates candidates(sc.global_amax);
  const Tables tables(candidates);
  const int lanes = mse_sweep_lanes(src.dtype);
  const bool cuda = sc.numerics == Nvfp4Numerics::ModelOptCuda;
  const float fp8_max = scale_method_fp8_max(Nvfp4ScaleMethod::Mse);
  Nvfp4HessianStats local;
  Scratch scratch;
  HWY_ALIGN float x[kBlock];
  for (size_t b = 0; b < src.size / kBlock; ++b) {
    for (size_t j = 0; j < kBlock; j += hn::Lanes(d)) hn::Store(LoadAsF32<S>(d, src.data, b * kBlock + j), d, x + j);
    const HessianBlockWeight& w = weights.at(layout.index(first_block + b));
    int k;
    if (!w.usable || !all_finite(x)) {
      k = hessian_sweep(x, candidates, w, lanes);
    } else {
      const Block block(x, w);
      k = sweep(block, tables, lanes, scratch);
    }
    ++local.blocks;
    local.fallback_blocks += !w.usable;
    scales[b] = modelopt_static_block_scale(candidates.block_amax(k), sc.global_amax, fp8_max, cuda);
  }
  // The elements as every ModelOpt export quantizes them with the exported scales.
  nvfp4_kernels(kTargetIsa).quantize_with_scales(src, scales, Nvfp4Scaling{sc.numerics, sc.weight_scale_2, src.dtype},
                                                 packed);
  if (stats) {
    stats->blocks += local.blocks;
    stats->fallback_blocks += local.fallback_blocks;
  }
}

void quantize(FloatSpan src, size_t first_block, const std::vector<HessianBlockWeight>& weights,
              const HessianLayout& layout, const Nvfp4SearchScaling& sc, uint8_t* packed, uint8_t* scales,
              Nvfp4HessianStats* stats) {
  switch (src.dtype) {
    case DType::BF16: return quantize_impl<DType::BF16>(src, first_block, weights, layout, sc, packed, scales, stats);
    case DType::F16: return quantize_impl<DType::F16>(src, first_block, weights, layout, sc, packed, scales, stats);
    default: return quantize_impl<DType::F32>(src, first_block, weights, layout, sc, packed, scales, stats);
  }
}

const Nvfp4HessianKernels kKernels = {quantize, block_terms};
const Nvfp4HessianKernels* target_kernels() { return &kKernels; }
#else
const Nvfp4HessianKernels* target_kernels() { return nullptr; }
#endif

}  // namespace fp4kit::nvfp4_hessian_simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "formats/simd_dispatch.h"

namespace fp4kit::nvfp4_hessian_simd {
HWY_EXPORT(target_kernels);

const Nvfp4HessianKernels* kernels(Isa isa) {
  const auto entry = simd::table_entry(HWY_DISPATCH_TABLE(target_kernels), isa);
  return entry ? entry() : nullptr;
}
}  // namespace fp4kit::nvfp4_hessian_simd
#endif
