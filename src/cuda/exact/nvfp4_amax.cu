// max |x| of a tensor (nvfp4_ref::amax): an integer max over amax_key() per thread, per warp, and
// one atomicMax per warp. Max is order-independent, so any reduction tree gives the reference bits.
#include "cuda/exact/float_chunk.cuh"
#include "cuda/exact/launch.cuh"
#include "cuda/weight_codecs.h"

namespace fp4kit::cuda {

namespace {

constexpr int kAmaxThreads = 256;
constexpr int kAmaxUnroll = 4;

template <SourceKind K>
__device__ __forceinline__ uint32_t chunk_max(const uint4& v, uint32_t m) {
  float x[FloatChunk<K>::kElements];
  FloatChunk<K>::decode(v, x);
#pragma unroll
  for (int e = 0; e < FloatChunk<K>::kElements; ++e) m = max(m, amax_key(x[e]));
  return m;
}

// `chunks` 16-byte chunks at `src`, then `tail_count` elements at `tail` that do not fill a chunk.
template <SourceKind K>
__global__ void __launch_bounds__(kAmaxThreads) nvfp4_amax_kernel(const uint4* __restrict__ src, size_t chunks,
                                                              const uint8_t* __restrict__ tail, unsigned tail_count,
                                                              uint32_t* __restrict__ amax) {
  const size_t stride = static_cast<size_t>(gridDim.x) * kAmaxThreads;
  size_t i = static_cast<size_t>(blockIdx.x) * kAmaxThreads + threadIdx.x;
  uint32_t m = 0;
  for (; i + (kAmaxUnroll - 1) * stride < chunks; i += kAmaxUnroll * stride) {
    uint4 v[kAmaxUnroll];
#pragma unroll
    for (int u = 0; u < kAmaxUnroll; ++u) v[u] = __ldcs(src + i + u * stride);
#pragma unroll
    for (int u = 0; u < kAmaxUnroll; ++u) m = chunk_max<K>(v[u], m);
  }
  for (; i < chunks; i += stride) m = chunk_max<K>(__ldcs(src + i), m);
  if (blockIdx.x == 0 && threadIdx.x < tail_count)
    m = max(m, amax_key(FloatChunk<K>::load_one(tail + threadIdx.x * FloatChunk<K>::kBytes)));
  m = __reduce_max_sync(0xFFFFFFFFu, m);
  if ((threadIdx.x & 31) == 0 && m != 0) atomicMax(amax, m);
}

}  // namespace

void nvfp4_amax(const void* src, DType dtype, size_t n, float* amax, StreamHandle stream, bool accumulate) {
  constexpr const char* kKernel = "nvfp4_amax";
  const std::string shape = "n=" + std::to_string(n) + " " + std::string(dtype_name(dtype));
  if (!is_quantizable_source(dtype)) throw_bad_argument(kKernel, shape, "the source must be BF16, F16 or F32");
  require_pointer(amax, "amax", kKernel, shape);
  require_aligned(amax, 4, "amax", kKernel, shape);
  if (n > 0) {
    require_pointer(src, "src", kKernel, shape);
    require_aligned(src, 16, "src", kKernel, shape);
  }
  if (!accumulate) check(cudaMemsetAsync(amax, 0, sizeof(float), stream), std::string(kKernel) + " [" + shape + "]: clear");
  if (n == 0) return;
  const size_t element_bytes = dtype_bits(dtype) / 8;
  const size_t chunks = n * element_bytes / 16;
  const auto* tail = static_cast<const uint8_t*>(src) + chunks * 16;
  const unsigned tail_count = static_cast<unsigned>((n * element_bytes - chunks * 16) / element_bytes);
  const unsigned blocks = grid_blocks(chunks, size_t{kAmaxThreads} * kAmaxUnroll);
  auto* out = reinterpret_cast<uint32_t*>(amax);
  const auto* chunk_src = static_cast<const uint4*>(src);
  with_source_kind(dtype, [&]<SourceKind K>() {
    nvfp4_amax_kernel<K><<<blocks, kAmaxThreads, 0, stream>>>(chunk_src, chunks, tail, tail_count, out);
  });
  check_launch(kKernel, shape);
}

}  // namespace fp4kit::cuda
