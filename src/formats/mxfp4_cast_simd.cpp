// Vector fast path of the lossless MXFP4 -> NVFP4 cast, one source for every ISA (Highway). Each
// 128-bit block of a vector is one 32-element group (16 packed bytes): the block takes its group's
// 16-entry code table (Mxfp4CastTable) and transcodes both nibbles of every byte with a byte lookup
// (TableLookupBytes, which looks up within each 128-bit block on every target). The tables come from
// the reference arithmetic itself, so the bytes are those of mxfp4_cast_ref::cast by construction
// (the kernels test checks it on every scale byte and every nibble, on every ISA the CPU has). The
// counts: a group is exact unless it holds a code its entry marks inexact, which is looked for only in
// such (rare) groups.
#include "formats/simd_targets.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "formats/mxfp4_cast_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "formats/e8m0.h"
#include "formats/mxfp4_cast.h"

HWY_BEFORE_NAMESPACE();
namespace fp4kit::mxfp4_cast_simd::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
#if FP4KIT_SIMD_KERNELS

constexpr size_t kGroupBytes = kMxfp4BlockSize / 2;
static_assert(kGroupBytes == 16, "one group per 128-bit block");

inline unsigned largest_magnitude(const uint8_t* group_packed) {
  unsigned m = 0;
  for (size_t j = 0; j < kGroupBytes; ++j) {
    const unsigned lo = group_packed[j] & 7u, hi = (group_packed[j] >> 4) & 7u;
    m = lo > m ? lo : m;
    m = hi > m ? hi : m;
  }
  return m;
}

// The entry of group g, and its counts.
inline const Mxfp4CastEntry& group_entry(const uint8_t* packed, const uint8_t* scales, size_t g,
                                         const Mxfp4CastTable& table, Mxfp4CastStats& stats) {
  const uint8_t b = scales[g];
  const Mxfp4CastEntry& e =
      table.entry(b, table.in_window(b) ? 0u : largest_magnitude(packed + g * kGroupBytes));
  const int k = static_cast<int>(b) - E8M0::kBias;
  stats.zero_scale_groups += b == 0;
  stats.reported_lossless += b == 0 || k >= table.params().k_max_shared - 17;
  bool exact = e.inexact_codes == 0;
  if (!exact) {
    unsigned present = 0;
    for (size_t j = 0; j < kGroupBytes; ++j) {
      const uint8_t byte = packed[g * kGroupBytes + j];
      present |= (1u << (byte & 0xF)) | (1u << (byte >> 4));
    }
    exact = (present & e.inexact_codes) == 0;
  }
  stats.exact_groups += exact;
  return e;
}

// Both nibbles of every byte of `bytes` through the code table in the same 128-bit block of `codes`.
template <class D>
HWY_INLINE hn::Vec<D> transcode(D d, hn::Vec<D> bytes, hn::Vec<D> codes) {
  const auto nibble = hn::Set(d, uint8_t{0x0F});
  const auto lo = hn::TableLookupBytes(codes, hn::And(bytes, nibble));
  const auto hi = hn::TableLookupBytes(codes, hn::And(hn::ShiftRight<4>(bytes), nibble));
  return hn::Or(lo, hn::ShiftLeft<4>(hi));  // codes < 16: the shift stays inside each byte
}

// The code tables of `per_vector` consecutive groups side by side, one per 128-bit block: straight
// from the tables on fixed-width targets (a buffer written 16 bytes at a time and read as one vector
// would stall on store forwarding), through a buffer on scalable ones.
template <class D>
HWY_INLINE hn::Vec<D> group_codes(D d, const Mxfp4CastEntry* const* e, uint8_t* buffer) {
#if HWY_HAVE_SCALABLE
  for (size_t i = 0; i < hn::Lanes(d) / kGroupBytes; ++i) std::memcpy(buffer + i * kGroupBytes, e[i]->code.data(), kGroupBytes);
  return hn::Load(d, buffer);
#else
  (void)buffer;
  constexpr size_t kGroups = hn::MaxLanes(D()) / kGroupBytes;
  const hn::Full128<uint8_t> d16;
  if constexpr (kGroups == 1) {
    return hn::Load(d16, e[0]->code.data());
  } else if constexpr (kGroups == 2) {
    return hn::Combine(d, hn::Load(d16, e[1]->code.data()), hn::Load(d16, e[0]->code.data()));
  } else {
    static_assert(kGroups == 4, "128, 256 or 512-bit vectors");
    const hn::Half<D> dh;
    return hn::Combine(d, hn::Combine(dh, hn::Load(d16, e[3]->code.data()), hn::Load(d16, e[2]->code.data())),
                       hn::Combine(dh, hn::Load(d16, e[1]->code.data()), hn::Load(d16, e[0]->code.data())));
  }
#endif
}

Mxfp4CastStats cast(const uint8_t* packed, const uint8_t* scales, size_t n, const Mxfp4CastTable& table,
                    uint8_t* out_packed, uint8_t* out_scales) {
  const hn::ScalableTag<uint8_t> d;
  const hn::Full128<uint8_t> d16;
  const size_t per_vector = hn::Lanes(d) / kGroupBytes;  // groups per vector
  HWY_ALIGN uint8_t buffer[HWY_MAX_BYTES];
  const Mxfp4CastEntry* entries[HWY_MAX_BYTES / kGroupBytes];
  Mxfp4CastStats stats;
  const size_t groups = n / kMxfp4BlockSize;
  stats.groups = groups;
  size_t g = 0;
  for (; g + per_vector <= groups; g += per_vector) {
    for (size_t i = 0; i < per_vector; ++i) {
      entries[i] = &group_entry(packed, scales, g + i, table, stats);
      const uint16_t both = static_cast<uint16_t>(entries[i]->scale * 0x0101u);  // the group's two blocks
      std::memcpy(out_scales + 2 * (g + i), &both, 2);
    }
    const auto bytes = hn::LoadU(d, packed + g * kGroupBytes);
    hn::StoreU(transcode(d, bytes, group_codes(d, entries, buffer)), d, out_packed + g * kGroupBytes);
  }
  for (; g < groups; ++g) {
    const Mxfp4CastEntry& e = group_entry(packed, scales, g, table, stats);
    const auto bytes = hn::LoadU(d16, packed + g * kGroupBytes);
    hn::StoreU(transcode(d16, bytes, hn::Load(d16, e.code.data())), d16, out_packed + g * kGroupBytes);
    out_scales[2 * g] = out_scales[2 * g + 1] = e.scale;
  }
  return stats;
}

Mxfp4CastKernel kernel() { return &cast; }
#else
Mxfp4CastKernel kernel() { return nullptr; }
#endif

}  // namespace fp4kit::mxfp4_cast_simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "formats/simd_dispatch.h"

namespace fp4kit::mxfp4_cast_simd {
HWY_EXPORT(kernel);

Mxfp4CastKernel cast_kernel(Isa isa) {
  const auto entry = simd::table_entry(HWY_DISPATCH_TABLE(kernel), isa);
  return entry ? entry() : nullptr;
}
}  // namespace fp4kit::mxfp4_cast_simd
#endif
