// Vector form of TensorError::add_ref, one source for every ISA (Highway): the same double
// operations per lane in the same order (no FMA contraction), 16 values a step, one value per lane,
// so the sums are those of the scalar definition bit for bit on every ISA. A step holding a NaN or
// an Inf on either side is handed to the scalar definition, which keeps the lane of every value.
// The 16 lanes are held in arrays of vectors, which SVE's sizeless vectors cannot: SVE CPUs run the
// NEON code.
#define FP4KIT_SIMD_NO_SVE
#include "formats/simd_targets.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "verify/tensor_error_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <limits>

#include "verify/tensor_error.h"

HWY_BEFORE_NAMESPACE();
namespace fp4kit::verify::tensor_error_simd::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
#if FP4KIT_SIMD_KERNELS

constexpr size_t kStep = TensorError::kLanes;
using DD = hn::CappedTag<double, 4>;  // 4 lanes (AVX2, AVX-512) or 2 (NEON)
using VD = hn::Vec<DD>;
constexpr size_t kLanesD = hn::MaxLanes(DD());
constexpr size_t kParts = kStep / kLanesD;
static_assert(kParts * kLanesD == kStep, "the 16 lanes in whole vectors");

void add(TensorError& e, const float* x, const float* ref, size_t n) {
  const DD dd;
  const hn::Rebind<float, DD> df;  // as many floats as double lanes
  // Scalar head up to the next value that falls in lane 0.
  const size_t head = std::min(n, (kStep - e.values % kStep) % kStep);
  e.add_ref(x, ref, head);
  size_t i = head;
  if (n - i < kStep) return e.add_ref(x + i, ref + i, n - i);
  const uint64_t base = e.values;  // a multiple of kStep: value i + j of this call falls in lane j

  const auto inf = hn::Set(df, std::numeric_limits<float>::infinity());
  VD sig[kParts], noi[kParts];
  const auto load = [&] {
    for (size_t k = 0; k < kParts; ++k) {
      sig[k] = hn::LoadU(dd, e.signal_lanes.data() + kLanesD * k);
      noi[k] = hn::LoadU(dd, e.noise_lanes.data() + kLanesD * k);
    }
  };
  const auto store = [&] {
    for (size_t k = 0; k < kParts; ++k) {
      hn::StoreU(sig[k], dd, e.signal_lanes.data() + kLanesD * k);
      hn::StoreU(noi[k], dd, e.noise_lanes.data() + kLanesD * k);
    }
  };
  load();
  VD max_abs = hn::Set(dd, e.max_abs);
  uint64_t exact = 0;
  for (; i + kStep <= n; i += kStep) {
    // |v| >= Inf (or unordered: NaN) on either side: the scalar path counts and skips those pairs.
    auto bad = hn::FirstN(df, 0);
    for (size_t k = 0; k < kParts; ++k) {
      bad = hn::Or(bad, hn::Not(hn::Lt(hn::Abs(hn::LoadU(df, x + i + kLanesD * k)), inf)));
      bad = hn::Or(bad, hn::Not(hn::Lt(hn::Abs(hn::LoadU(df, ref + i + kLanesD * k)), inf)));
    }
    if (!hn::AllFalse(df, bad)) {
      store();
      e.values = base + (i - head);  // add_ref takes each value's lane from e.values
      e.add_ref(x + i, ref + i, kStep);
      load();
      continue;
    }
    for (size_t k = 0; k < kParts; ++k) {
      const auto xf = hn::LoadU(df, x + i + kLanesD * k), rf = hn::LoadU(df, ref + i + kLanesD * k);
      exact += hn::CountTrue(df, hn::Eq(xf, rf));
      const VD xd = hn::PromoteTo(dd, xf), rd = hn::PromoteTo(dd, rf);
      const VD d = hn::Sub(xd, rd);
      sig[k] = hn::Add(sig[k], hn::Mul(rd, rd));
      noi[k] = hn::Add(noi[k], hn::Mul(d, d));
      max_abs = hn::Max(max_abs, hn::Abs(d));
    }
  }
  store();
  HWY_ALIGN double m[kLanesD];
  hn::Store(max_abs, dd, m);
  for (double v : m) e.max_abs = std::max(e.max_abs, v);
  e.exact += exact;
  e.values = base + (i - head);
  e.add_ref(x + i, ref + i, n - i);
}

TensorErrorAdd kernel() { return &add; }
#else
TensorErrorAdd kernel() { return nullptr; }
#endif

}  // namespace fp4kit::verify::tensor_error_simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "formats/simd_dispatch.h"

namespace fp4kit::verify {
namespace tensor_error_simd {
HWY_EXPORT(kernel);
}  // namespace tensor_error_simd

TensorErrorAdd tensor_error_add_kernel(Isa isa) {
  const auto entry = simd::table_entry(HWY_DISPATCH_TABLE(tensor_error_simd::kernel), isa);
  return entry ? entry() : nullptr;
}
}  // namespace fp4kit::verify
#endif
