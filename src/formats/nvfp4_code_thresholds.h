#pragma once
// NVFP4 codes of a 16-bit source (BF16, F16) without a division: for one tensor's scaling, the E2M1
// code of x / divisor (nvfp4_ref::quantize_with_scales) is the count of seven thresholds at or below
// |x|'s bits, and the thresholds of a scale byte are those of the byte with the same mantissa and
// a base exponent field, shifted by the exponent difference. Why: a scale byte (E, j) has the
// divisor d_j · 2^(E-base) when that product is exact, x and x · 2^n divide by them to the same quotient, and the
// code is monotone in |x|; so eight tables of seven thresholds, built once per tensor with the
// reference's own division, give every block's codes. The GPU quantize kernel counts them on pairs of
// elements (cuda/exact/nvfp4_quantize.cu); bytes outside [byte_lo, byte_hi] take its exact path.
#include <cstdint>

#include "formats/dtype.h"
#include "formats/nvfp4.h"

namespace fp4kit {

struct Nvfp4CodeThresholds {
  static constexpr int kThresholds = 7;  // codes 1 … 7
  // first[j][k]: the least |x| bits (the 15-bit magnitude of the source pattern) whose code is at
  // least k + 1 under the scale byte (base_exponent << 3) | j.
  uint16_t first[8][kThresholds] = {};
  // The scale bytes for which the shifted thresholds give the reference's code of every finite x;
  // none when byte_lo > byte_hi.
  uint8_t byte_lo = 1, byte_hi = 0;
  uint8_t mantissa_bits = 7;  // of the source: 7 BF16, 10 F16
  uint8_t base_exponent = 7;  // the E4M3 exponent field the tables were built at

  bool covers(uint8_t scale_byte) const { return scale_byte >= byte_lo && scale_byte <= byte_hi; }
};

// The tables for `scaling` over a BF16 or F16 source (any other source: none covered). Exact by
// construction; the tests check every pattern under every covered byte against the reference.
Nvfp4CodeThresholds nvfp4_code_thresholds(const Nvfp4Scaling& scaling, DType source);

// The E2M1 code (sign included) of the 16-bit source pattern x under a covered scale byte, from the
// tables alone, as the kernel computes it: the sign is set where x < 0, that is, for negative x but -0.
uint8_t nvfp4_code_from_thresholds(const Nvfp4CodeThresholds& t, uint16_t x, uint8_t scale_byte);

}  // namespace fp4kit
