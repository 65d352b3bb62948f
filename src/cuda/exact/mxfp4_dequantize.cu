// MXFP4 dequantization (mxfp4_ref): FP4_TABLE[q] * 2^(e-127) in f32, or that rounded to BF16.
// Each thread writes one 16-byte output vector per step (4 f32 or 8 bf16), so a warp's stores are
// 512 contiguous bytes; the 2 or 4 packed bytes it reads are contiguous across the warp as well.
#include "cuda/codecs.cuh"
#include "cuda/exact/host_nan.cuh"
#include "cuda/exact/launch.cuh"
#include "cuda/weight_codecs.h"

namespace fp4kit::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 4;

// Output element types: f32 (4 per vector) or bf16 bits (8 per vector).
template <class Out>
struct Mxfp4Vector {
  static constexpr int kElements = 16 / sizeof(Out);
  using PackedWord = std::conditional_t<kElements == 4, uint16_t, uint32_t>;  // kElements/2 bytes

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
__global__ void __launch_bounds__(kThreads) mxfp4_dequantize_kernel(const uint8_t* __restrict__ packed,
                                                                    const uint8_t* __restrict__ scales, size_t vectors,
                                                                    uint4* __restrict__ out, uint32_t default_nan) {
  using V = Mxfp4Vector<Out>;
  constexpr int kVectorsPerGroup = 32 / V::kElements;
  const auto* words = reinterpret_cast<const typename V::PackedWord*>(packed);
  const size_t stride = static_cast<size_t>(gridDim.x) * kThreads;
  for (size_t base = static_cast<size_t>(blockIdx.x) * kThreads + threadIdx.x; base < vectors;
       base += kUnroll * stride) {
    uint32_t word[kUnroll];
    uint32_t scale_byte[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const size_t v = base + u * stride;
      word[u] = v < vectors ? static_cast<uint32_t>(__ldcs(words + v)) : 0u;
      scale_byte[u] = v < vectors ? scales[v / kVectorsPerGroup] : 0u;
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const size_t v = base + u * stride;
      if (v < vectors) __stcs(out + v, V::decode(word[u], e8m0_to_float(scale_byte[u]), default_nan));
    }
  }
}

template <class Out>
void launch(const char* kernel, const uint8_t* packed, const uint8_t* scales, size_t n, Out* out,
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
  const unsigned blocks = grid_blocks(vectors, size_t{kThreads} * kUnroll);
  mxfp4_dequantize_kernel<Out><<<blocks, kThreads, 0, stream>>>(packed, scales, vectors, reinterpret_cast<uint4*>(out),
                                                                host_default_nan());
  check_launch(kernel, shape);
}

}  // namespace

void mxfp4_dequantize_f32(const uint8_t* packed, const uint8_t* scales, size_t n, float* out, StreamHandle stream) {
  launch("mxfp4_dequantize_f32", packed, scales, n, out, stream);
}

void mxfp4_dequantize_bf16(const uint8_t* packed, const uint8_t* scales, size_t n, uint16_t* out,
                           StreamHandle stream) {
  launch("mxfp4_dequantize_bf16", packed, scales, n, out, stream);
}

}  // namespace fp4kit::cuda
