#pragma once
// The lossless MXFP4 -> NVFP4 cast of ModelOpt's DeepSeek V4 exporter (--cast_mxfp4_to_nvfp4), on a
// part of a tensor. Per 32-element group with E8M0 exponent k: block amax 6*2^k when k lies in the
// window [k_own-17, k_own] of the tensor's own largest exponent (else the group's largest E2M1
// magnitude times 2^k), block scale from ModelOpt's rule against weight_scale_2 = 2^(k_max-8) (k_max
// over w1 and w3 together), elements requantized from ModelOpt's BF16 dequant with that scale.
//
// Every output of a group depends only on (its E8M0 byte, its largest magnitude when out of the
// window) and the tensor's constants, so the fast path precomputes, per byte present, the E4M3 scale
// and a 16-entry nibble table, and transcodes with byte shuffles. The constants are passed in, so a
// tensor can be cut into row ranges on any number of threads with the same bytes.
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "formats/isa.h"
#include "formats/mxfp4.h"

namespace fp4kit {

// The per-tensor constants of the cast.
struct Mxfp4CastParams {
  float weight_scale_2 = 1.0f;  // mxfp4_cast_weight_scale_2(k_max_shared)
  int k_max_shared = 0;         // over the fused pair (w1 and w3): ModelOpt's lossless count uses it
  int k_own = -127;             // the tensor's own largest exponent (byte-0 groups ignored; -127 if none)
};
// The constants for a tensor whose own E8M0 bytes are `scales` (the whole tensor) and whose pair
// shares `k_max_shared`.
Mxfp4CastParams mxfp4_cast_params(const uint8_t* scales, size_t count, int k_max_shared);

// What one (E8M0 byte, largest magnitude) does: the E4M3 block-scale byte, the output code of each
// source code, and which source codes do not round-trip to the same value.
struct Mxfp4CastEntry {
  alignas(16) std::array<uint8_t, 16> code{};
  uint8_t scale = 0;
  uint16_t inexact_codes = 0;  // bit c: source code c decodes differently after the cast
};

// The entries for the E8M0 bytes a tensor holds; built once per tensor, shared by its threads.
class Mxfp4CastTable {
 public:
  Mxfp4CastTable(const uint8_t* scales, size_t count, const Mxfp4CastParams& params);
  const Mxfp4CastParams& params() const { return params_; }
  // Whether byte b's block amax ignores the data (6*2^k): the entry then does not depend on it.
  bool in_window(uint8_t b) const { return window_[b]; }
  // `max_magnitude` (0..7) matters only outside the window. The byte must be one the table saw.
  const Mxfp4CastEntry& entry(uint8_t b, unsigned max_magnitude) const {
    return entries_[static_cast<size_t>(b) * 8 + (window_[b] ? 0 : max_magnitude)];
  }

 private:
  Mxfp4CastParams params_;
  std::array<bool, 256> window_{};
  std::vector<Mxfp4CastEntry> entries_;  // 256 x 8, filled for the bytes present
};

// n elements (a multiple of 32): packed n/2 bytes and n/32 E8M0 bytes in; NVFP4 packed n/2 bytes
// and E4M3 scales n/16 bytes out. Every ISA gives the same bytes and the same counts.
using Mxfp4CastKernel = Mxfp4CastStats (*)(const uint8_t* packed, const uint8_t* scales, size_t n,
                                           const Mxfp4CastTable&, uint8_t* out_packed, uint8_t* out_scales);
Mxfp4CastKernel mxfp4_cast_kernel(Isa isa = preferred_isa());

namespace mxfp4_cast_ref {
// The exporter's arithmetic group by group (uses only table.params()), with a round-trip check of
// every group for the exact count.
Mxfp4CastStats cast(const uint8_t* packed, const uint8_t* scales, size_t n, const Mxfp4CastTable& table,
                    uint8_t* out_packed, uint8_t* out_scales);
}  // namespace mxfp4_cast_ref

namespace mxfp4_cast_simd {
// The vector kernel for `isa` (mxfp4_cast_simd.cpp), nullptr where none was compiled.
Mxfp4CastKernel cast_kernel(Isa isa);
}  // namespace mxfp4_cast_simd

}  // namespace fp4kit
