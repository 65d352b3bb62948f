// Vector fast path of the MXFP4 kernels, one source for every ISA (Highway). Bytes identical to
// mxfp4_ref for every input:
//  - dequantize: FP4_TABLE[q] * 2^(e-127) has a 2-bit significand, so (in round-to-nearest, without
//    flushing) it is exact, an overflow to Inf, or the scale's NaN: its low 16 bits are zero and its
//    top half is also its BF16 rounding. Those top halves, per scale byte and code, form a byte table
//    that the reference computes itself (ProductTable); each group broadcasts its scale's table to
//    every 128-bit block and looks its codes up (TableLookupBytes), writing the output bytes in
//    element order. In any other floating-point environment the reference does the whole call.
//  - quantize: per group, amax as the largest |x| bit pattern (groups with an Inf or a NaN go to the
//    reference); the scale by the reference's own scalar arithmetic, its ceil(log2) read off the
//    bits of the normal v = max(amax, 6*2^-126)/6; x/s as x*(1/s), the same correctly rounded value,
//    since s = 2^k with k in [-126, 126] has an exact reciprocal.
#include "formats/simd_targets.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "formats/mxfp4_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <cstddef>
#include <cstdint>

#include "formats/dtype.h"
#include "formats/float_bits.h"
#include "formats/float_span.h"
#include "formats/mxfp4.h"
#include "formats/simd_common-inl.h"

// Target-independent pieces, declared once.
#ifndef FP4KIT_FORMATS_MXFP4_SIMD_SHARED_
#define FP4KIT_FORMATS_MXFP4_SIMD_SHARED_
namespace fp4kit::mxfp4_simd {

// Per E8M0 byte b and code c: bits 16-23 (lo) and 24-31 (hi) of mxfp4_ref's FP4_TABLE[c] * 2^(b-127).
struct ProductTable {
  alignas(16) uint8_t lo[256][16];
  alignas(16) uint8_t hi[256][16];
};
// The table, or nullptr where the floating-point environment is not the default one (round to
// nearest, no flushing of subnormals), in which the products are not what the table holds.
const ProductTable* product_table();

}  // namespace fp4kit::mxfp4_simd
#endif

HWY_BEFORE_NAMESPACE();
namespace fp4kit::mxfp4_simd::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
#if FP4KIT_SIMD_KERNELS
using simd::HWY_NAMESPACE::E2m1Codes;
using simd::HWY_NAMESPACE::LoadAsF32;
using simd::HWY_NAMESPACE::StorePackedNibbles;

constexpr size_t kGroup = kMxfp4BlockSize;  // 32 elements, 16 packed bytes, one scale byte

// ---- dequantize -------------------------------------------------------------------------------

// T: uint16_t (BF16 bits) or float. Output vectors are at most 64 bytes, so each lies in one group.
template <typename T>
void dequantize_impl(const uint8_t* packed, const uint8_t* scales, size_t n, T* out) {
  constexpr size_t kGroupBytes = kGroup * sizeof(T);  // output bytes per group
  const ProductTable* table = product_table();
  const size_t groups = table ? n / kGroup : 0;
  const hn::CappedTag<uint8_t, 64> d;
  const size_t vb = hn::Lanes(d);
  // Per output byte: which of the group's 16 packed bytes holds its element's code, in `even` for
  // elements in a low nibble and in `odd` for the high ones; 0x80 (looks up 0) elsewhere. `unused`
  // marks the low half of f32 outputs, which is zero.
  HWY_ALIGN uint8_t even[kGroupBytes], odd[kGroupBytes], unused[kGroupBytes];
  for (size_t j = 0; j < kGroupBytes; ++j) {
    const size_t e = j / sizeof(T);
    const bool zero = sizeof(T) == 4 && j % 4 < 2;
    even[j] = !zero && e % 2 == 0 ? static_cast<uint8_t>(e / 2) : uint8_t{0x80};
    odd[j] = !zero && e % 2 == 1 ? static_cast<uint8_t>(e / 2) : uint8_t{0x80};
    unused[j] = zero ? uint8_t{0x80} : uint8_t{0};
  }
  size_t g = 0;
  for (; g < groups; ++g) {
    const auto bytes = hn::LoadDup128(d, packed + g * (kGroup / 2));
    const auto lo = hn::And(bytes, hn::Set(d, uint8_t{0x0F}));
    const auto hi = hn::ShiftRight<4>(bytes);
    const auto table_lo = hn::LoadDup128(d, table->lo[scales[g]]);
    const auto table_hi = hn::LoadDup128(d, table->hi[scales[g]]);
    uint8_t* o = reinterpret_cast<uint8_t*>(out + g * kGroup);
    for (size_t j = 0; j < kGroupBytes; j += vb) {
      auto codes = hn::Or(hn::TableLookupBytesOr0(lo, hn::Load(d, even + j)),
                          hn::TableLookupBytesOr0(hi, hn::Load(d, odd + j)));
      if constexpr (sizeof(T) == 4) codes = hn::Or(codes, hn::Load(d, unused + j));
      // Each element's bytes in order: low byte of the top half (even), high byte (odd).
      hn::StoreU(hn::OddEven(hn::TableLookupBytesOr0(table_hi, codes), hn::TableLookupBytesOr0(table_lo, codes)), d,
                 o + j);
    }
  }
  const size_t done = g * kGroup;
  if (done < n) {
    if constexpr (sizeof(T) == 4) mxfp4_ref::dequantize_f32(packed + done / 2, scales + g, n - done, out + done);
    else mxfp4_ref::dequantize_bf16(packed + done / 2, scales + g, n - done, out + done);
  }
}

void dequantize_f32(const uint8_t* packed, const uint8_t* scales, size_t n, float* out) {
  dequantize_impl(packed, scales, n, out);
}

void dequantize_bf16(const uint8_t* packed, const uint8_t* scales, size_t n, uint16_t* out) {
  dequantize_impl(packed, scales, n, out);
}

// ---- quantize ---------------------------------------------------------------------------------

// Groups are done in chunks: first every scale of the chunk (a long dependency chain per group, which
// the chunk's groups overlap), then every element.
constexpr size_t kChunk = 16;

template <DType S>
void quantize_impl(FloatSpan src, uint8_t* packed, uint8_t* scales) {
  const hn::CappedTag<float, kGroup> d;  // whole vectors per group
  const hn::RebindToUnsigned<decltype(d)> du;
  const hn::RebindToSigned<decltype(d)> di;
  const size_t lanes = hn::Lanes(d);
  const size_t groups = src.size / kGroup;
  constexpr float kFloor = 6.0f * 0x1p-126f;
  for (size_t g0 = 0; g0 < groups; g0 += kChunk) {
    const size_t count = groups - g0 < kChunk ? groups - g0 : kChunk;
    float recip[kChunk];  // 1/s per group; 0 for the groups left to the reference
    for (size_t i = 0; i < count; ++i) {
      const size_t base = (g0 + i) * kGroup;
      // |x| as integers: for non-negative floats the integer order is the float order, and Inf
      // and NaN are the only values at or above 0x7F800000.
      auto m = hn::Zero(du);
      for (size_t j = 0; j < kGroup; j += lanes)
        m = hn::Max(m, hn::And(hn::BitCast(du, LoadAsF32<S>(d, src.data, base + j)), hn::Set(du, 0x7FFFFFFFu)));
      const uint32_t top = hn::GetLane(hn::MaxOfLanes(du, m));
      if (top >= 0x7F800000u) {
        recip[i] = 0.0f;
        continue;
      }
      const float amax = f32_from_bits(top);
      // v is normal and finite: ceil(log2(v)) + 127 is its biased exponent, plus one when its
      // mantissa is nonzero, in [1, 253].
      const float v = (amax > kFloor ? amax : kFloor) / 6.0f;
      const uint32_t byte = (f32_bits(v) + 0x7FFFFFu) >> 23;
      scales[g0 + i] = static_cast<uint8_t>(byte);
      recip[i] = f32_from_bits((254u - byte) << 23);  // 2^(127-byte), exact
    }
    for (size_t i = 0; i < count; ++i) {
      const size_t base = (g0 + i) * kGroup;
      if (recip[i] == 0.0f) {  // an Inf or a NaN
        mxfp4_ref::quantize(src.subspan(base, kGroup), packed + base / 2, scales + g0 + i);
        continue;
      }
      const auto r = hn::Set(d, recip[i]);
      for (size_t j = 0; j < kGroup; j += lanes)
        StorePackedNibbles(di, E2m1Codes(d, hn::Mul(LoadAsF32<S>(d, src.data, base + j), r)), packed + (base + j) / 2);
    }
  }
}

void quantize(FloatSpan src, uint8_t* packed, uint8_t* scales) {
  switch (src.dtype) {
    case DType::BF16: return quantize_impl<DType::BF16>(src, packed, scales);
    case DType::F16: return quantize_impl<DType::F16>(src, packed, scales);
    default: return quantize_impl<DType::F32>(src, packed, scales);
  }
}

const Mxfp4Kernels* target_kernels() {
  static const Mxfp4Kernels k = {dequantize_f32, dequantize_bf16, quantize};
  return &k;
}
#else
const Mxfp4Kernels* target_kernels() { return nullptr; }
#endif

}  // namespace fp4kit::mxfp4_simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <cfenv>

#include "formats/simd_dispatch.h"

namespace fp4kit::mxfp4_simd {

namespace {

// Round to nearest, and a subnormal product neither flushed nor read as zero.
bool default_float_env() {
  if (std::fegetround() != FE_TONEAREST) return false;
  volatile float tiny = 0x1p-127f;
  const float product = tiny * 1.5f;
  return f32_bits(product) == 0x00600000u;
}

// The reference's dequant of codes 0..15 at every scale byte. A product whose low half is not zero
// or whose BF16 rounding is not its top half (none, in the default environment) would leave the
// table unusable.
bool build(ProductTable& t) {
  uint8_t codes[kMxfp4BlockSize / 2] = {};
  for (unsigned j = 0; j < 8; ++j) codes[j] = static_cast<uint8_t>((2 * j) | ((2 * j + 1) << 4));
  for (unsigned b = 0; b < 256; ++b) {
    const uint8_t scale = static_cast<uint8_t>(b);
    float f32[kMxfp4BlockSize];
    uint16_t bf16[kMxfp4BlockSize];
    mxfp4_ref::dequantize_f32(codes, &scale, kMxfp4BlockSize, f32);
    mxfp4_ref::dequantize_bf16(codes, &scale, kMxfp4BlockSize, bf16);
    for (unsigned c = 0; c < 16; ++c) {
      const uint32_t u = f32_bits(f32[c]);
      if ((u & 0xFFFFu) != 0 || (u >> 16) != bf16[c]) return false;
      t.lo[b][c] = static_cast<uint8_t>(u >> 16);
      t.hi[b][c] = static_cast<uint8_t>(u >> 24);
    }
  }
  return true;
}

}  // namespace

const ProductTable* product_table() {
  if (!default_float_env()) return nullptr;
  // Built on the first call, which is in the default environment (checked just above).
  static const ProductTable* const table = [] {
    static ProductTable t;
    return build(t) ? &t : nullptr;
  }();
  return table;
}

HWY_EXPORT(target_kernels);

const Mxfp4Kernels* kernels(Isa isa) {
  const auto entry = simd::table_entry(HWY_DISPATCH_TABLE(target_kernels), isa);
  return entry ? entry() : nullptr;
}

}  // namespace fp4kit::mxfp4_simd
#endif
