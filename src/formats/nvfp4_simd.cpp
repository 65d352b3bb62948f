// Vector fast path of the NVFP4 kernels, one source for every ISA (Highway). Bit-identical to
// nvfp4_ref: the same f32 operations (vector division and multiplication round exactly like their
// scalar forms; nothing is fused), and every case the vector code does not model (NaN data, a
// non-finite or zero global scale, a tail shorter than a chunk) is handed to the scalar reference.
// Vectors hold at most one block (16 lanes): a chunk of L blocks, L the lane count (4 on NEON and
// 128-bit SVE, 8 on AVX2, 16 on AVX-512), gets its L block scales in one vector, the blocks' maxima
// gathered lane by lane with a tree of pairwise maxima. The maxima are taken on |x| as integers (the
// same order as the floats, NaN above +inf), so they are exact whatever the order and the NaN test
// comes with them. Dequantization looks the reference's own table of code values up lane by lane.
#include "formats/simd_targets.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "formats/nvfp4_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "formats/e2m1.h"
#include "formats/nvfp4.h"
#include "formats/simd_common-inl.h"

// The F16 rounding of compressed-tensors' scales needs the hardware conversion (Highway's emulation
// truncates).
#if defined(HWY_DISABLE_F16C)
#error "nvfp4_simd.cpp needs F16C"
#endif

HWY_BEFORE_NAMESPACE();
namespace fp4kit::nvfp4_simd::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
#if FP4KIT_SIMD_KERNELS

using simd::HWY_NAMESPACE::E2m1Codes;
using simd::HWY_NAMESPACE::E4m3CodesOfRounded;
using simd::HWY_NAMESPACE::E4m3Round;
using simd::HWY_NAMESPACE::LoadAsF32;
using simd::HWY_NAMESPACE::RoundToDType;
using simd::HWY_NAMESPACE::StorePackedNibbles;

using DF = hn::CappedTag<float, kNvfp4BlockSize>;  // at most one block per vector
using DI = hn::RebindToSigned<DF>;

constexpr int32_t kMagnitudeBits = 0x7FFFFFFF;
constexpr int32_t kInfBits = 0x7F800000;

// ---- amax ----------------------------------------------------------------------------------------

template <DType S>
float amax_impl(FloatSpan src) {
  const hn::ScalableTag<float> d;  // max is exact: full width, any order
  const hn::RebindToSigned<decltype(d)> di;
  const size_t lanes = hn::Lanes(d);
  const auto magnitude = hn::Set(di, kMagnitudeBits);
  auto m0 = hn::Zero(di), m1 = hn::Zero(di);
  size_t i = 0;
  for (; i + 2 * lanes <= src.size; i += 2 * lanes) {
    m0 = hn::Max(m0, hn::And(hn::BitCast(di, LoadAsF32<S>(d, src.data, i)), magnitude));
    m1 = hn::Max(m1, hn::And(hn::BitCast(di, LoadAsF32<S>(d, src.data, i + lanes)), magnitude));
  }
  const int32_t top = hn::GetLane(hn::MaxOfLanes(di, hn::Max(m0, m1)));
  if (top > kInfBits) return std::numeric_limits<float>::quiet_NaN();
  const float r = std::bit_cast<float>(top);
  const float tail = nvfp4_ref::amax(src.subspan(i, src.size - i));
  if (std::isnan(tail)) return tail;
  return tail > r ? tail : r;
}

float amax(FloatSpan src) {
  switch (src.dtype) {
    case DType::BF16: return amax_impl<DType::BF16>(src);
    case DType::F16: return amax_impl<DType::F16>(src);
    default: return amax_impl<DType::F32>(src);
  }
}

// ---- block maxima --------------------------------------------------------------------------------

// |x| bits of the block at element `first`, folded into one vector.
template <DType S>
HWY_INLINE hn::Vec<DI> block_magnitudes(DF d, const void* src, size_t first) {
  const DI di;
  const size_t lanes = hn::Lanes(d);
  const auto magnitude = hn::Set(di, kMagnitudeBits);
  auto m = hn::And(hn::BitCast(di, LoadAsF32<S>(d, src, first)), magnitude);
  for (size_t j = lanes; j < kNvfp4BlockSize; j += lanes)
    m = hn::Max(m, hn::And(hn::BitCast(di, LoadAsF32<S>(d, src, first + j)), magnitude));
  return m;
}

// a and b each hold the partial maxima of g blocks, every block on an even number of adjacent lanes;
// the result holds a's blocks then b's, each on half as many lanes.
HWY_INLINE hn::Vec<DI> pair_max(DI di, hn::Vec<DI> a, hn::Vec<DI> b) {
  return hn::Max(hn::ConcatEven(di, b, a), hn::ConcatOdd(di, b, a));
}

// The maxima of kCount blocks from `block`, block j of them on lanes/kCount lanes from lane
// j*lanes/kCount; with kCount = lanes, block j's max |x| bits in lane j.
template <size_t kCount, DType S>
HWY_INLINE hn::Vec<DI> group_max(DF d, const void* src, size_t block) {
  if constexpr (kCount == 1) {
    return block_magnitudes<S>(d, src, block * kNvfp4BlockSize);
  } else {
    const DI di;
    return pair_max(di, group_max<kCount / 2, S>(d, src, block), group_max<kCount / 2, S>(d, src, block + kCount / 2));
  }
}

template <DType S>
HWY_INLINE hn::Vec<DI> chunk_max(DF d, const void* src, size_t block) {
  switch (hn::Lanes(d)) {  // a constant but on SVE
    case 4: return group_max<4, S>(d, src, block);
    case 8: return group_max<8, S>(d, src, block);
    default: return group_max<16, S>(d, src, block);
  }
}

// ---- quantize ------------------------------------------------------------------------------------

template <DType S>
HWY_INLINE void quantize_block(DF d, const void* src, size_t first, hn::Vec<DF> divisor, uint8_t* packed) {
  const DI di;
  for (size_t j = 0; j < kNvfp4BlockSize; j += hn::Lanes(d))
    StorePackedNibbles(di, E2m1Codes(d, hn::Div(LoadAsF32<S>(d, src, first + j), divisor)),
                       packed + (first + j) / 2);
}

// The vector scale path models finite, positive, normal global scales (every real tensor); the
// rest (an all-zero or NaN tensor) goes to the scalar reference.
bool vector_scaling_ok(const Nvfp4Scaling& sc) {
  const float g = sc.global;
  if (!std::isfinite(g) || !std::isnormal(g) || g < 0.0f) return false;
  return sc.numerics == Nvfp4Numerics::CompressedTensors || std::isnormal(6.0f * g);
}

template <DType S>
void quantize_impl(FloatSpan src, const Nvfp4Scaling& sc, uint8_t* packed, uint8_t* scales) {
  const DF d;
  const DI di;
  const hn::Rebind<uint8_t, DI> d8;
  const size_t lanes = hn::Lanes(d);
  const size_t chunk = lanes * kNvfp4BlockSize;
  const size_t n = src.size;
  const bool vector_ok = vector_scaling_ok(sc);
  const bool ct = sc.numerics == Nvfp4Numerics::CompressedTensors;
  const auto global = hn::Set(d, sc.global);
  const auto denom = hn::Set(d, 6.0f * sc.global);
  HWY_ALIGN float divisors[kNvfp4BlockSize];
  size_t i = 0;
  for (; vector_ok && i + chunk <= n; i += chunk) {
    const size_t first_block = i / kNvfp4BlockSize;
    const auto bits = chunk_max<S>(d, src.data, first_block);
    if (!hn::AllFalse(di, hn::Gt(bits, hn::Set(di, kInfBits)))) {  // NaN: the reference, block by block
      nvfp4_ref::quantize(src.subspan(i, chunk), sc, packed + i / 2, scales + first_block);
      continue;
    }
    const auto block_amax = hn::BitCast(d, bits);
    hn::Vec<DF> divisor;
    hn::Vec<DI> code;
    if (!ct) {  // s = amax/(6*wsf2); 0 -> 1.0; clamp [2^-9, 448]; E4M3; divisor s8*wsf2
      auto s = hn::Div(block_amax, denom);
      s = hn::IfThenElse(hn::Eq(s, hn::Zero(d)), hn::Set(d, 1.0f), s);
      s = hn::Min(hn::Max(s, hn::Set(d, 0x1p-9f)), hn::Set(d, 448.0f));
      const auto s8 = E4m3Round(d, s);
      code = E4m3CodesOfRounded(d, s8);
      divisor = hn::Mul(s8, global);
    } else {  // s = gs * src(amax/6); saturate; E4M3; zero codes -> 0.125; divisor s8/gs
      const auto sixth = RoundToDType(d, hn::Div(block_amax, hn::Set(d, 6.0f)), sc.source);
      const auto s = hn::Min(hn::Mul(global, sixth), hn::Set(d, 448.0f));
      auto s8 = E4m3Round(d, s);
      code = E4m3CodesOfRounded(d, s8);
      const auto zero = hn::Eq(code, hn::Zero(di));
      code = hn::IfThenElse(zero, hn::Set(di, 0x20), code);
      s8 = hn::IfThenElse(hn::RebindMask(d, zero), hn::Set(d, 0.125f), s8);
      divisor = hn::Div(s8, global);
    }
    hn::StoreU(hn::DemoteTo(d8, code), d8, scales + first_block);
    hn::Store(divisor, d, divisors);
    for (size_t b = 0; b < lanes; ++b)
      quantize_block<S>(d, src.data, i + b * kNvfp4BlockSize, hn::Set(d, divisors[b]), packed);
  }
  if (i < n) nvfp4_ref::quantize(src.subspan(i, n - i), sc, packed + i / 2, scales + i / kNvfp4BlockSize);
}

void quantize(FloatSpan src, const Nvfp4Scaling& sc, uint8_t* packed, uint8_t* scales) {
  switch (src.dtype) {
    case DType::BF16: return quantize_impl<DType::BF16>(src, sc, packed, scales);
    case DType::F16: return quantize_impl<DType::F16>(src, sc, packed, scales);
    default: return quantize_impl<DType::F32>(src, sc, packed, scales);
  }
}

// What a block's scale byte turns into (nvfp4_quant_divisor or nvfp4_dequant_multiplier), looked up
// in a table of all 256 bytes built with that very function when the call has enough blocks to pay
// for it.
class ScaleTable {
 public:
  ScaleTable(size_t blocks, const Nvfp4Scaling& sc, float (*fn)(uint8_t, const Nvfp4Scaling&))
      : sc_(sc), fn_(fn), tabled_(blocks >= 1024) {
    if (tabled_)
      for (unsigned byte = 0; byte < 256; ++byte) table_[byte] = fn(static_cast<uint8_t>(byte), sc);
  }
  float operator()(uint8_t byte) const { return tabled_ ? table_[byte] : fn_(byte, sc_); }

 private:
  const Nvfp4Scaling& sc_;
  float (*fn_)(uint8_t, const Nvfp4Scaling&);
  bool tabled_;
  float table_[256];
};

template <DType S>
void quantize_with_scales_impl(FloatSpan src, const uint8_t* scales, const Nvfp4Scaling& sc, uint8_t* packed) {
  const DF d;
  const size_t blocks = src.size / kNvfp4BlockSize;
  const ScaleTable divisors(blocks, sc, nvfp4_quant_divisor);
  for (size_t b = 0; b < blocks; ++b)
    quantize_block<S>(d, src.data, b * kNvfp4BlockSize, hn::Set(d, divisors(scales[b])), packed);
}

void quantize_with_scales(FloatSpan src, const uint8_t* scales, const Nvfp4Scaling& sc, uint8_t* packed) {
  switch (src.dtype) {
    case DType::BF16: return quantize_with_scales_impl<DType::BF16>(src, scales, sc, packed);
    case DType::F16: return quantize_with_scales_impl<DType::F16>(src, scales, sc, packed);
    default: return quantize_with_scales_impl<DType::F32>(src, scales, sc, packed);
  }
}

// ---- dequantize ----------------------------------------------------------------------------------

// E2M1 values of codes 0..15 in i32 lanes, computed (for 4-lane vectors, too narrow for a table):
// magnitudes 0.5 (code 1) and, from code 2 on, 1, 1.5, 2, 3, 4, 6: exponent (m >> 1) - 1 and one
// mantissa bit (m & 1), i.e. (m + 252) << 22. Codes above `positive_last` are negative: 8 for ModelOpt
// (code 8 is +0.0), 7 for compressed-tensors (-0.0), as in the reference's tables.
HWY_INLINE hn::Vec<DF> e2m1_values(DF d, hn::Vec<DI> code, hn::Vec<DI> positive_last) {
  const DI di;
  const auto m = hn::And(code, hn::Set(di, 7));
  const auto from_one = hn::ShiftLeft<22>(hn::Add(m, hn::Set(di, 252)));
  const auto below_one = hn::And(hn::Neg(m), hn::Set(di, 0x3F000000));  // 0 -> 0, 1 -> 0.5
  const auto magnitude = hn::IfThenElse(hn::Lt(m, hn::Set(di, 2)), below_one, from_one);
  const auto sign = hn::IfThenElseZero(hn::Gt(code, positive_last), hn::Set(di, INT32_MIN));
  return hn::BitCast(d, hn::Or(magnitude, sign));
}

// The reference's table of the 16 code values, looked up lane by lane: one table of 16 lanes where a
// vector has them, two of 8 (positive, negative codes) on 8 lanes, the values computed on 4.
template <class D>  // (a template, so that only the branch for D's lane count is compiled)
void dequantize_impl(D d, const uint8_t* packed, const uint8_t* scales, size_t n, const Nvfp4Scaling& sc, float* out) {
  const hn::RebindToSigned<D> di;
  const hn::Rebind<uint8_t, DI> d8;
  const hn::FixedTag<uint16_t, 8> d16;  // one packed byte per lane
  const hn::Rebind<uint8_t, decltype(d16)> dbytes;
  const hn::Repartition<uint8_t, decltype(d16)> dcodes;
  const size_t lanes = hn::Lanes(d);
  const bool ct = sc.numerics == Nvfp4Numerics::CompressedTensors;
  const float* values = ct ? E2M1::kSignedZeroValues : E2M1::kValues;
  const auto positive_last = hn::Set(di, ct ? 7 : 8);
  const auto low_table = hn::LoadU(d, values);                            // codes 0.. (all 16 when they fit)
  const auto high_table = hn::LoadU(d, values + (lanes == 8 ? 8 : 0));  // codes 8..15 on 8 lanes
  const auto lookup = [&](hn::Vec<decltype(di)> code) HWY_ATTR {
    if (lanes >= 16) return hn::TableLookupLanes(low_table, hn::IndicesFromVec(d, code));
    if (lanes == 8) {
      const auto index = hn::IndicesFromVec(d, hn::And(code, hn::Set(di, 7)));
      return hn::IfThenElse(hn::RebindMask(d, hn::Gt(code, hn::Set(di, 7))), hn::TableLookupLanes(high_table, index),
                            hn::TableLookupLanes(low_table, index));
    }
    return e2m1_values(d, code, positive_last);
  };
  const ScaleTable multipliers(n / kNvfp4BlockSize, sc, nvfp4_dequant_multiplier);
  HWY_ALIGN uint8_t codes[kNvfp4BlockSize];
  for (size_t b = 0; b < n / kNvfp4BlockSize; ++b) {
    const auto m = hn::Set(d, multipliers(scales[b]));
    // byte j -> codes 2j (low nibble) and 2j+1 (high nibble), one byte each, in element order
    const auto bytes = hn::PromoteTo(d16, hn::LoadU(dbytes, packed + b * kNvfp4BlockSize / 2));
    const auto pair = hn::Or(hn::And(bytes, hn::Set(d16, uint16_t{0x0F})),
                             hn::ShiftLeft<4>(hn::And(bytes, hn::Set(d16, uint16_t{0xF0}))));
    const auto code_bytes = hn::BitCast(dcodes, pair);
#if !HWY_HAVE_SCALABLE
    if constexpr (hn::MaxLanes(D()) == 8) {  // both halves straight from the register
      const hn::Half<decltype(dcodes)> dhalf;
      hn::StoreU(hn::Mul(lookup(hn::PromoteTo(di, hn::LowerHalf(dhalf, code_bytes))), m), d, out + b * 16);
      hn::StoreU(hn::Mul(lookup(hn::PromoteTo(di, hn::UpperHalf(dhalf, code_bytes))), m), d, out + b * 16 + 8);
      continue;
    }
#endif
    hn::Store(code_bytes, dcodes, codes);
    for (size_t j = 0; j < kNvfp4BlockSize; j += lanes) {
      const auto code = hn::PromoteTo(di, hn::LoadU(d8, codes + j));
      hn::StoreU(hn::Mul(lookup(code), m), d, out + b * kNvfp4BlockSize + j);
    }
  }
}

void dequantize(const uint8_t* packed, const uint8_t* scales, size_t n, const Nvfp4Scaling& sc, float* out) {
  dequantize_impl(DF(), packed, scales, n, sc, out);
}

const Nvfp4Kernels kKernels = {amax, quantize, quantize_with_scales, dequantize};
const Nvfp4Kernels* target_kernels() { return &kKernels; }
#else
const Nvfp4Kernels* target_kernels() { return nullptr; }
#endif

}  // namespace fp4kit::nvfp4_simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "formats/simd_dispatch.h"

namespace fp4kit::nvfp4_simd {
HWY_EXPORT(target_kernels);

const Nvfp4Kernels* kernels(Isa isa) {
  const auto entry = simd::table_entry(HWY_DISPATCH_TABLE(target_kernels), isa);
  return entry ? entry() : nullptr;
}
}  // namespace fp4kit::nvfp4_simd
#endif
