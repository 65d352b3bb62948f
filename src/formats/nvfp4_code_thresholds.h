#pragma once
// NVFP4 codes without a division: for one tensor's scaling and source (F32, BF16, F16), the E2M1
// code of x / divisor (nvfp4_ref::quantize_with_scales) is the count of seven thresholds at or below
// |x|'s bits, and the thresholds of a scale byte are those of the byte with the same mantissa and
// a base exponent field, shifted by the exponent difference. Why: a scale byte (E, j) has the
// divisor d_j · 2^(E-base) when that product is exact, x and x · 2^n divide by them to the same quotient, and the
// code is monotone in |x|; so eight tables of seven thresholds, built once per tensor with the
// reference's own division, give every block's codes. The GPU quantize kernel counts them
// (cuda/exact/nvfp4_code_counts.cuh; 16-bit sources two elements at a time); bytes outside
// [byte_lo, byte_hi] take its exact path.
#include <cstdint>

#include "formats/dtype.h"
#include "formats/nvfp4.h"

namespace fp4kit {

struct Nvfp4CodeThresholds {
  static constexpr int kThresholds = 7;  // codes 1 … 7
  // first[j][k]: the least |x| bits (the magnitude bits of the source pattern) whose code is at
  // least k + 1 under the scale byte (base_exponent << 3) | j.
  uint32_t first[8][kThresholds] = {};
  // sign_first[b]: under a covered byte b, the least |x| bits whose quotient is not ±0: a negative x
  // below it divides to -0, whose code is 0 (1 wherever a 16-bit source is covered).
  uint32_t sign_first[128] = {};
  // The scale bytes for which the shifted thresholds give the reference's code of every finite x;
  // none when byte_lo > byte_hi.
  uint8_t byte_lo = 1, byte_hi = 0;
  uint8_t mantissa_bits = 7;  // of the source: 7 BF16, 10 F16, 23 F32
  uint8_t base_exponent = 7;  // the E4M3 exponent field the tables were built at

  bool covers(uint8_t scale_byte) const { return scale_byte >= byte_lo && scale_byte <= byte_hi; }
};

// The tables for `scaling` over a BF16, F16 or F32 source. Exact by construction; the tests check
// every 16-bit pattern, and F32 patterns around every threshold, under every covered byte.
Nvfp4CodeThresholds nvfp4_code_thresholds(const Nvfp4Scaling& scaling, DType source);

// The E2M1 code (sign included) of the source pattern x under a covered scale byte, from the tables
// alone, as the kernel computes it: the sign is set where the quotient is < 0, that is, for negative
// x of at least sign_first's magnitude.
uint8_t nvfp4_code_from_thresholds(const Nvfp4CodeThresholds& t, uint32_t x, uint8_t scale_byte);

}  // namespace fp4kit
