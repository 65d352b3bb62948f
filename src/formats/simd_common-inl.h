// Vector pieces the fast paths share, one source for every Highway target. Include after
// <hwy/highway.h> in a *_simd.cpp file, inside nothing: Highway re-includes it once per target (the
// toggle guard below), and everything lands in fp4kit::simd::HWY_NAMESPACE.
#if defined(FP4KIT_FORMATS_SIMD_COMMON_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef FP4KIT_FORMATS_SIMD_COMMON_INL_H_
#undef FP4KIT_FORMATS_SIMD_COMMON_INL_H_
#else
#define FP4KIT_FORMATS_SIMD_COMMON_INL_H_
#endif

#include <hwy/highway.h>

#include <cstddef>
#include <cstdint>
#include <climits>

#include "formats/dtype.h"
#include "formats/isa.h"

HWY_BEFORE_NAMESPACE();
namespace fp4kit::simd::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// This target's Isa, for calling another fast path of the same target.
constexpr Isa kTargetIsa = HWY_TARGET == HWY_AVX3  ? Isa::Avx512
                           : HWY_TARGET == HWY_AVX2 ? Isa::Avx2
                           : HWY_TARGET == HWY_SVE2 ? Isa::Sve2
                           : HWY_TARGET == HWY_SVE  ? Isa::Sve
                           : HWY_TARGET == HWY_NEON ? Isa::Neon
                                                    : Isa::Scalar;

// Lanes(d) elements of a BF16, F16 or F32 array from index i, as f32 (exact: BF16 by a shift, F16 by
// the hardware's conversion, which is exact for every F16 value, subnormals and NaN payloads included).
template <DType S, class D>
HWY_INLINE hn::Vec<D> LoadAsF32(D d, const void* base, size_t i) {
  static_assert(sizeof(hn::TFromD<D>) == 4, "f32 lanes");
  if constexpr (S == DType::BF16) {
    const hn::Rebind<uint16_t, D> d16;
    const hn::RebindToUnsigned<D> du;
    const auto u = hn::PromoteTo(du, hn::LoadU(d16, static_cast<const uint16_t*>(base) + i));
    return hn::BitCast(d, hn::ShiftLeft<16>(u));
  } else if constexpr (S == DType::F16) {
    const hn::Rebind<hwy::float16_t, D> dh;
    return hn::PromoteTo(d, hn::LoadU(dh, static_cast<const hwy::float16_t*>(base) + i));
  } else {
    return hn::LoadU(d, static_cast<const float*>(base) + i);
  }
}

// E2M1::kValues[E2M1::magnitude_code(a)] for a >= 0 or NaN (NaN and anything above 6 give 6): a
// is rounded half to even to the grid step of its binade (0.5 below 2, 1 below 4, 2 above) by adding
// and subtracting 2^22 times the binade's power of two (at least 1): one float rounding, whose ties
// go to the even multiple as the grid's do. Negative a gives 0.
template <class D>
HWY_INLINE hn::Vec<D> E2m1Round(D d, hn::Vec<D> a) {
  static_assert(sizeof(hn::TFromD<D>) == 4, "f32 lanes");
  const hn::RebindToSigned<D> di;
  const auto six = hn::Set(d, 6.0f);
#if HWY_ARCH_X86
  // minps returns its second operand when either is NaN: NaN becomes 6.
  const auto c = hn::Max(hn::Min(a, six), hn::Zero(d));
#else
  // (Min's NaN rule differs between targets; "a < 6" is false for NaN.)
  const auto c = hn::Max(hn::IfThenElse(hn::Lt(a, six), a, six), hn::Zero(d));
#endif
  const auto binade = hn::Max(hn::And(hn::BitCast(di, c), hn::Set(di, 0x7F800000)), hn::Set(di, 0x3F800000));
  const auto shift = hn::BitCast(d, hn::Add(binade, hn::Set(di, 22 << 23)));
  return hn::Sub(hn::Add(c, shift), shift);
}

// E2M1::from_float, one code per i32 lane: round half to even on the magnitude, saturating; NaN
// lands on 7; sign bit (8) iff y < 0. The magnitude is rounded to the E2M1 grid with one float
// addition (E2m1Round), whose value then gives the code: (bits >> 22) - 252 from 1.0 up (1 -> 2, 1.5
// -> 3, ... 6 -> 7), bit 24 for 0.5 (code 1), 0 for 0.
template <class D>
HWY_INLINE hn::Vec<hn::RebindToSigned<D>> E2m1Codes(D d, hn::Vec<D> y) {
  const hn::RebindToSigned<D> di;
  const auto r = hn::BitCast(di, E2m1Round(d, hn::Abs(y)));
  const auto from_one = hn::Sub(hn::ShiftRight<22>(r), hn::Set(di, 252));
  const auto half = hn::And(hn::ShiftRight<24>(r), hn::Set(di, 1));
  const auto negative = hn::RebindMask(di, hn::Lt(y, hn::Zero(d)));
  return hn::Or(hn::Max(from_one, half), hn::IfThenElseZero(negative, hn::Set(di, 8)));
}

// Lanes(di) codes (0..15 in i32 lanes; Lanes(di) even) -> Lanes(di)/2 bytes at out, element 2j in
// the low nibble of byte j.
template <class DI>
HWY_INLINE void StorePackedNibbles(DI di, hn::Vec<DI> codes, uint8_t* out) {
  static_assert(sizeof(hn::TFromD<DI>) == 4, "i32 lanes");
  (void)di;                                   // only its type is used
  const hn::Repartition<uint64_t, DI> d64;    // one pair of codes per lane, the even one low
  const hn::Rebind<uint8_t, decltype(d64)> d8;  // one byte per pair
  const auto pairs = hn::BitCast(d64, codes);
  // The odd code (bits 32..35) lands on bits 4..7 next to the even one; the byte is kept.
  hn::StoreU(hn::TruncateTo(d8, hn::Or(pairs, hn::ShiftRight<28>(pairs))), d8, out);
}

// E4M3::from_float's rounding as f32 values, for |v| < 480 and not NaN: 20 mantissa bits dropped
// half to even, the subnormal range (below 2^-6) to multiples of 2^-9, half to even (Round is
// round-half-to-even on every target); the sign is kept, -0 included. 464 <= |v| < 480 gives 480,
// whose code (E4m3CodesOfRounded) is E4M3::from_float's 0x7F.
template <class D>
HWY_INLINE hn::Vec<D> E4m3Round(D d, hn::Vec<D> v) {
  static_assert(sizeof(hn::TFromD<D>) == 4, "f32 lanes");
  const hn::RebindToSigned<D> di;
  const auto u = hn::BitCast(di, v);
  const auto sign = hn::And(u, hn::Set(di, INT32_MIN));
  const auto a = hn::Xor(u, sign);  // |v| bits, at most 0x7FFFFFFF: signed compares and shifts hold
  const auto odd = hn::And(hn::ShiftRight<20>(a), hn::Set(di, 1));
  const auto normal = hn::And(hn::Add(hn::Add(a, hn::Set(di, 0x7FFFF)), odd), hn::Set(di, -(1 << 20)));
  const auto subnormal = hn::Mul(hn::Round(hn::Mul(hn::BitCast(d, a), hn::Set(d, 512.0f))), hn::Set(d, 0x1p-9f));
  const auto is_subnormal = hn::RebindMask(d, hn::Lt(a, hn::Set(di, 0x3C800000)));
  const auto magnitude = hn::IfThenElse(is_subnormal, subnormal, hn::BitCast(d, normal));
  return hn::BitCast(d, hn::Or(hn::BitCast(di, magnitude), sign));
}

// The E4M3 codes (sign in bit 7, in i32 lanes) of values on the E4M3 grid, such as E4m3Round's.
template <class D>
HWY_INLINE hn::Vec<hn::RebindToSigned<D>> E4m3CodesOfRounded(D d, hn::Vec<D> r) {
  const hn::RebindToSigned<D> di;
  const hn::RebindToUnsigned<D> du;
  const auto u = hn::BitCast(di, r);
  const auto sign = hn::And(u, hn::Set(di, INT32_MIN));
  const auto a = hn::Xor(u, sign);
  const auto normal = hn::Sub(hn::ShiftRight<20>(a), hn::Set(di, 120 << 3));   // rebias 127 -> 7
  const auto subnormal = hn::ConvertTo(di, hn::Mul(hn::BitCast(d, a), hn::Set(d, 512.0f)));  // exact
  const auto code = hn::IfThenElse(hn::Lt(a, hn::Set(di, 0x3C800000)), subnormal, normal);
  return hn::Or(code, hn::BitCast(di, hn::ShiftRight<24>(hn::BitCast(du, sign))));
}

// An f32 result rounded to the precision of `source` (round_to_bf16, F16::from_float(f).to_float()),
// for v not NaN: BF16 by the same integer rounding, F16 by the hardware conversion (round to nearest
// even, subnormals and overflow to Inf included); F32 unchanged.
template <class D>
HWY_INLINE hn::Vec<D> RoundToDType(D d, hn::Vec<D> v, DType source) {
  static_assert(sizeof(hn::TFromD<D>) == 4, "f32 lanes");
  if (source == DType::BF16) {
    const hn::RebindToSigned<D> di;
    const auto u = hn::BitCast(di, v);
    const auto odd = hn::And(hn::BitCast(di, hn::ShiftRight<16>(hn::BitCast(hn::RebindToUnsigned<D>(), u))),
                             hn::Set(di, 1));
    const auto rounded = hn::Add(u, hn::Add(hn::Set(di, 0x7FFF), odd));
    return hn::BitCast(d, hn::And(rounded, hn::Set(di, -(1 << 16))));
  }
  if (source == DType::F16) {
    const hn::Rebind<hwy::float16_t, D> dh;
    return hn::PromoteTo(d, hn::DemoteTo(dh, v));
  }
  return v;
}

}  // namespace fp4kit::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // include guard
