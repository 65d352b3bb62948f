#include "formats/nvfp4_scale_steps.h"

#include <bit>
#include <cmath>

namespace fp4kit {

namespace {

constexpr uint32_t kMaxFinite = 0x7F7FFFFFu;  // the bits of the largest finite float
constexpr uint32_t kBinade = 1u << 23;        // amax · 2 in the bits, for normal amax

// The least u in (lo, hi] where `holds` is true, given it is false at lo, true at hi, and changes once
// in between.
template <class Predicate>
uint32_t least_where(const Predicate& holds, uint32_t lo, uint32_t hi) {
  while (hi - lo > 1) {
    const uint32_t mid = lo + (hi - lo) / 2;
    (holds(mid) ? hi : lo) = mid;
  }
  return hi;
}

}  // namespace

Nvfp4ScaleSteps nvfp4_scale_steps(const Nvfp4Scaling& scaling) {
  Nvfp4ScaleSteps t;
  if (!std::isfinite(scaling.global) || !(scaling.global > 0.0f)) return t;
  const auto byte = [&](uint32_t bits) { return nvfp4_block_scale(std::bit_cast<float>(bits), scaling); };

  // The zero rule holds on a prefix of amax (its own test is monotone; the byte is not: ModelOpt's
  // zero block gets 1.0's byte, which larger blocks get again).
  t.zero_byte = byte(0);
  const auto zero_rule = [&](uint32_t bits) {
    return nvfp4_block_scale_zero_rule(std::bit_cast<float>(bits), scaling);
  };
  if (!zero_rule(0)) {
    t.zero_below = 0;
  } else if (zero_rule(kMaxFinite)) {
    t.zero_below = kMaxFinite + 1;
  } else {
    t.zero_below = least_where([&](uint32_t u) { return !zero_rule(u); }, 0, kMaxFinite);
  }
  const uint8_t top = byte(kMaxFinite);
  if (t.zero_below > kMaxFinite) {  // one byte for every finite amax
    t.first_byte = t.last_byte = t.zero_byte;
    t.usable = true;
    return t;
  }
  t.first_byte = byte(t.zero_below);

  // Steps found by bisection until the periodic ones show (the low ones and one binade and one more),
  // then predicted one binade above the step eight before, and checked there.
  constexpr int kBisected = Nvfp4ScaleSteps::kLowSteps + 9;
  uint32_t steps[256];
  int n = 0;
  uint32_t at = t.zero_below;
  uint8_t v = t.first_byte;
  while (n < kBisected && v != top) {
    const uint32_t u = least_where([&](uint32_t w) { return byte(w) != v; }, at, kMaxFinite);
    if (byte(u) != v + 1) return t;  // a step of more than one byte
    steps[n++] = u, at = u, ++v;
  }
  int first_periodic = n;  // all low
  if (n > Nvfp4ScaleSteps::kLowSteps) {
    first_periodic = -1;
    for (int i0 = 0; i0 <= Nvfp4ScaleSteps::kLowSteps && first_periodic < 0; ++i0) {
      if (n - i0 < 9) break;
      bool periodic = true;
      for (int i = i0; i + 8 < n; ++i) periodic = periodic && steps[i + 8] - steps[i] == kBinade;
      if (periodic) first_periodic = i0;
    }
    if (first_periodic < 0) return t;
  }
  while (v != top) {
    if (n == 256 || steps[n - 8] > kMaxFinite - kBinade) return t;
    const uint32_t u = steps[n - 8] + kBinade;
    if (byte(u - 1) != v || byte(u) != v + 1) return t;
    steps[n++] = u, ++v;
  }
  t.last_byte = v;
  for (int i = 0; i < first_periodic; ++i) t.low[i] = steps[i];
  if (first_periodic < n) {
    t.period_first = steps[first_periodic];
    t.periodic_byte = static_cast<uint8_t>(t.first_byte + first_periodic + 1);
    for (int j = 0; j < 8; ++j) t.period_offset[j] = steps[first_periodic + j] - t.period_first;
  }
  t.usable = true;
  return t;
}

uint8_t nvfp4_scale_from_steps(const Nvfp4ScaleSteps& t, uint32_t u) {
  if (u < t.zero_below) return t.zero_byte;
  if (u < t.period_first) {
    uint32_t b = t.first_byte;
    for (uint32_t s : t.low) b += u >= s;
    return static_cast<uint8_t>(b);
  }
  const uint32_t r = u - t.period_first;
  uint32_t b = t.periodic_byte + 8 * (r >> 23);
  for (int j = 1; j < 8; ++j) b += (r & (kBinade - 1)) >= t.period_offset[j];
  return static_cast<uint8_t>(b < t.last_byte ? b : t.last_byte);
}

std::vector<uint32_t> nvfp4_scale_step_bits(const Nvfp4ScaleSteps& t) {
  std::vector<uint32_t> bits;
  if (t.zero_below <= kMaxFinite) bits.push_back(t.zero_below);
  for (uint32_t s : t.low)
    if (s != Nvfp4ScaleSteps::kNever) bits.push_back(s);
  if (t.period_first != Nvfp4ScaleSteps::kNever)
    for (uint64_t base = t.period_first; base <= kMaxFinite; base += kBinade)
      for (uint32_t o : t.period_offset)
        if (base + o <= kMaxFinite) bits.push_back(static_cast<uint32_t>(base + o));
  return bits;
}

}  // namespace fp4kit
