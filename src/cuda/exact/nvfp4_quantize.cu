// NVFP4 quantization (nvfp4_ref::quantize) of F32/BF16/F16 tensors with any of the three numerics.
// One thread per 16-element block: it loads the block's 64 (F32) or 32 bytes in 16-byte pieces (a
// warp covers 32 consecutive blocks), computes the block's E4M3 scale once for its 16 elements, and
// writes the 8 packed bytes and the scale byte. The scale of a finite F32 block is a count of the
// tensor's steps on its amax (formats/nvfp4_scale_steps.h) where they are usable, and its codes come
// from one reciprocal per block (from a per-tensor table of the scale bytes' divisors) where that
// gives the division's codes (e2m1_of_quotient.cuh). 16-bit sources keep the reference's scale
// arithmetic (the steps made BF16 at 65536x8192 7 % slower on an H100, 504 -> 542 us, and gained
// nothing on an H200), count thresholds on pairs of elements (nvfp4_code_pairs.cuh) under the scale
// bytes the tensor's tables cover, and take the F32 path's arithmetic for the rest.
#include "cuda/exact/e2m1_of_quotient.cuh"
#include "cuda/exact/float_chunk.cuh"
#include "cuda/exact/launch.cuh"
#include "cuda/exact/nvfp4_code_pairs.cuh"
#include "cuda/exact/nvfp4_scaling.cuh"
#include "cuda/weight_codecs.h"

namespace fp4kit::cuda {

namespace {

constexpr int kQuantizeThreads = 256;
constexpr int kQuantizeUnroll = 2;  // blocks in flight per thread

// A kernel argument: E2m1OfQuotient's reciprocal of each positive scale byte's divisor.
struct Nvfp4Reciprocals {
  float of_byte[128];
};

// The block's two packed words by the reciprocal (or the division) over its divisor.
__device__ __forceinline__ uint2 codes_by_quotient(const float (&x)[16], uint32_t scale, const Nvfp4BlockRule& rule,
                                                   const float* reciprocals = nullptr) {
  const float d = nvfp4_quant_divisor(scale, rule);
  const E2m1OfQuotient code = reciprocals ? E2m1OfQuotient(d, reciprocals[scale]) : E2m1OfQuotient(d);
  uint32_t word[2] = {0, 0};
#pragma unroll
  for (int e = 0; e < 16; ++e) word[e / 8] |= code(x[e]) << (4 * (e % 8));
  return make_uint2(word[0], word[1]);
}

__device__ __forceinline__ void store_block(size_t b, uint2 words, uint32_t scale, bool packed_8, uint8_t* packed,
                                            uint8_t* scales) {
  if (packed_8) {
    reinterpret_cast<uint2*>(packed)[b] = words;
  } else {
    uint16_t* out = reinterpret_cast<uint16_t*>(packed + b * 8);
    const uint32_t word[2] = {words.x, words.y};
#pragma unroll
    for (int h = 0; h < 4; ++h) out[h] = static_cast<uint16_t>(word[h / 2] >> (16 * (h % 2)));
  }
  scales[b] = static_cast<uint8_t>(scale);
}

// packed_8: the packed output is 8-byte aligned (one store per block), else 2-byte pieces.
template <SourceKind K>
__global__ void __launch_bounds__(kQuantizeThreads) nvfp4_quantize_kernel(const uint4* __restrict__ src, size_t blocks,
                                                                  Nvfp4BlockRule rule, Nvfp4ScaleSteps steps,
                                                                  Nvfp4CodePairTable table, Nvfp4Reciprocals recip,
                                                                  bool packed_8, uint8_t* __restrict__ packed,
                                                                  uint8_t* __restrict__ scales) {
  using Chunk = FloatChunk<K>;
  constexpr int kElements = Chunk::kElements;       // per 16-byte chunk
  constexpr int kChunks = 16 / kElements;            // chunks per NVFP4 block
  constexpr bool kPairs = K != SourceKind::F32;
  __shared__ Nvfp4CodePairShared shared_table;
  __shared__ float reciprocals[128];
  if constexpr (kPairs) {
    load_code_pair_table(table, shared_table);
    __syncthreads();
  } else {
    if (threadIdx.x < 128) reciprocals[threadIdx.x] = recip.of_byte[threadIdx.x];
    __syncthreads();
  }
  const size_t threads = static_cast<size_t>(gridDim.x) * kQuantizeThreads;
  for (size_t first = static_cast<size_t>(blockIdx.x) * kQuantizeThreads + threadIdx.x; first < blocks;
       first += threads * kQuantizeUnroll) {
    uint4 v[kQuantizeUnroll][kChunks];
#pragma unroll
    for (int u = 0; u < kQuantizeUnroll; ++u) {
      const size_t b = first + u * threads;
#pragma unroll
      for (int c = 0; c < kChunks; ++c) v[u][c] = b < blocks ? __ldcs(src + b * kChunks + c) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kQuantizeUnroll; ++u) {
      const size_t b = first + u * threads;
      if (b >= blocks) break;
      if constexpr (kPairs) {
        const uint32_t w[8] = {v[u][0].x, v[u][0].y, v[u][0].z, v[u][0].w, v[u][1].x, v[u][1].y, v[u][1].z, v[u][1].w};
        const CodePairBlock<K> block(w);
        const uint32_t scale = nvfp4_block_scale(block.amax(), rule);
        if (block.finite() && table.covers(scale)) {
          store_block(b, block.codes(shared_table, table, scale), scale, packed_8, packed, scales);
        } else {
          float x[16];
#pragma unroll
          for (int c = 0; c < kChunks; ++c) Chunk::decode(v[u][c], *reinterpret_cast<float(*)[kElements]>(x + c * kElements));
          store_block(b, codes_by_quotient(x, scale, rule), scale, packed_8, packed, scales);
        }
      } else {
        float x[16];
#pragma unroll
        for (int c = 0; c < kChunks; ++c) Chunk::decode(v[u][c], *reinterpret_cast<float(*)[kElements]>(x + c * kElements));
        // max |x| over the block's bits; every NaN's bits lie above +Inf's, and amax_key maps the max
        // to the one quiet NaN of nvfp4_ref::amax.
        uint32_t bits = 0;
#pragma unroll
        for (int e = 0; e < 16; ++e) bits = max(bits, __float_as_uint(x[e]) & 0x7FFFFFFFu);
        if (steps.usable && bits < 0x7F800000u) {
          const uint32_t scale = nvfp4_block_scale_by_steps(steps, bits);  // 0 … 0x7E
          store_block(b, codes_by_quotient(x, scale, rule, reciprocals), scale, packed_8, packed, scales);
        } else {
          const uint32_t scale = nvfp4_block_scale(__uint_as_float(amax_key(__uint_as_float(bits))), rule);
          store_block(b, codes_by_quotient(x, scale, rule), scale, packed_8, packed, scales);
        }
      }
    }
  }
}

}  // namespace

void nvfp4_quantize(const void* src, DType dtype, size_t n, const Nvfp4Scaling& scaling, uint8_t* packed,
                    uint8_t* scales, StreamHandle stream) {
  constexpr const char* kKernel = "nvfp4_quantize";
  const std::string shape = "n=" + std::to_string(n) + " " + std::string(dtype_name(dtype)) + " " +
                            std::string(numerics_name(scaling.numerics));
  if (!is_quantizable_source(dtype)) throw_bad_argument(kKernel, shape, "the source must be BF16, F16 or F32");
  if (n % kNvfp4BlockSize != 0) throw_bad_argument(kKernel, shape, "n must be a multiple of 16");
  if (n == 0) return;
  require_pointer(src, "src", kKernel, shape);
  require_pointer(packed, "packed", kKernel, shape);
  require_pointer(scales, "scales", kKernel, shape);
  require_aligned(src, 16, "src", kKernel, shape);
  require_aligned(packed, 2, "packed", kKernel, shape);
  const size_t blocks = n / kNvfp4BlockSize;
  const Nvfp4BlockRule rule = nvfp4_block_rule(scaling, host_default_nan());
  const unsigned grid = grid_blocks(blocks, size_t{kQuantizeThreads} * kQuantizeUnroll);
  const auto* chunk_src = static_cast<const uint4*>(src);
  const bool packed_8 = is_aligned(packed, 8);
  const Nvfp4ScaleSteps steps = dtype == DType::F32 ? nvfp4_scale_steps(scaling) : Nvfp4ScaleSteps{};
  Nvfp4Reciprocals recip{};
  if (dtype == DType::F32)
    for (int b = 0; b < 128; ++b)
      recip.of_byte[b] = e2m1_quotient_reciprocal(nvfp4_quant_divisor(static_cast<uint8_t>(b), scaling));
  const Nvfp4CodePairTable table = code_pair_table(nvfp4_code_thresholds(scaling, dtype));
  with_source_kind(dtype, [&]<SourceKind K>() {
    nvfp4_quantize_kernel<K><<<grid, kQuantizeThreads, 0, stream>>>(chunk_src, blocks, rule, steps, table, recip,
                                                                    packed_8, packed, scales);
  });
  check_launch(kKernel, shape);
}

}  // namespace fp4kit::cuda
