#pragma once
// NVFP4 codes of a BF16/F16 block as counts of thresholds (formats/nvfp4_code_thresholds.h), two
// elements at a time: the 32-bit words of the source hold an even element in the low half and the
// next one in the high half, and sm_90's 16x2 integer instructions compare both halves at once.
// Per pair: seven fused add-min-relu (one per threshold, each 0 or 1 per half), their sum, the sign
// as one more, and the two nibbles into one byte: ~14 instructions for two codes, against ~26 for
// one code by the reciprocal. Where the 16x2 instructions are not native (below sm_90) they are
// emulated by CUDA's intrinsics, correct but slow.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/exact/float_chunk.cuh"
#include "formats/nvfp4_code_thresholds.h"

namespace fp4kit::cuda {

// A kernel argument: the tables as 16x2 words, (1 - threshold) in both halves.
struct Nvfp4CodePairTable {
  uint32_t one_minus_first[8][8];  // [scale mantissa][threshold], slot 7 unused
  uint32_t byte_lo, byte_hi;       // covered scale bytes; none when byte_lo > byte_hi
  uint32_t base_exponent, mantissa_bits;

  __host__ __device__ bool covers(uint32_t scale) const { return scale - byte_lo <= byte_hi - byte_lo && byte_lo <= byte_hi; }
};

inline Nvfp4CodePairTable code_pair_table(const Nvfp4CodeThresholds& t) {
  Nvfp4CodePairTable p{};
  for (int j = 0; j < 8; ++j)
    for (int k = 0; k < Nvfp4CodeThresholds::kThresholds; ++k)
      p.one_minus_first[j][k] = ((1u - t.first[j][k]) & 0xFFFFu) * 0x10001u;
  p.byte_lo = t.byte_lo;
  p.byte_hi = t.byte_hi;
  p.base_exponent = t.base_exponent;
  p.mantissa_bits = t.mantissa_bits;
  return p;
}

// The tables in shared memory, where a thread reads its block's row by its scale's mantissa.
struct Nvfp4CodePairShared {
  uint4 row[8][2];
};

// Every thread of the block calls it; a __syncthreads() must follow.
__device__ __forceinline__ void load_code_pair_table(const Nvfp4CodePairTable& t, Nvfp4CodePairShared& s) {
  if (threadIdx.x < 64) reinterpret_cast<uint32_t*>(s.row)[threadIdx.x] = t.one_minus_first[threadIdx.x / 8][threadIdx.x % 8];
}

// Half by half: max(min(a + b, c), 0) as signed 16-bit values, the sum wrapping (one instruction on
// sm_90).
__device__ __forceinline__ uint32_t add_min_relu_16x2(uint32_t a, uint32_t b, uint32_t c) { return __viaddmin_s16x2_relu(a, b, c); }

__device__ __forceinline__ uint32_t add_16x2(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  uint32_t r;
  asm("add.s16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
  return r;
#else
  return __vadd2(a, b);
#endif
}

template <SourceKind K>
class CodePairBlock {
  static_assert(K == SourceKind::BF16 || K == SourceKind::F16);
  static constexpr uint32_t kInf = K == SourceKind::BF16 ? 0x7F80u : 0x7C00u;  // magnitude bits

 public:
  __device__ explicit CodePairBlock(const uint32_t (&w)[8]) {
    uint32_t m = 0;
#pragma unroll
    for (int p = 0; p < 8; ++p) {
      w_[p] = w[p];
      a_[p] = w[p] & 0x7FFF7FFFu;
      m = __vmaxu2(m, a_[p]);
    }
    max_bits_ = max(m & 0xFFFFu, m >> 16);
  }

  // nvfp4_ref::amax of the block: the largest |x|, or the quiet NaN 0x7FC00000 when any x is NaN.
  __device__ float amax() const {
    if (max_bits_ > kInf) return __uint_as_float(0x7FC00000u);
    if constexpr (K == SourceKind::BF16) return __uint_as_float(max_bits_ << 16);
    else return f16_bits_to_float(static_cast<uint16_t>(max_bits_));
  }

  __device__ bool finite() const { return max_bits_ < kInf; }

  // The two packed words under a covered scale byte.
  __device__ uint2 codes(const Nvfp4CodePairShared& s, const Nvfp4CodePairTable& t, uint32_t scale) const {
    const uint32_t j = scale & 7u;
    const int n = static_cast<int>(scale >> 3) - static_cast<int>(t.base_exponent);
    // -(n << mantissa_bits) in both halves: the thresholds of this exponent are the table's shifted.
    const uint32_t shift = (static_cast<uint32_t>(-(n << t.mantissa_bits)) & 0xFFFFu) * 0x10001u;
    const uint4 r0 = s.row[j][0], r1 = s.row[j][1];
    const uint32_t c[7] = {add_16x2(r0.x, shift), add_16x2(r0.y, shift), add_16x2(r0.z, shift), add_16x2(r0.w, shift),
                           add_16x2(r1.x, shift), add_16x2(r1.y, shift), add_16x2(r1.z, shift)};
    uint32_t z[8];
#pragma unroll
    for (int p = 0; p < 8; ++p) {
      uint32_t acc = 0;
#pragma unroll
      for (int k = 0; k < 7; ++k) acc += add_min_relu_16x2(a_[p], c[k], 0x00010001u);  // |x| >= threshold k
      // x < 0 (not -0): the half plus 0x8000 wraps to |x| only for a set sign bit; then |x| >= 1.
      const uint32_t negative = add_min_relu_16x2(w_[p], 0x80008000u, 0x00010001u);
      const uint32_t y = acc + (negative << 3);  // each half's nibble
      z[p] = y + (y >> 12);                      // byte 0: the low half's nibble, the high half's above it
    }
    return make_uint2(__byte_perm(__byte_perm(z[0], z[1], 0x0040), __byte_perm(z[2], z[3], 0x0040), 0x5410),
                      __byte_perm(__byte_perm(z[4], z[5], 0x0040), __byte_perm(z[6], z[7], 0x0040), 0x5410));
  }

 private:
  uint32_t w_[8], a_[8];
  uint32_t max_bits_;
};

}  // namespace fp4kit::cuda
