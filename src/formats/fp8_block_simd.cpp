// Vector fast path of the FP8 block kernels, one source for every ISA (Highway). Bytes identical to
// fp8_block_ref for every input:
//  - dequantize: an E4M3 byte b becomes the F16 bits of b with the exponent field shifted by one
//    place (sign<<15 | (b&0x7F)<<7), i.e. the F16 value 2^-8 * e4m3(b) for every code but NaN; the
//    exact F16 -> f32 conversion and an exact *256 give f32(e4m3) (subnormals included), then the
//    same f32 multiply by the block scale as the reference. Runs that hold an E4M3 NaN code
//    (0x7F/0xFF) and the ragged ends of rows (less than a vector) go through the reference itself,
//    on a one-row view, so even NaN*NaN payload choices are the reference's own.
//  - quantize: the block amax is the largest |x| bit pattern (an integer max: any order gives it),
//    except in blocks that hold a NaN, which take the reference's block_amax (NaN ignored); the
//    scale comes from the reference's store_block_scale; elements are divided by an F32 scale, or
//    multiplied by the exact reciprocal of an E8M0 scale (the same correctly rounded value as the
//    division), then clamped and rounded to E4M3 as E4M3::from_float_saturate does.
#include "formats/simd_targets.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "formats/fp8_block_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <cstddef>
#include <cstdint>

#include "formats/dtype.h"
#include "formats/e4m3.h"
#include "formats/float_bits.h"
#include "formats/float_span.h"
#include "formats/fp8_block.h"
#include "formats/simd_common-inl.h"

HWY_BEFORE_NAMESPACE();
namespace fp4kit::fp8_block_simd::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
#if FP4KIT_SIMD_KERNELS
using simd::HWY_NAMESPACE::LoadAsF32;

constexpr size_t kBlock = kFp8BlockSize;

inline size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

// ---- dequantize -------------------------------------------------------------------------------

// Row r, columns [c0, c1) (inside one block column) through the reference, on a one-row view
// whose only block is the one these columns lie in. `out` points at the output of (r, c0).
template <typename T>
void reference_run(const uint8_t* weight, const void* scales, const Fp8BlockShape& shape, size_t r, size_t c0,
                   size_t c1, T* out) {
  const size_t idx = (r / kBlock) * shape.scale_cols() + c0 / kBlock;
  const size_t width = shape.scale_kind == Fp8ScaleKind::E8M0 ? 1 : 4;
  const void* scale = static_cast<const uint8_t*>(scales) + width * idx;
  const Fp8BlockShape one{1, c1 - c0, shape.scale_kind};
  if constexpr (sizeof(T) == 4)
    fp8_block_ref::dequantize_f32(weight + r * shape.cols + c0, scale, one, 0, 1, out);
  else
    fp8_block_ref::dequantize_bf16(weight + r * shape.cols + c0, scale, one, 0, 1, out);
}

// Whether any of the Lanes(d) bytes at p is an E4M3 NaN code (0x7F or 0xFF).
template <class D8>
HWY_INLINE bool HasNanCode(D8 d8, const uint8_t* p) {
  const auto m = hn::Set(d8, uint8_t{0x7F});
  return !hn::AllFalse(d8, hn::Eq(hn::And(hn::LoadU(d8, p), m), m));
}

// 2*Lanes(df) non-NaN E4M3 bytes at p -> the F16 values 2^-8 * e4m3 (exact), as f32 in *lo, *hi.
template <class DF>
HWY_INLINE void E4m3ToScaledF32(DF df, const uint8_t* p, hn::Vec<DF>* lo, hn::Vec<DF>* hi) {
  const hn::Repartition<uint16_t, DF> d16;  // 2*Lanes(df) lanes
  const hn::Rebind<uint8_t, decltype(d16)> d8;
  const hn::Half<decltype(d16)> d16h;  // halves split as u16 (not every target splits F16 vectors)
  const hn::Rebind<hwy::float16_t, decltype(d16h)> dh;
  const auto t = hn::ShiftLeft<7>(hn::PromoteTo(d16, hn::LoadU(d8, p)));   // sign lands on bit 14
  const auto h = hn::Add(t, hn::And(t, hn::Set(d16, uint16_t{0x4000})));  // move it to bit 15
  *lo = hn::PromoteTo(df, hn::BitCast(dh, hn::LowerHalf(d16h, h)));
  *hi = hn::PromoteTo(df, hn::BitCast(dh, hn::UpperHalf(d16h, h)));
}

// BF16::from_float of two vectors (round to nearest even, every NaN to 0x7FC0), stored in order: the
// result is the top half of each rounded lane.
template <class DF>
HWY_INLINE void StoreBf16(DF df, hn::Vec<DF> a, hn::Vec<DF> b, uint16_t* out) {
  const hn::RebindToUnsigned<DF> du;
  const hn::Repartition<uint16_t, DF> d16;
  const auto round = [&](hn::Vec<DF> x) {
    const auto u = hn::BitCast(du, x);
    const auto odd = hn::And(hn::ShiftRight<16>(u), hn::Set(du, 1u));
    const auto r = hn::Add(hn::Add(u, hn::Set(du, 0x7FFFu)), odd);
    return hn::BitCast(d16, hn::IfThenElse(hn::RebindMask(du, hn::IsNaN(x)), hn::Set(du, 0x7FC00000u), r));
  };
  hn::StoreU(hn::ConcatOdd(d16, round(b), round(a)), d16, out);
  (void)df;
}

template <class DF>
HWY_INLINE void StoreOut(DF df, hn::Vec<DF> a, hn::Vec<DF> b, float* out) {
  hn::StoreU(a, df, out);
  hn::StoreU(b, df, out + hn::Lanes(df));
}
template <class DF>
HWY_INLINE void StoreOut(DF df, hn::Vec<DF> a, hn::Vec<DF> b, uint16_t* out) {
  StoreBf16(df, a, b, out);
}

template <typename T>
void dequantize_impl(const uint8_t* weight, const void* scales, const Fp8BlockShape& shape, size_t row_begin,
                     size_t row_end, T* out) {
  const hn::ScalableTag<float> df;
  const hn::Repartition<uint8_t, decltype(df)> d8;  // four f32 vectors' worth of bytes
  const hn::Repartition<uint16_t, decltype(df)> d16;
  const hn::Rebind<uint8_t, decltype(d16)> d8h;      // two f32 vectors' worth
  const size_t pair = hn::Lanes(d16);
  const size_t run = hn::Lanes(d8);
  const size_t cols = shape.cols;
  const size_t scale_cols = shape.scale_cols();
  for (size_t r = row_begin; r < row_end; ++r) {
    const uint8_t* w = weight + r * cols;
    T* o = out + (r - row_begin) * cols;
    for (size_t bc = 0; bc < scale_cols; ++bc) {
      const size_t c0 = bc * kBlock, c1 = min_size(cols, c0 + kBlock);
      const float scale = fp8_block_ref::load_block_scale(scales, shape, r / kBlock, bc);
      // (2^-8 e4m3) * (2^8 s) is the exact e4m3 * s rounded once, as the reference's product, while
      // 2^8 s is exact (and NaN stays the same NaN); otherwise the 2^8 goes first, also exact.
      const bool fold = !(scale >= 0x1p119f || scale <= -0x1p119f);
      const auto s = hn::Set(df, fold ? scale * 256.0f : scale);
      const auto k256 = hn::Set(df, fold ? 1.0f : 256.0f);
      size_t c = c0;
      for (; c + run <= c1; c += run) {
        if (HasNanCode(d8, w + c)) {
          reference_run(weight, scales, shape, r, c, c + run, o + c);
          continue;
        }
        for (size_t q = 0; q < run; q += pair) {
          hn::Vec<decltype(df)> lo, hi;
          E4m3ToScaledF32(df, w + c + q, &lo, &hi);
          if (!fold) {
            lo = hn::Mul(lo, k256);
            hi = hn::Mul(hi, k256);
          }
          StoreOut(df, hn::Mul(lo, s), hn::Mul(hi, s), o + c + q);
        }
      }
      for (; c + pair <= c1; c += pair) {
        if (HasNanCode(d8h, w + c)) {
          reference_run(weight, scales, shape, r, c, c + pair, o + c);
          continue;
        }
        hn::Vec<decltype(df)> lo, hi;
        E4m3ToScaledF32(df, w + c, &lo, &hi);
        StoreOut(df, hn::Mul(hn::Mul(lo, k256), s), hn::Mul(hn::Mul(hi, k256), s), o + c);
      }
      if (c < c1) reference_run(weight, scales, shape, r, c, c1, o + c);
    }
  }
}

void dequantize_f32(const uint8_t* weight, const void* scales, const Fp8BlockShape& shape, size_t row_begin,
                    size_t row_end, float* out) {
  dequantize_impl(weight, scales, shape, row_begin, row_end, out);
}

void dequantize_bf16(const uint8_t* weight, const void* scales, const Fp8BlockShape& shape, size_t row_begin,
                     size_t row_end, uint16_t* out) {
  dequantize_impl(weight, scales, shape, row_begin, row_end, out);
}

// ---- quantize ---------------------------------------------------------------------------------

// E4M3::from_float_saturate, one code per u32 lane. The clamp to +-448 is applied to the code
// instead: every magnitude above 448 (Inf included) rounds to at least 448's code 0x7E, which the
// reference gives it; NaN, the only magnitude above Inf, gets 0x7F.
template <class DF>
HWY_INLINE hn::Vec<hn::RebindToUnsigned<DF>> E4m3Codes(DF df, hn::Vec<DF> y) {
  const hn::RebindToUnsigned<DF> du;
  const hn::RebindToSigned<DF> di;
  const auto u = hn::BitCast(du, y);
  const auto sign = hn::And(u, hn::Set(du, 0x80000000u));
  const auto a = hn::Xor(u, sign);
  // normal range: drop 20 mantissa bits with round-half-to-even, rebias 127 -> 7
  const auto odd = hn::And(hn::ShiftRight<20>(a), hn::Set(du, 1u));
  const auto rounded = hn::Add(hn::Add(a, hn::Set(du, 0x7FFFFu)), odd);
  const auto normal_code = hn::Sub(hn::ShiftRight<20>(rounded), hn::Set(du, 120u << 3));
  // below 2^-6: nearbyint(a * 512). a + 2^14 rounds a to a multiple of 2^-9 (the ulp there) in
  // the current rounding mode, as nearbyint rounds the exact a*512, and its low bits are the count.
  const auto sub_code =
      hn::Sub(hn::BitCast(du, hn::Add(hn::BitCast(df, a), hn::Set(df, 0x1p14f))), hn::Set(du, 0x46800000u));
  const auto ai = hn::BitCast(di, a);
  const auto is_sub = hn::RebindMask(du, hn::Lt(ai, hn::Set(di, 0x3C800000)));
  const auto is_nan = hn::Gt(ai, hn::Set(di, 0x7F800000));
  auto code = hn::Min(hn::IfThenElse(is_sub, sub_code, normal_code), hn::Set(du, 0x7Eu));
  code = hn::Sub(code, hn::BitCast(du, hn::VecFromMask(di, is_nan)));  // 0x7E + 1
  return hn::Or(code, hn::ShiftRight<24>(sign));
}

// Four vectors of codes (u32 lanes below 256) -> their 4*Lanes(du) low bytes in order. Each 128-bit
// block of a | b<<8 | c<<16 | d<<24 is transposed (4x4 bytes), then the blocks' a, b, c and d
// quarters gathered (`gather`, u32 indices; not needed with one block).
template <class DU>
HWY_INLINE void StoreCodes4(DU du, hn::Vec<DU> a, hn::Vec<DU> b, hn::Vec<DU> c, hn::Vec<DU> d,
                            const int32_t* gather, uint8_t* out) {
  const hn::Repartition<uint8_t, DU> d8;
  static constexpr uint8_t kTranspose[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};
  const auto v = hn::Or(hn::Or(a, hn::ShiftLeft<8>(b)), hn::Or(hn::ShiftLeft<16>(c), hn::ShiftLeft<24>(d)));
  auto bytes = hn::BitCast(du, hn::TableLookupBytes(hn::BitCast(d8, v), hn::LoadDup128(d8, kTranspose)));
  if (hn::Lanes(du) > 4) bytes = hn::TableLookupLanes(bytes, hn::SetTableIndices(du, gather));
  hn::StoreU(hn::BitCast(d8, bytes), d8, out);
}

// Rows [r0, r1), columns [c0, c1) of one block: x * f (kReciprocal) or x / f, then E4M3; the
// ragged end of each row as the reference does it, with its scale s.
template <DType S, bool kReciprocal>
void quantize_rows(FloatSpan src, const Fp8BlockShape& shape, size_t r0, size_t r1, size_t c0, size_t c1,
                   float factor, float s, const int32_t* gather, uint8_t* weight) {
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint8_t, decltype(df)> d8;
  const size_t lanes = hn::Lanes(df);
  const auto f = hn::Set(df, factor);
  for (size_t r = r0; r < r1; ++r) {
    const size_t row = r * shape.cols;
    const auto codes = [&](size_t i) {
      const auto x = LoadAsF32<S>(df, src.data, row + i);
      return E4m3Codes(df, kReciprocal ? hn::Mul(x, f) : hn::Div(x, f));
    };
    size_t c = c0;
    for (; c + 4 * lanes <= c1; c += 4 * lanes)
      StoreCodes4(du, codes(c), codes(c + lanes), codes(c + 2 * lanes), codes(c + 3 * lanes), gather, weight + row + c);
    for (; c + lanes <= c1; c += lanes) hn::StoreU(hn::DemoteTo(d8, hn::BitCast(di, codes(c))), d8, weight + row + c);
    for (; c < c1; ++c) weight[row + c] = E4M3::from_float_saturate(src.at(row + c) / s).bits;
  }
}

template <DType S>
void quantize_impl(FloatSpan src, const Fp8BlockShape& shape, uint8_t* weight, void* scales) {
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du;
  const size_t lanes = hn::Lanes(df);
  const size_t cols = shape.cols;
  // StoreCodes4's gather: u32 lane m takes lane (m % blocks) * 4 + m / blocks.
  HWY_ALIGN int32_t gather[hn::MaxLanes(du)];
  const size_t blocks = lanes / 4;
  for (size_t m = 0; m < lanes; ++m) gather[m] = static_cast<int32_t>((m % blocks) * 4 + m / blocks);
  for (size_t br = 0; br < shape.scale_rows(); ++br) {
    for (size_t bc = 0; bc < shape.scale_cols(); ++bc) {
      const size_t r0 = br * kBlock, r1 = min_size(shape.rows, r0 + kBlock);
      const size_t c0 = bc * kBlock, c1 = min_size(cols, c0 + kBlock);
      const size_t c_vec = c0 + (c1 - c0) / lanes * lanes;
      // amax as the largest |x| bit pattern; blocks with a NaN take the reference's own loop
      auto acc = hn::Zero(du);
      uint32_t top = 0;
      for (size_t r = r0; r < r1; ++r) {
        const size_t row = r * cols;
        size_t c = c0;
        for (; c < c_vec; c += lanes)
          acc = hn::Max(acc, hn::And(hn::BitCast(du, LoadAsF32<S>(df, src.data, row + c)), hn::Set(du, 0x7FFFFFFFu)));
        for (; c < c1; ++c) {
          const uint32_t a = f32_bits(src.at(row + c)) & 0x7FFFFFFFu;
          top = a > top ? a : top;
        }
      }
      const uint32_t lanes_top = hn::GetLane(hn::MaxOfLanes(du, acc));
      top = lanes_top > top ? lanes_top : top;
      const float amax = top > 0x7F800000u ? fp8_block_ref::block_amax(src, shape, br, bc) : f32_from_bits(top);
      const float s = fp8_block_ref::store_block_scale(amax, shape, scales, br, bc);
      // 2^k with k in [-126, 126] has the exact reciprocal 2^-k (biased exponent 254 - byte)
      bool reciprocal = false;
      float factor = s;
      if (shape.scale_kind == Fp8ScaleKind::E8M0) {
        const unsigned byte = static_cast<const uint8_t*>(scales)[br * shape.scale_cols() + bc];
        reciprocal = byte >= 1 && byte <= 253;
        if (reciprocal) factor = f32_from_bits((254u - byte) << 23);
      }
      if (reciprocal)
        quantize_rows<S, true>(src, shape, r0, r1, c0, c1, factor, s, gather, weight);
      else
        quantize_rows<S, false>(src, shape, r0, r1, c0, c1, factor, s, gather, weight);
    }
  }
}

void quantize(FloatSpan src, const Fp8BlockShape& shape, uint8_t* weight, void* scales) {
  switch (src.dtype) {
    case DType::BF16: return quantize_impl<DType::BF16>(src, shape, weight, scales);
    case DType::F16: return quantize_impl<DType::F16>(src, shape, weight, scales);
    default: return quantize_impl<DType::F32>(src, shape, weight, scales);
  }
}

const Fp8BlockKernels* target_kernels() {
  static const Fp8BlockKernels k = {dequantize_f32, dequantize_bf16, quantize};
  return &k;
}
#else
const Fp8BlockKernels* target_kernels() { return nullptr; }
#endif

}  // namespace fp4kit::fp8_block_simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "formats/simd_dispatch.h"

namespace fp4kit::fp8_block_simd {
HWY_EXPORT(target_kernels);

const Fp8BlockKernels* kernels(Isa isa) {
  const auto entry = simd::table_entry(HWY_DISPATCH_TABLE(target_kernels), isa);
  return entry ? entry() : nullptr;
}
}  // namespace fp4kit::fp8_block_simd
#endif
