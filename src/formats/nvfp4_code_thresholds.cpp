#include "formats/nvfp4_code_thresholds.h"

#include <cmath>

#include "formats/bf16.h"
#include "formats/e2m1.h"
#include "formats/f16.h"

namespace fp4kit {

namespace {

// A 16-bit source format as the tables see it: magnitudes ordered like their bits.
struct Source16 {
  bool bf16;
  uint8_t mantissa_bits;
  uint16_t max_finite;  // magnitude bits
  float min_subnormal;

  uint16_t min_normal() const { return static_cast<uint16_t>(1u << mantissa_bits); }
  float value(uint32_t bits) const {
    const auto b = static_cast<uint16_t>(bits);
    return bf16 ? BF16{b}.to_float() : F16{b}.to_float();
  }
  // The reference's magnitude code of the positive pattern `bits` over `divisor`.
  uint8_t magnitude_code(uint32_t bits, float divisor) const {
    return E2M1::from_float(value(bits) / divisor).bits & 0x7u;
  }
};

// The tables built at scale bytes (base << 3) | j, and the longest run of bytes they cover.
Nvfp4CodeThresholds thresholds_at_base(const Nvfp4Scaling& scaling, const Source16& s, int base) {
  Nvfp4CodeThresholds t;
  t.mantissa_bits = s.mantissa_bits;
  t.base_exponent = static_cast<uint8_t>(base);
  float base_divisor[8];
  for (int j = 0; j < 8; ++j) {
    const float d = nvfp4_quant_divisor(static_cast<uint8_t>((base << 3) | j), scaling);
    if (!std::isnormal(d) || d < 0.0f) return t;
    base_divisor[j] = d;
    // The code is monotone in |x|: the least pattern with code > k by bisection over [0, max_finite].
    for (int k = 0; k < Nvfp4CodeThresholds::kThresholds; ++k) {
      if (s.magnitude_code(s.max_finite, d) <= k) return t;  // no finite x reaches it
      uint32_t lo = 0, hi = s.max_finite;  // code(hi) > k; find the least such
      while (lo < hi) {
        const uint32_t mid = (lo + hi) / 2;
        if (s.magnitude_code(mid, d) > k) hi = mid;
        else lo = mid + 1;
      }
      // Shifting needs the threshold and the pattern below it normal.
      if (lo <= s.min_normal()) return t;
      t.first[j][k] = static_cast<uint16_t>(lo);
    }
  }

  // A normal scale byte (E, j) is covered when its divisor is exactly d_j · 2^(E-base), a nonzero x
  // never divides to ±0 (then the sign of x is the sign of the code), and every shifted threshold and
  // the pattern below it stay normal and finite.
  auto covered = [&](int byte) {
    const int n = (byte >> 3) - base, j = byte & 7;
    const float d = nvfp4_quant_divisor(static_cast<uint8_t>(byte), scaling);
    if (!std::isnormal(d) || d < 0.0f || std::ldexp(d, -n) != base_divisor[j]) return false;
    if (s.min_subnormal / d == 0.0f) return false;  // the least nonzero x, as the reference divides it
    for (int k = 0; k < Nvfp4CodeThresholds::kThresholds; ++k) {
      const int shifted = static_cast<int>(t.first[j][k]) + n * (1 << s.mantissa_bits);
      if (shifted <= s.min_normal() || shifted > s.max_finite) return false;
    }
    return true;
  };
  // The longest run of covered bytes among the normal positive ones but NaN (0x08 … 0x7E).
  int best_lo = 1, best_len = 0;
  for (int b = 0x08; b <= 0x7E;) {
    if (!covered(b)) {
      ++b;
      continue;
    }
    int e = b;
    while (e + 1 <= 0x7E && covered(e + 1)) ++e;
    if (e - b + 1 > best_len) best_lo = b, best_len = e - b + 1;
    b = e + 1;
  }
  if (best_len > 0) {
    t.byte_lo = static_cast<uint8_t>(best_lo);
    t.byte_hi = static_cast<uint8_t>(best_lo + best_len - 1);
  }
  return t;
}

}  // namespace

Nvfp4CodeThresholds nvfp4_code_thresholds(const Nvfp4Scaling& scaling, DType source) {
  if (source != DType::BF16 && source != DType::F16) return Nvfp4CodeThresholds{};
  const Source16 s = source == DType::BF16 ? Source16{true, 7, 0x7F7F, 0x1p-133f} : Source16{false, 10, 0x7BFF, 0x1p-24f};
  // The base exponent field whose tables cover the most bytes (F16's narrow range needs the choice).
  Nvfp4CodeThresholds best;
  for (int base : {7, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15}) {
    const Nvfp4CodeThresholds t = thresholds_at_base(scaling, s, base);
    if (t.byte_hi - t.byte_lo > best.byte_hi - best.byte_lo) best = t;
    if (best.byte_lo == 0x08 && best.byte_hi == 0x7E) break;  // every normal byte (BF16 as a rule)
  }
  return best;
}

uint8_t nvfp4_code_from_thresholds(const Nvfp4CodeThresholds& t, uint16_t x, uint8_t scale_byte) {
  const int n = (scale_byte >> 3) - t.base_exponent, j = scale_byte & 7;
  const int a = x & 0x7FFF;
  uint8_t code = 0;
  for (int k = 0; k < Nvfp4CodeThresholds::kThresholds; ++k)
    if (a >= static_cast<int>(t.first[j][k]) + n * (1 << t.mantissa_bits)) ++code;
  return static_cast<uint8_t>(code | ((x & 0x8000) != 0 && a != 0 ? 0x8 : 0x0));
}

}  // namespace fp4kit
