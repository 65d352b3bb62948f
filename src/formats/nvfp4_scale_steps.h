#pragma once
// The NVFP4 block scale byte (nvfp4_block_scale) of a finite block amax without a division: for one
// tensor's scaling it is a count of steps on the amax's bits. Why: the byte is a monotone function of
// amax (a correctly rounded division or product by positive constants, a clamp and E4M3's rounding,
// all monotone) past a prefix of tiny amax where it takes the zero block's byte; every step raises it
// by one; and where the E4M3 result is normal, doubling amax doubles every intermediate exactly, so
// the step to byte b + 8 lies exactly one binade (2^23 in the bits) above the step to byte b. So a
// few steps below E4M3's normal range and the eight steps of one binade give them all. Built once per
// tensor with the reference's own arithmetic; the GPU quantize kernel counts them for F32 sources
// (cuda/exact/nvfp4_quantize.cu), and takes its exact path where `usable` is false.
#include <cstdint>
#include <vector>

#include "formats/nvfp4.h"

namespace fp4kit {

struct Nvfp4ScaleSteps {
  static constexpr int kLowSteps = 8;
  static constexpr uint32_t kNever = 0xFFFFFFFFu;  // a step no finite amax reaches

  bool usable = false;
  uint8_t zero_byte = 0;   // the byte of every amax whose bits are below `zero_below`
  uint8_t first_byte = 0;  // the byte at `zero_below`, before any step
  uint8_t last_byte = 0;   // the byte of the largest finite amax, after the last step
  uint8_t periodic_byte = 0;  // the byte at period_first (first_byte + the low steps + 1)
  uint32_t zero_below = 0;
  // Bits of the steps below the periodic ones (ascending; unused: kNever).
  uint32_t low[kLowSteps] = {kNever, kNever, kNever, kNever, kNever, kNever, kNever, kNever};
  // The periodic steps: period_first + 2^23 n + period_offset[j], n = 0, 1, …, each raising the byte
  // by one until last_byte (period_offset[0] = 0, ascending, below 2^23; kNever: none).
  uint32_t period_first = kNever;
  uint32_t period_offset[8] = {};
};

// The steps for `scaling`; not usable for a global scale that is not finite and positive, or where
// the steps do not have this shape (then the kernel computes the scale as the reference does).
Nvfp4ScaleSteps nvfp4_scale_steps(const Nvfp4Scaling& scaling);

// The byte of the non-negative finite amax with bits `amax_bits` from the steps alone, as the kernel
// computes it.
uint8_t nvfp4_scale_from_steps(const Nvfp4ScaleSteps& steps, uint32_t amax_bits);

// The finite amax bits where the byte may change (zero_below and every step), ascending: where tests
// put block maxima.
std::vector<uint32_t> nvfp4_scale_step_bits(const Nvfp4ScaleSteps& steps);

}  // namespace fp4kit
