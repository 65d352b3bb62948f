// MXFP4 dequantization (mxfp4_ref): FP4_TABLE[q] * 2^(e-127) in f32, or that rounded to BF16.
// Each thread writes one 16-byte output vector per step (4 f32 or 8 bf16), so a warp's stores are
// 512 contiguous bytes; the 2 or 4 packed bytes it reads are contiguous across the warp as well.
// Scale bytes 2..252 take a table path: the product of an E2M1 value (2 significant bits, 0.5..6) and
// 2^(e-127) is then an exact BF16 normal, so a PRMT lookup and one BF16 multiply give the reference's
// bits; so do vectors of zero magnitudes under any byte but 0xFF. The rest compute element by element.
#include "cuda/codecs.cuh"
#include "cuda/exact/host_nan.cuh"
#include "cuda/exact/launch.cuh"
#include "cuda/weight_codecs.h"
#include "cuda/weight_decode.cuh"

namespace fp4kit::cuda {

namespace {

constexpr int kMxfp4Threads = 256;
constexpr int kMxfp4Unroll = 4;

// Scale bytes whose products with every E2M1 value are BF16 (and f32) normals: 0.5*2^(e-127) >= 2^-126
// and 6*2^(e-127) < 2^128.
__device__ __forceinline__ bool exact_product_byte(uint32_t byte) { return byte - 2u <= 250u; }

// Four E2M1 codes (the low 16 bits of q, element 0 in the low nibble) -> two BF16 pairs (element 2i
// in the low half of pair i) of the values times 2^(byte-127), for exact_product_byte(byte). Codes 0
// and 0x8 both give +0.0, as the reference's table.
__device__ __forceinline__ void e2m1x4_scaled_bf16x2(uint32_t q, uint32_t scale_pair, uint32_t& pair0, uint32_t& pair1) {
  // Magnitude code m -> BF16 bits of 0, 0.5, 1, 1.5, 2, 3, 4, 6: low bytes and high bytes.
  constexpr uint32_t kLowBytes0 = 0xC0800000u, kLowBytes1 = 0xC0804000u;  // codes 0-3, 4-7
  constexpr uint32_t kHighBytes0 = 0x3F3F3F00u, kHighBytes1 = 0x40404040u;
  const uint32_t magnitudes = q & 0x7777u;
  const uint32_t lo = byte_perm(kLowBytes0, kLowBytes1, magnitudes);
  uint32_t hi = byte_perm(kHighBytes0, kHighBytes1, magnitudes);
  // A selector nibble with bit 3 set replicates the top bit of the selected 0x80 byte: 0xFF for a
  // negative code, 0x80 otherwise; bit 6 moved up is the sign. It goes only on nonzero magnitudes
  // (a high byte of 0x3F or 0x40: adding 0x7F sets its top bit, without carrying into the next).
  const uint32_t sign_bytes = byte_perm(0x80808080u, 0x80808080u, q);
  hi |= (sign_bytes << 1) & (hi + 0x7F7F7F7Fu) & 0x80808080u;
  pair0 = bf16x2_mul(byte_perm(lo, hi, 0x5140u), scale_pair);  // elements 0, 1
  pair1 = bf16x2_mul(byte_perm(lo, hi, 0x7362u), scale_pair);  // elements 2, 3
}

// Output element types: f32 (4 per vector) or bf16 bits (8 per vector).
template <class Out>
struct Mxfp4Vector {
  static constexpr int kElements = 16 / sizeof(Out);
  using PackedWord = std::conditional_t<kElements == 4, uint16_t, uint32_t>;  // kElements/2 bytes

  // For exact_product_byte(byte), or all magnitudes zero and byte != 0xFF: the products are exact, so
  // the BF16 pairs are the f32 results too.
  __device__ __forceinline__ static uint4 decode_exact_product(uint32_t packed, uint32_t byte) {
    const uint32_t scale_pair = (byte << 7) * 0x00010001u;  // 2^(byte-127) in both halves
    uint32_t p[4];
    e2m1x4_scaled_bf16x2(packed, scale_pair, p[0], p[1]);
    if constexpr (kElements == 4) {
      return make_uint4(p[0] << 16, p[0] & 0xFFFF0000u, p[1] << 16, p[1] & 0xFFFF0000u);
    } else {
      e2m1x4_scaled_bf16x2(packed >> 16, scale_pair, p[2], p[3]);
      return make_uint4(p[0], p[1], p[2], p[3]);
    }
  }

  __device__ __forceinline__ static uint4 decode(uint32_t packed, float scale, uint32_t default_nan) {
    uint32_t w[4];
    if constexpr (kElements == 4) {
#pragma unroll
      for (int i = 0; i < 4; ++i)  // f32: the product's NaN as the CPU makes it (scale byte 0xFF)
        w[i] = __float_as_uint(host_mul(e2m1_to_float((packed >> (4 * i)) & 0xFu), scale, default_nan));
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint32_t lo = float_to_bf16_bits(__fmul_rn(e2m1_to_float((packed >> (8 * i)) & 0xFu), scale));
        const uint32_t hi = float_to_bf16_bits(__fmul_rn(e2m1_to_float((packed >> (8 * i + 4)) & 0xFu), scale));
        w[i] = lo | (hi << 16);
      }
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
  }
};

template <class Out>
__global__ void __launch_bounds__(kMxfp4Threads) mxfp4_dequantize_kernel(const uint8_t* __restrict__ packed,
                                                                    const uint8_t* __restrict__ scales, size_t vectors,
                                                                    uint4* __restrict__ out, uint32_t default_nan) {
  using V = Mxfp4Vector<Out>;
  constexpr int kVectorsPerGroup = 32 / V::kElements;
  const auto* words = reinterpret_cast<const typename V::PackedWord*>(packed);
  const size_t stride = static_cast<size_t>(gridDim.x) * kMxfp4Threads;
  for (size_t base = static_cast<size_t>(blockIdx.x) * kMxfp4Threads + threadIdx.x; base < vectors;
       base += kMxfp4Unroll * stride) {
    uint32_t word[kMxfp4Unroll];
    uint32_t scale_byte[kMxfp4Unroll];
#pragma unroll
    for (int u = 0; u < kMxfp4Unroll; ++u) {
      const size_t v = base + u * stride;
      word[u] = v < vectors ? static_cast<uint32_t>(__ldcs(words + v)) : 0u;
      scale_byte[u] = v < vectors ? scales[v / kVectorsPerGroup] : 0u;
    }
#pragma unroll
    for (int u = 0; u < kMxfp4Unroll; ++u) {
      const size_t v = base + u * stride;
      // Zero magnitudes (codes 0 and 0x8) give +0.0 under every scale byte but 0xFF (NaN), so the
      // zero groups of a checkpoint (often scale byte 0) take the table path too.
      const bool zeros = (word[u] & 0x77777777u) == 0 && scale_byte[u] != 0xFFu;
      if (v < vectors)
        __stcs(out + v, exact_product_byte(scale_byte[u]) || zeros
                            ? V::decode_exact_product(word[u], scale_byte[u])
                            : V::decode(word[u], e8m0_to_float(scale_byte[u]), default_nan));
    }
  }
}

template <class Out>
void launch_mxfp4_dequantize(const char* kernel, const uint8_t* packed, const uint8_t* scales, size_t n, Out* out,
            StreamHandle stream) {
  const std::string shape = "n=" + std::to_string(n);
  if (n % kMxfp4BlockSize != 0) throw_bad_argument(kernel, shape, "n must be a multiple of 32");
  if (n == 0) return;
  require_pointer(packed, "packed", kernel, shape);
  require_pointer(scales, "scales", kernel, shape);
  require_pointer(out, "out", kernel, shape);
  require_aligned(packed, 16 / sizeof(Out) / 2, "packed", kernel, shape);
  require_aligned(out, 16, "out", kernel, shape);
  const size_t vectors = n * sizeof(Out) / 16;
  const unsigned blocks = grid_blocks(vectors, size_t{kMxfp4Threads} * kMxfp4Unroll);
  mxfp4_dequantize_kernel<Out><<<blocks, kMxfp4Threads, 0, stream>>>(packed, scales, vectors, reinterpret_cast<uint4*>(out),
                                                                host_default_nan());
  check_launch(kernel, shape);
}

}  // namespace

void mxfp4_dequantize_f32(const uint8_t* packed, const uint8_t* scales, size_t n, float* out, StreamHandle stream) {
  launch_mxfp4_dequantize("mxfp4_dequantize_f32", packed, scales, n, out, stream);
}

void mxfp4_dequantize_bf16(const uint8_t* packed, const uint8_t* scales, size_t n, uint16_t* out,
                           StreamHandle stream) {
  launch_mxfp4_dequantize("mxfp4_dequantize_bf16", packed, scales, n, out, stream);
}

}  // namespace fp4kit::cuda
