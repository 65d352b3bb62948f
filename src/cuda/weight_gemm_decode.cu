// The decode path of the weight GEMMs: few rows of x against a weight streamed once from memory.
// A block is 4 warps; warp w owns 8 weight rows (output columns). Within a quad of lanes (same
// weight row), lane j loads, per 128 k, the 32 elements [32j, 32j + 32): one 16-byte load for FP4,
// 32 bytes for FP8, 64 for BF16, several chunks in flight per iteration. The decoded pairs feed
// mma.sync m16n8k16 directly: for each mma, lane j supplies 4 consecutive k of its own chunk as
// the k slots {2j, 2j+1, 2j+8, 2j+9}, and reads the matching x elements (rows g and g+8) from
// shared memory with one 8-byte load each. The sum over k is the same set of products in another
// order. FP8 block scales multiply the F32 sums of each 128-k step (the four chunks of one mma
// step lie in one 128-block); NVFP4's global scale multiplies the result.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "base/error.h"
#include "cuda/check.cuh"
#include "cuda/mma_sm80.cuh"
#include "cuda/weight_decode.cuh"
#include "cuda/weight_gemm_kernels.cuh"

namespace fp4kit::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int64_t kSegment = 2048;  // k staged in shared memory at a time
constexpr int kXPad = 8;            // elements of padding per staged row (bank spread)
constexpr int kXStride = static_cast<int>(kSegment) + kXPad;

template <WeightFormat F>
struct DecodeFormat {
  // 32-bit words of one lane's 32-element chunk, and chunks per lane per iteration.
  static constexpr int kWords = F == WeightFormat::Bf16 ? 16 : (F == WeightFormat::Fp8Block ? 8 : 4);
  static constexpr int kChunks = F == WeightFormat::Bf16 ? 1 : (F == WeightFormat::Fp8Block ? 2 : 4);
  static constexpr int64_t kStep = 128 * kChunks;  // k per iteration of a quad
};

// One lane's chunk of 32 elements of row `row` starting at k = kc (zeros past K or past the last row).
// FP4 rows are K/2 bytes: with K % 32 == 16 they are only 8-byte aligned (kAligned16 false).
template <WeightFormat F, bool kAligned16>
__device__ __forceinline__ void load_chunk(const uint8_t* row, int64_t kc, int64_t K, bool row_ok, uint32_t* w) {
  constexpr int kWords = DecodeFormat<F>::kWords;
#pragma unroll
  for (int i = 0; i < kWords; ++i) w[i] = 0;
  if (!row_ok || kc >= K) return;
  if constexpr (F == WeightFormat::Nvfp4 || F == WeightFormat::Mxfp4) {
    const uint8_t* p = row + kc / 2;
    if (kAligned16 && kc + 32 <= K) {
      const uint4 v = load_streaming_16(p);
      w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
    } else {  // 8-byte halves; the second exists when the chunk is whole (K % 16 == 0)
      const uint2 v0 = load_streaming_8(p);
      w[0] = v0.x, w[1] = v0.y;
      if (kc + 32 <= K) {
        const uint2 v1 = load_streaming_8(p + 8);
        w[2] = v1.x, w[3] = v1.y;
      }
    }
  } else {
    constexpr int kBytesPerElement = F == WeightFormat::Bf16 ? 2 : 1;
    constexpr int kElementsPer16 = 16 / kBytesPerElement;
#pragma unroll
    for (int q = 0; q < kWords / 4; ++q) {
      if (kc + (q + 1) * kElementsPer16 <= K) {
        const uint4 v = load_streaming_16(row + (kc + q * kElementsPer16) * kBytesPerElement);
        w[4 * q] = v.x, w[4 * q + 1] = v.y, w[4 * q + 2] = v.z, w[4 * q + 3] = v.w;
      }
    }
  }
}

// The scale bytes of that chunk (0 where past K or past the last row, so padding decodes to 0, not
// NaN): NVFP4 two E4M3 bytes (low byte first), MXFP4 one E8M0 byte. FP8 and BF16: none.
template <WeightFormat F>
__device__ __forceinline__ uint32_t load_chunk_scales(const GemmWeight& w, int64_t n, int64_t kc, int64_t K,
                                                      bool row_ok) {
  if (!row_ok || kc >= K) return 0;
  const uint8_t* s = static_cast<const uint8_t*>(w.scales);
  if constexpr (F == WeightFormat::Nvfp4) {
    const int64_t i = n * (K / 16) + kc / 16;
    uint32_t v = __ldg(s + i);
    if (kc + 16 < K) v |= static_cast<uint32_t>(__ldg(s + i + 1)) << 8;
    return v;
  } else if constexpr (F == WeightFormat::Mxfp4) {
    return __ldg(s + n * (K / 32) + kc / 32);
  }
  return 0;
}

// 32 elements -> 16 BF16 pairs (pair p = elements 2p, 2p+1 of the chunk).
template <WeightFormat F>
__device__ __forceinline__ void decode_chunk(const uint32_t* w, uint32_t scales, uint32_t* pairs) {
  if constexpr (F == WeightFormat::Nvfp4) {
    nvfp4x16_to_bf16x2(w[0], w[1], scales & 0xFFu, pairs);
    nvfp4x16_to_bf16x2(w[2], w[3], scales >> 8, pairs + 8);
  } else if constexpr (F == WeightFormat::Mxfp4) {
    mxfp4x32_to_bf16x2(w, scales, pairs);
  } else if constexpr (F == WeightFormat::Fp8Block) {
#pragma unroll
    for (int i = 0; i < 8; ++i) e4m3x4_to_bf16x2(w[i], pairs[2 * i], pairs[2 * i + 1]);
  } else {
#pragma unroll
    for (int i = 0; i < 16; ++i) pairs[i] = w[i];
  }
}

// One quad lane's loads for one k step: its chunks and their scale bytes.
template <WeightFormat F>
struct StepData {
  uint32_t w[DecodeFormat<F>::kChunks][DecodeFormat<F>::kWords];
  uint32_t s[DecodeFormat<F>::kChunks];
};

template <WeightFormat F, bool kAligned16>
__device__ __forceinline__ void load_step(StepData<F>& d, const uint8_t* row, const GemmWeight& w, int64_t n,
                                          int64_t kb, int64_t K, bool row_ok, int j) {
#pragma unroll
  for (int u = 0; u < DecodeFormat<F>::kChunks; ++u) {
    const int64_t kc = kb + 128 * u + 32 * j;
    load_chunk<F, kAligned16>(row, kc, K, row_ok, d.w[u]);
    d.s[u] = load_chunk_scales<F>(w, n, kc, K, row_ok);
  }
}

template <WeightFormat F, bool kSwiGlu, bool kAligned16>
__global__ void __launch_bounds__(kThreads, 4) weight_gemm_decode_kernel(WeightGemmArgs a) {
  using Fmt = DecodeFormat<F>;
  extern __shared__ uint4 shared_words[];
  uint16_t* xs = reinterpret_cast<uint16_t*>(shared_words);

  GroupTile tile;
  // One tile per non-empty group (a tile as tall as all rows); every thread finds the same one.
  if (!find_group_tile(a, a.rows, blockIdx.z, tile)) return;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, j = lane & 3;
  const int64_t N = a.n, K = a.k;
  const int64_t n0 = (static_cast<int64_t>(blockIdx.x) * kWarps + warp) * 8;
  const bool warp_active = n0 < N;
  const int64_t n = n0 + g;
  const bool row_ok = n < N;

  const GemmWeight wg = gate_weight(a, tile.group);
  GemmWeight wu;
  if constexpr (kSwiGlu) wu = a.ups[tile.group];
  constexpr int kBytesPerElementX2 = F == WeightFormat::Bf16 ? 4 : (F == WeightFormat::Fp8Block ? 2 : 1);
  const int64_t row_bytes = K * kBytesPerElementX2 / 2;
  const uint8_t* gate_row = static_cast<const uint8_t*>(wg.data) + (row_ok ? n : 0) * row_bytes;
  const uint8_t* up_row = nullptr;
  if constexpr (kSwiGlu) up_row = static_cast<const uint8_t*>(wu.data) + (row_ok ? n : 0) * row_bytes;
  const int64_t k_begin = static_cast<int64_t>(blockIdx.y) * a.k_per_split;
  const int64_t k_end = min(K, k_begin + a.k_per_split);
  const int64_t scale_cols = (K + 127) / 128;  // FP8 block scales per row block

  for (int64_t m0 = tile.begin; m0 < tile.end; m0 += kDecodeRows) {
    const int rows_here = static_cast<int>(tile.end - m0 < kDecodeRows ? tile.end - m0 : kDecodeRows);
    float acc[4] = {0.f, 0.f, 0.f, 0.f}, acc_up[4] = {0.f, 0.f, 0.f, 0.f};

    for (int64_t seg = k_begin; seg < k_end; seg += kSegment) {
      const int64_t seg_end = min(k_end, seg + kSegment);
      // The first step's weight loads go out before x is staged: they do not depend on it.
      StepData<F> gate_now, gate_next, up_now, up_next;
      if (warp_active) {
        load_step<F, kAligned16>(gate_now, gate_row, wg, n, seg, K, row_ok, j);
        if constexpr (kSwiGlu) load_step<F, kAligned16>(up_now, up_row, wu, n, seg, K, row_ok, j);
      }
      // Staged length: whole iterations, zeros past the segment.
      const int64_t staged = (seg_end - seg + Fmt::kStep - 1) / Fmt::kStep * Fmt::kStep;
      __syncthreads();  // the previous segment's readers are done
      const int vectors_per_row = static_cast<int>(staged / 8);
      for (int i = threadIdx.x; i < rows_here * vectors_per_row; i += kThreads) {
        const int r = i / vectors_per_row, c = i % vectors_per_row;
        const int64_t k = seg + 8 * c;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (k < seg_end) v = *reinterpret_cast<const uint4*>(a.x + (m0 + r) * K + k);
        *reinterpret_cast<uint4*>(xs + r * kXStride + 8 * c) = v;
      }
      __syncthreads();
      if (!warp_active) continue;

      for (int64_t kb = seg; kb < seg_end; kb += Fmt::kStep) {
        const bool more = kb + Fmt::kStep < seg_end;
        // Without the SwiGLU pair the next step's loads are in flight during this step's math
        // (with it, the registers of a second copy would not fit 4 blocks per multiprocessor).
        if constexpr (!kSwiGlu) {
          if (more) load_step<F, kAligned16>(gate_next, gate_row, wg, n, kb + Fmt::kStep, K, row_ok, j);
        }
#pragma unroll
        for (int u = 0; u < Fmt::kChunks; ++u) {
          const int64_t kc = kb + 128 * u + 32 * j;
          uint32_t bg[16], bu[kSwiGlu ? 16 : 1];
          decode_chunk<F>(gate_now.w[u], gate_now.s[u], bg);
          if constexpr (kSwiGlu) decode_chunk<F>(up_now.w[u], up_now.s[u], bu);
          float tg[4] = {0.f, 0.f, 0.f, 0.f}, tu[4] = {0.f, 0.f, 0.f, 0.f};
          float* dg = F == WeightFormat::Fp8Block ? tg : acc;
          float* du = F == WeightFormat::Fp8Block ? tu : acc_up;
          const uint16_t* xk = xs + (kc - seg);
#pragma unroll
          for (int s = 0; s < 8; ++s) {
            uint32_t afrag[4] = {0u, 0u, 0u, 0u};
            if (g < rows_here) {
              const uint2 v = *reinterpret_cast<const uint2*>(xk + g * kXStride + 4 * s);
              afrag[0] = v.x, afrag[2] = v.y;
            }
            if (g + 8 < rows_here) {
              const uint2 v = *reinterpret_cast<const uint2*>(xk + (g + 8) * kXStride + 4 * s);
              afrag[1] = v.x, afrag[3] = v.y;
            }
            const uint32_t b[2] = {bg[2 * s], bg[2 * s + 1]};
            mma_bf16_16816(dg, afrag, b);
            if constexpr (kSwiGlu) {
              const uint32_t c[2] = {bu[2 * s], bu[2 * s + 1]};
              mma_bf16_16816(du, afrag, c);
            }
          }
          if constexpr (F == WeightFormat::Fp8Block) {
            if (kb + 128 * u < K) {  // promote this 128-k step's sums with its block scale
              const int64_t si = (n0 / 128) * scale_cols + (kb + 128 * u) / 128;
              const float sg = fp8_block_scale(wg.scales, wg.fp8_scales_f32, si);
#pragma unroll
              for (int i = 0; i < 4; ++i) acc[i] += tg[i] * sg;
              if constexpr (kSwiGlu) {
                const float su = fp8_block_scale(wu.scales, wu.fp8_scales_f32, si);
#pragma unroll
                for (int i = 0; i < 4; ++i) acc_up[i] += tu[i] * su;
              }
            }
          }
        }
        if (!more) break;
        if constexpr (kSwiGlu) {
          load_step<F, kAligned16>(gate_now, gate_row, wg, n, kb + Fmt::kStep, K, row_ok, j);
          load_step<F, kAligned16>(up_now, up_row, wu, n, kb + Fmt::kStep, K, row_ok, j);
        } else {
          gate_now = gate_next;
        }
      }
    }

    if (!warp_active) continue;
    const float gscale = F == WeightFormat::Nvfp4 ? wg.global_scale : 1.0f;
    float uscale = 1.0f;
    if constexpr (kSwiGlu) uscale = F == WeightFormat::Nvfp4 ? wu.global_scale : 1.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t m = m0 + g + (i >= 2 ? 8 : 0);
      const int64_t col = n0 + 2 * j + (i & 1);
      if (m >= m0 + rows_here || col >= N) continue;
      if (a.partial) {
        a.partial[(static_cast<int64_t>(blockIdx.y) * a.rows + m) * N + col] = acc[i];
        continue;
      }
      float v = acc[i] * gscale;
      if constexpr (kSwiGlu) v = clamped_swiglu(v, acc_up[i] * uscale, a.swiglu_limit);
      if (a.y_bf16) static_cast<uint16_t*>(a.y)[m * N + col] = float_to_bf16_bits(v);
      else static_cast<float*>(a.y)[m * N + col] = v;
    }
  }
}

__global__ void reduce_split_k_kernel(WeightGemmArgs a, int64_t splits) {
  const int64_t total = a.rows * a.n;
  const float gscale = a.weight.format == WeightFormat::Nvfp4 ? a.weight.global_scale : 1.0f;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float s = 0.0f;
    for (int64_t p = 0; p < splits; ++p) s += a.partial[p * total + i];
    const float v = s * gscale;
    if (a.y_bf16) static_cast<uint16_t*>(a.y)[i] = float_to_bf16_bits(v);
    else static_cast<float*>(a.y)[i] = v;
  }
}

template <WeightFormat F, bool kSwiGlu, bool kAligned16>
void launch(const WeightGemmArgs& a, int64_t tiles, int64_t splits, StreamHandle stream) {
  auto kernel = weight_gemm_decode_kernel<F, kSwiGlu, kAligned16>;
  const int rows = static_cast<int>(std::min<int64_t>(kDecodeRows, a.rows));
  const size_t smem = static_cast<size_t>(rows) * kXStride * sizeof(uint16_t);
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
        "weight_gemm_decode: shared memory attribute");
  const dim3 grid(ceil_div(a.n, 8 * kWarps), static_cast<unsigned>(splits), static_cast<unsigned>(tiles));
  kernel<<<grid, kThreads, smem, stream>>>(a);
  check_launch("weight_gemm_decode", "M=" + std::to_string(a.rows) + " N=" + std::to_string(a.n) +
                                         " K=" + std::to_string(a.k) + " splits=" + std::to_string(splits) +
                                         " tiles=" + std::to_string(tiles));
}

template <WeightFormat F>
void launch_format(const WeightGemmArgs& a, bool swiglu, int64_t tiles, int64_t splits, StreamHandle stream) {
  const bool aligned16 = (a.k * (F == WeightFormat::Bf16 ? 2 : 1) / (F == WeightFormat::Nvfp4 || F == WeightFormat::Mxfp4 ? 2 : 1)) % 16 == 0;
  if (swiglu) {
    aligned16 ? launch<F, true, true>(a, tiles, splits, stream) : launch<F, true, false>(a, tiles, splits, stream);
  } else {
    aligned16 ? launch<F, false, true>(a, tiles, splits, stream) : launch<F, false, false>(a, tiles, splits, stream);
  }
}

}  // namespace

int64_t decode_k_step(WeightFormat format) {
  switch (format) {
    case WeightFormat::Nvfp4: return DecodeFormat<WeightFormat::Nvfp4>::kStep;
    case WeightFormat::Mxfp4: return DecodeFormat<WeightFormat::Mxfp4>::kStep;
    case WeightFormat::Fp8Block: return DecodeFormat<WeightFormat::Fp8Block>::kStep;
    case WeightFormat::Bf16: return DecodeFormat<WeightFormat::Bf16>::kStep;
  }
  return 512;
}

void launch_weight_gemm_decode(const WeightGemmArgs& a, WeightFormat format, bool swiglu, int64_t tiles,
                               int64_t splits, StreamHandle stream) {
  switch (format) {
    case WeightFormat::Nvfp4: return launch_format<WeightFormat::Nvfp4>(a, swiglu, tiles, splits, stream);
    case WeightFormat::Mxfp4: return launch_format<WeightFormat::Mxfp4>(a, swiglu, tiles, splits, stream);
    case WeightFormat::Fp8Block: return launch_format<WeightFormat::Fp8Block>(a, swiglu, tiles, splits, stream);
    case WeightFormat::Bf16: return launch_format<WeightFormat::Bf16>(a, swiglu, tiles, splits, stream);
  }
}

void launch_reduce_split_k(const WeightGemmArgs& a, int64_t splits, StreamHandle stream) {
  const int64_t total = a.rows * a.n;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((total + 255) / 256, 4096));
  reduce_split_k_kernel<<<blocks, 256, 0, stream>>>(a, splits);
  check_launch("weight_gemm_reduce_split_k", "M=" + std::to_string(a.rows) + " N=" + std::to_string(a.n) +
                                                 " splits=" + std::to_string(splits));
}

}  // namespace fp4kit::cuda
