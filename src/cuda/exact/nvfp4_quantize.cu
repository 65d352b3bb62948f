// NVFP4 quantization (nvfp4_ref::quantize) of F32/BF16/F16 tensors with any of the three numerics.
// Each thread takes 16-byte chunks of the source (a warp reads 512 contiguous bytes per load); the
// 2 or 4 lanes that hold one 16-element block exchange their maxima with shuffles, each computes
// the block's E4M3 scale, and writes its own packed bytes (the first lane also the scale byte). The
// codes come from one reciprocal per block where that gives the division's codes (e2m1_of_quotient.cuh).
#include "cuda/exact/e2m1_of_quotient.cuh"
#include "cuda/exact/float_chunk.cuh"
#include "cuda/exact/launch.cuh"
#include "cuda/exact/nvfp4_scaling.cuh"
#include "cuda/weight_codecs.h"

namespace fp4kit::cuda {

namespace {

constexpr int kQuantizeThreads = 256;
constexpr int kQuantizeUnroll = 4;  // chunks in flight per thread

template <SourceKind K>
__global__ void __launch_bounds__(kQuantizeThreads) nvfp4_quantize_kernel(const uint4* __restrict__ src, size_t chunks,
                                                                  Nvfp4BlockRule rule, uint8_t* __restrict__ packed,
                                                                  uint8_t* __restrict__ scales) {
  using Chunk = FloatChunk<K>;
  constexpr int kElements = Chunk::kElements;                  // per chunk
  constexpr int kLanesPerBlock = 16 / kElements;                // chunks per NVFP4 block
  using PackedWord = std::conditional_t<kElements == 4, uint16_t, uint32_t>;  // kElements/2 bytes
  constexpr size_t kTile = 32 * kQuantizeUnroll;                        // chunks per warp and pass

  const unsigned lane = threadIdx.x & 31u;
  const size_t warp = (static_cast<size_t>(blockIdx.x) * kQuantizeThreads + threadIdx.x) / 32;
  const size_t warps = static_cast<size_t>(gridDim.x) * kQuantizeThreads / 32;
  // `tile` is the same for every lane of a warp, so the whole warp runs each pass and the shuffles
  // see all lanes; lanes past the end compute on zeros and store nothing.
  for (size_t tile = warp * kTile; tile < chunks; tile += warps * kTile) {
    uint4 v[kQuantizeUnroll];
#pragma unroll
    for (int u = 0; u < kQuantizeUnroll; ++u) {
      const size_t c = tile + u * 32 + lane;
      v[u] = c < chunks ? __ldcs(src + c) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kQuantizeUnroll; ++u) {
      const size_t c = tile + u * 32 + lane;
      float x[kElements];
      Chunk::decode(v[u], x);
      uint32_t key = 0;
#pragma unroll
      for (int e = 0; e < kElements; ++e) key = max(key, amax_key(x[e]));
#pragma unroll
      for (int offset = 1; offset < kLanesPerBlock; offset <<= 1)
        key = max(key, __shfl_xor_sync(0xFFFFFFFFu, key, offset));
      const uint32_t scale = nvfp4_block_scale(__uint_as_float(key), rule);
      const E2m1OfQuotient code(nvfp4_quant_divisor(scale, rule));
      uint32_t bits = 0;
#pragma unroll
      for (int e = 0; e < kElements; ++e) bits |= code(x[e]) << (4 * e);
      if (c < chunks) {
        reinterpret_cast<PackedWord*>(packed)[c] = static_cast<PackedWord>(bits);
        if (lane % kLanesPerBlock == 0) scales[c / kLanesPerBlock] = static_cast<uint8_t>(scale);
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
  const size_t element_bytes = dtype_bits(dtype) / 8;
  require_aligned(packed, element_bytes == 4 ? 2 : 4, "packed", kKernel, shape);
  const size_t chunks = n * element_bytes / 16;
  const Nvfp4BlockRule rule = nvfp4_block_rule(scaling, host_default_nan());
  const unsigned blocks = grid_blocks(chunks, size_t{kQuantizeThreads} * kQuantizeUnroll);
  const auto* chunk_src = static_cast<const uint4*>(src);
  with_source_kind(dtype, [&]<SourceKind K>() {
    nvfp4_quantize_kernel<K><<<blocks, kQuantizeThreads, 0, stream>>>(chunk_src, chunks, rule, packed, scales);
  });
  check_launch(kKernel, shape);
}

}  // namespace fp4kit::cuda
