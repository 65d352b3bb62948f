// The Hopper prefill path of the weight GEMMs: wgmma (m64nNk16, BF16 operands from shared memory,
// F32 accumulators). 256 threads = 2 warpgroups. Each 64-k step, x lands by cp.async in a
// 128-byte-swizzled tile; the packed weight lands as stored and the block decodes it to a swizzled
// BF16 tile (double buffered), so the decode of step t+1 and the copies of step t+S-1 overlap the
// asynchronous MMAs of step t. Every weight element is decoded once per block. FP8 block scales
// multiply each 128-k block's sums (the partial sums restart with scale-d = 0 at each block);
// NVFP4's global scale multiplies the result. Dense products may split K over blockIdx.z: the split
// sums go to F32 partials that launch_reduce_split_k adds in split order (deterministic).
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "cuda/check.cuh"
#include "cuda/weight_decode.cuh"
#include "cuda/weight_gemm_kernels.cuh"
#include "cuda/weight_gemm_prefill_sm90.cuh"
#include "cuda/wgmma_sm90.cuh"

namespace fp4kit::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kBK = 64;  // one 128-byte swizzle row of BF16

// kBM 128: warpgroup g computes rows [64g, 64g+64) x all kBN columns; kBM 64: all rows x columns
// [g kBN/2, (g+1) kBN/2). kBN columns per weight (gate and up with the SwiGLU epilogue).
template <WeightFormat F, int kBM, int kBN, bool kSwiGlu, int kStages>
struct Sm90Shape {
  static_assert(kBM == 64 || kBM == 128, "row tile");
  static constexpr bool kFp4 = F == WeightFormat::Nvfp4 || F == WeightFormat::Mxfp4;
  static constexpr bool kDecode = F != WeightFormat::Bf16;
  static constexpr int kWeights = kSwiGlu ? 2 : 1;
  static constexpr int kWgN = kBM == 128 ? kBN : kBN / 2;  // wgmma N
  static constexpr int kAcc = kWgN / 2;                   // accumulator registers per weight
  // Stored bytes of one weight row per k step (BF16 rows land swizzled, as the MMA reads them).
  static constexpr int kRawBytes = kFp4 ? kBK / 2 : (F == WeightFormat::Fp8Block ? kBK : 2 * kBK);
  static constexpr int kRows = kWeights * kBN;  // weight rows decoded per step
  static constexpr int kThreadsPerRow = kThreads / kRows;
  static constexpr int kDecodeK = kBK / kThreadsPerRow;
  static constexpr size_t kXStage = size_t{kBM} * 128;
  static constexpr size_t kRawStage = size_t{kRows} * kRawBytes;
  static constexpr size_t kDecoded = kDecode ? size_t{kRows} * 128 : 0;
  static constexpr size_t kSharedBytes = 1024 + kStages * (kXStage + kRawStage) + 2 * kDecoded;
  static_assert(kDecodeK == 16 || kDecodeK == 32 || kDecodeK == 64, "decode span");
  static_assert(kRows * kThreadsPerRow == kThreads, "decode assignment");
  static_assert(kWgN == 64 || kWgN == 128 || kWgN == 256, "wgmma N");
};

// The scale bytes of a thread's FP4 decode, byte j for 16-element span j; 0 outside the weight
// (the raw bytes there are zero too).
template <WeightFormat F, int kDecodeK>
__device__ __forceinline__ uint32_t step_scales(const void* scales, int64_t n, int64_t k, int64_t N, int64_t K) {
  uint32_t v = 0;
  if constexpr (F == WeightFormat::Nvfp4 || F == WeightFormat::Mxfp4) {
    if (n >= N) return 0;
    const uint8_t* s = static_cast<const uint8_t*>(scales);
#pragma unroll
    for (int j = 0; j < kDecodeK / 16; ++j) {
      const int64_t kj = k + 16 * j;
      if (kj < K) {
        const uint32_t b = F == WeightFormat::Nvfp4 ? __ldg(s + n * (K / 16) + kj / 16) : __ldg(s + n * (K / 32) + kj / 32);
        v |= b << (8 * j);
      }
    }
  }
  return v;
}

// A thread's kDecodeK stored elements of one weight row (shared) -> BF16, written as 16-byte chunks
// into the swizzled tile row `row` starting at chunk `chunk0`.
template <WeightFormat F, int kDecodeK>
__device__ __forceinline__ void decode_span_swizzled(const uint8_t* raw, uint32_t scales, uint8_t* tile, int row,
                                                     int chunk0) {
#pragma unroll
  for (int j = 0; j < kDecodeK / 16; ++j) {
    uint32_t pairs[8];
    if constexpr (F == WeightFormat::Nvfp4) {
      const uint2 v = *reinterpret_cast<const uint2*>(raw + 8 * j);
      nvfp4x16_to_bf16x2(v.x, v.y, (scales >> (8 * j)) & 0xFFu, pairs);
    } else if constexpr (F == WeightFormat::Mxfp4) {
      const uint2 v = *reinterpret_cast<const uint2*>(raw + 8 * j);
      const uint32_t s = splat_bf16(e8m0_to_bf16_bits(scales >> (8 * j)));
      e2m1x8_to_bf16x2(v.x, pairs);
      e2m1x8_to_bf16x2(v.y, pairs + 4);
#pragma unroll
      for (int i = 0; i < 8; ++i) pairs[i] = bf16x2_mul(pairs[i], s);
    } else {  // FP8: the block scale is applied to the sums
      const uint4 v = *reinterpret_cast<const uint4*>(raw + 16 * j);
      e4m3x4_to_bf16x2(v.x, pairs[0], pairs[1]);
      e4m3x4_to_bf16x2(v.y, pairs[2], pairs[3]);
      e4m3x4_to_bf16x2(v.z, pairs[4], pairs[5]);
      e4m3x4_to_bf16x2(v.w, pairs[6], pairs[7]);
    }
    *reinterpret_cast<uint4*>(tile + swizzle128_offset(row, chunk0 + 2 * j)) =
        make_uint4(pairs[0], pairs[1], pairs[2], pairs[3]);
    *reinterpret_cast<uint4*>(tile + swizzle128_offset(row, chunk0 + 2 * j + 1)) =
        make_uint4(pairs[4], pairs[5], pairs[6], pairs[7]);
  }
}

template <WeightFormat F, int kBM, int kBN, bool kSwiGlu, int kStages, int kVec>
__global__ void __launch_bounds__(kThreads) weight_gemm_prefill_sm90_kernel(WeightGemmArgs a, int64_t steps_per_split) {
  using S = Sm90Shape<F, kBM, kBN, kSwiGlu, kStages>;
  extern __shared__ uint4 shared_words[];
  // Swizzled tiles need 1024-byte alignment.
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(shared_words) + 1023) & ~uintptr_t{1023});
  uint8_t* xs = smem;                                // kStages x tile [kBM][64] BF16, swizzled
  uint8_t* decoded = xs + kStages * S::kXStage;      // 2 x [kRows][64] BF16, swizzled
  uint8_t* raw = decoded + 2 * S::kDecoded;          // kStages x [kRows][kRawBytes] (BF16: swizzled)

  GroupTile tile;
  if (!find_group_tile(a, kBM, blockIdx.x, tile)) return;  // uniform over the block

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2;
  const int64_t N = a.n, K = a.k;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * kBN;
  const int64_t ktiles = (K + kBK - 1) / kBK;
  const int64_t t_begin = static_cast<int64_t>(blockIdx.z) * steps_per_split;
  const int64_t t_end = t_begin + steps_per_split < ktiles ? t_begin + steps_per_split : ktiles;
  const int steps = static_cast<int>(t_end - t_begin);  // >= 1 by the launcher's split count

  // The gate (or only) weight and the up weight (the gate again without the SwiGLU epilogue).
  const GemmWeight w0 = gate_weight(a, tile.group);
  const GemmWeight w1 = kSwiGlu ? a.ups[tile.group] : w0;
  constexpr int kElementBytesX2 = S::kFp4 ? 1 : (F == WeightFormat::Fp8Block ? 2 : 4);
  const int64_t row_bytes = K * kElementBytesX2 / 2;

  auto load_step = [&](int64_t t, int stage) {
    const int64_t k0 = t * kBK;
    uint8_t* xdst = xs + stage * S::kXStage;
#pragma unroll
    for (int q = 0; q < kBM * 8 / kThreads; ++q) {
      const int i = tid + q * kThreads;
      const int r = i >> 3, c = i & 7;
      const int64_t m = tile.begin + r, k = k0 + 8 * c;
      const bool ok = m < tile.end && k < K;
      cp_async_zfill<16>(xdst + swizzle128_offset(r, c), ok ? a.x + m * K + k : a.x, ok);
    }
    constexpr int kChunksPerRow = S::kRawBytes / kVec;
    static_assert(S::kRows * kChunksPerRow % kThreads == 0, "weight copy assignment");
#pragma unroll
    for (int q = 0; q < S::kRows * kChunksPerRow / kThreads; ++q) {
      const int i = tid + q * kThreads;
      const int rr = i / kChunksPerRow, c = i % kChunksPerRow;
      const int wi = rr / kBN, r = rr % kBN;
      const int64_t n = n0 + r;
      const int64_t byte = k0 * kElementBytesX2 / 2 + c * kVec;
      const bool ok = n < N && byte + kVec <= row_bytes;
      const uint8_t* src = static_cast<const uint8_t*>(wi == 0 ? w0.data : w1.data);
      uint8_t* dst = raw + stage * S::kRawStage;
      if constexpr (F == WeightFormat::Bf16) dst += swizzle128_offset(rr, c);
      else dst += rr * S::kRawBytes + c * kVec;
      cp_async_zfill<kVec>(dst, ok ? src + n * row_bytes + byte : src, ok);
    }
  };

  // The decode assignment: weight row dr (of kRows, weight dr / kBN), elements [dk, dk + kDecodeK).
  const int dr = tid / S::kThreadsPerRow;
  const int dk = (tid % S::kThreadsPerRow) * S::kDecodeK;
  const int dwi = dr / kBN;
  const int64_t scale_cols = (K + 127) / 128;
  auto load_scales = [&](int64_t t) -> uint32_t {
    if (F == WeightFormat::Fp8Block || t >= t_end) return 0;  // FP8 scales multiply the sums
    return step_scales<F, S::kDecodeK>(dwi == 0 ? w0.scales : w1.scales, n0 + dr % kBN, t * kBK + dk, N, K);
  };
  // FP8 promotion needs the block scale of every weight (uniform over the tile: kBN <= 128 divides 128).
  auto fp8_scale = [&](int wi, int64_t t) -> float {
    return fp8_block_scale(wi == 0 ? w0.scales : w1.scales, wi == 0 ? w0.fp8_scales_f32 : w1.fp8_scales_f32, (n0 / 128) * scale_cols + (t * kBK) / 128);
  };
  auto decode_step = [&](int stage, int buffer, uint32_t scales) {
    if constexpr (S::kDecode) {
      const uint8_t* src = raw + stage * S::kRawStage + dr * S::kRawBytes + dk * kElementBytesX2 / 2;
      decode_span_swizzled<F, S::kDecodeK>(src, scales, decoded + buffer * S::kDecoded, dr, dk / 8);
      fence_proxy_async_shared();
    }
  };

  constexpr bool kFp8 = F == WeightFormat::Fp8Block;
  float acc[S::kWeights][S::kAcc];
  float part[kFp8 ? S::kWeights : 1][kFp8 ? S::kAcc : 1];
#pragma unroll
  for (int wi = 0; wi < S::kWeights; ++wi)
#pragma unroll
    for (int i = 0; i < S::kAcc; ++i) acc[wi][i] = 0.0f;
  if constexpr (kFp8) {
#pragma unroll
    for (int wi = 0; wi < S::kWeights; ++wi)
#pragma unroll
      for (int i = 0; i < S::kAcc; ++i) part[wi][i] = 0.0f;
  }

  // Prologue: copies of the first kStages - 1 steps, then step 0 decoded.
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < steps) load_step(t_begin + s, s);
    cp_async_commit();
  }
  uint32_t scale_ring[3] = {load_scales(t_begin), load_scales(t_begin + 1), load_scales(t_begin + 2)};
  cp_async_wait<kStages - 2>();
  fence_proxy_async_shared();
  __syncthreads();
  decode_step(0, 0, scale_ring[0]);
  __syncthreads();

  // The warpgroup's operand tiles: rows of x, and rows of each weight's BF16 tile.
  const uint32_t x_offset = kBM == 128 ? wg * 64 * 128 : 0;
  const uint32_t w_offset = kBM == 128 ? 0 : wg * S::kWgN * 128;

  for (int i = 0; i < steps; ++i) {
    const int64_t t = t_begin + i;
    const int stage = i % kStages;
    const uint8_t* xt = xs + stage * S::kXStage + x_offset;
    const uint8_t* wt = S::kDecode ? decoded + (i & 1) * S::kDecoded : raw + stage * S::kRawStage;
    const bool block_start = !kFp8 || (t * kBK) % 128 == 0;  // FP8: the first step of a 128-k block

#pragma unroll
    for (int wi = 0; wi < S::kWeights; ++wi) {
      if constexpr (kFp8) wgmma_fence_registers<S::kAcc>(part[wi]);
      else wgmma_fence_registers<S::kAcc>(acc[wi]);
    }
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBK / 16; ++kk) {
      const uint64_t da = wgmma_descriptor(xt + 32 * kk);
#pragma unroll
      for (int wi = 0; wi < S::kWeights; ++wi) {
        const uint64_t db = wgmma_descriptor(wt + wi * kBN * 128 + w_offset + 32 * kk);
        if constexpr (kFp8) Wgmma<S::kWgN>::run(part[wi], da, db, !(block_start && kk == 0));
        else Wgmma<S::kWgN>::run(acc[wi], da, db, true);
      }
    }
    wgmma_commit();

    // While the MMAs run: the copies of step i + kStages - 1 (into the stage step i - 1 used),
    // then the decode of step i + 1.
    if (i + kStages - 1 < steps) load_step(t + kStages - 1, (i + kStages - 1) % kStages);
    cp_async_commit();
    if (i + 1 < steps) {
      cp_async_wait<kStages - 2>();
      fence_proxy_async_shared();
      __syncthreads();  // step i + 1 landed for every thread
      decode_step((i + 1) % kStages, (i + 1) & 1, scale_ring[1]);
    }
    scale_ring[0] = scale_ring[1];
    scale_ring[1] = scale_ring[2];
    scale_ring[2] = load_scales(t + 3);
    const bool promote = kFp8 && (((t + 1) * kBK) % 128 == 0 || i + 1 == steps);
    float block_scale[S::kWeights] = {};
    if (promote) {
#pragma unroll
      for (int wi = 0; wi < S::kWeights; ++wi) block_scale[wi] = fp8_scale(wi, t);
    }

    wgmma_wait<0>();
#pragma unroll
    for (int wi = 0; wi < S::kWeights; ++wi) {
      if constexpr (kFp8) wgmma_fence_registers<S::kAcc>(part[wi]);
      else wgmma_fence_registers<S::kAcc>(acc[wi]);
    }
    if constexpr (kFp8) {
      if (promote) {
#pragma unroll
        for (int wi = 0; wi < S::kWeights; ++wi)
#pragma unroll
          for (int r = 0; r < S::kAcc; ++r) acc[wi][r] += part[wi][r] * block_scale[wi];
      }
    }
    __syncthreads();  // every warpgroup is done with step i's tiles; step i + 1's decode is complete
  }
  cp_async_wait<0>();

  // Accumulator layout of m64nNk16: warp w of the warpgroup holds rows 16w + lane/4 (+8), columns
  // 8c + 2 (lane % 4) (+1) for c < N/8, registers 4c .. 4c+3.
  const int g = lane >> 2, j = lane & 3;
  const int64_t row0 = tile.begin + (kBM == 128 ? wg * 64 : 0) + 16 * (warp & 3) + g;
  const int64_t col0 = n0 + (kBM == 128 ? 0 : wg * S::kWgN) + 2 * j;
  const bool split = a.partial != nullptr;
  const float gscale = F == WeightFormat::Nvfp4 && !split ? w0.global_scale : 1.0f;
  const float uscale = F == WeightFormat::Nvfp4 ? w1.global_scale : 1.0f;
  const bool pairs_aligned = (N % 2) == 0;
#pragma unroll
  for (int c = 0; c < S::kWgN / 8; ++c)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t m = row0 + 8 * h;
      const int64_t col = col0 + 8 * c;
      if (m >= tile.end || col >= N) continue;
      float v[2];
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        v[e] = acc[0][4 * c + 2 * h + e] * gscale;
        if constexpr (kSwiGlu) v[e] = clamped_swiglu(v[e], acc[1][4 * c + 2 * h + e] * uscale, a.swiglu_limit);
      }
      const bool both = col + 1 < N;
      if (split) {
        float* p = a.partial + static_cast<int64_t>(blockIdx.z) * a.rows * N + m * N + col;
        if (both && pairs_aligned) *reinterpret_cast<float2*>(p) = make_float2(v[0], v[1]);
        else for (int e = 0; e < (both ? 2 : 1); ++e) p[e] = v[e];
      } else if (a.y_bf16) {
        uint16_t* p = static_cast<uint16_t*>(a.y) + m * N + col;
        if (both && pairs_aligned)
          *reinterpret_cast<uint32_t*>(p) = float_to_bf16_bits(v[0]) | (static_cast<uint32_t>(float_to_bf16_bits(v[1])) << 16);
        else for (int e = 0; e < (both ? 2 : 1); ++e) p[e] = float_to_bf16_bits(v[e]);
      } else {
        float* p = static_cast<float*>(a.y) + m * N + col;
        if (both && pairs_aligned) *reinterpret_cast<float2*>(p) = make_float2(v[0], v[1]);
        else for (int e = 0; e < (both ? 2 : 1); ++e) p[e] = v[e];
      }
    }
}

// Blocks of a kernel that fit on one multiprocessor by their shared memory (228 KiB, 1 KiB of it
// reserved per block).
constexpr int64_t resident_blocks(size_t shared_bytes) {
  const int64_t r = static_cast<int64_t>((size_t{228} << 10) / (shared_bytes + 1024));
  return r < 1 ? 1 : r;
}

template <WeightFormat F, int kBM, int kBN, bool kSwiGlu, int kStages, int kVec>
void launch(const WeightGemmArgs& args, int multiprocessors, StreamHandle stream) {
  using S = Sm90Shape<F, kBM, kBN, kSwiGlu, kStages>;
  auto kernel = weight_gemm_prefill_sm90_kernel<F, kBM, kBN, kSwiGlu, kStages, kVec>;
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(S::kSharedBytes)),
        "weight_gemm_prefill_sm90: shared memory attribute");
  WeightGemmArgs a = args;
  const bool grouped = a.offsets != nullptr;
  const int64_t row_tiles = (a.rows + kBM - 1) / kBM + (grouped ? a.groups : 0);
  const int64_t col_tiles = (a.n + kBN - 1) / kBN;
  const int64_t ktiles = (a.k + kBK - 1) / kBK;
  // Dense products split K while the tiles fill less than the resident blocks; splits of at least
  // 8 steps and an even number of them (FP8 scale blocks of 128 k stay whole).
  int64_t splits = 1, steps = ktiles;
  if (!grouped && !kSwiGlu) {
    const int64_t resident = multiprocessors * resident_blocks(S::kSharedBytes);
    const int64_t want = std::min<int64_t>({resident / (row_tiles * col_tiles), ktiles / 8, 16});
    if (want > 1) {
      steps = (ktiles + want - 1) / want;
      steps += steps % 2;
      splits = (ktiles + steps - 1) / steps;
    }
  }
  const std::string shape = "rows=" + std::to_string(a.rows) + " N=" + std::to_string(a.n) + " K=" +
                            std::to_string(a.k) + " BM=" + std::to_string(kBM) + " BN=" + std::to_string(kBN) +
                            " row_tiles=" + std::to_string(row_tiles) + " splits=" + std::to_string(splits);
  const dim3 grid(static_cast<unsigned>(row_tiles), static_cast<unsigned>(col_tiles), static_cast<unsigned>(splits));
  if (splits == 1) {
    a.partial = nullptr;
    kernel<<<grid, kThreads, S::kSharedBytes, stream>>>(a, steps);
    check_launch("weight_gemm_prefill_sm90", shape);
    return;
  }
  const size_t bytes = static_cast<size_t>(splits * a.rows * a.n) * sizeof(float);
  void* partial = nullptr;
  check(cudaMallocAsync(&partial, bytes, stream),
        "weight_gemm_prefill_sm90: split-K workspace of " + std::to_string(bytes) + " bytes");
  a.partial = static_cast<float*>(partial);
  try {
    kernel<<<grid, kThreads, S::kSharedBytes, stream>>>(a, steps);
    check_launch("weight_gemm_prefill_sm90", shape);
    launch_reduce_split_k(a, splits, stream);
  } catch (...) {
    cudaFreeAsync(partial, stream);
    throw;
  }
  check(cudaFreeAsync(partial, stream), "weight_gemm_prefill_sm90: free split-K workspace");
}

// Tile widths: FP8 tiles stay within one 128-row scale block, and two weights (SwiGLU) halve the
// columns so that the accumulators fit in registers.
template <WeightFormat F, bool kSwiGlu, bool kWide>
void launch_tiles(const WeightGemmArgs& a, int multiprocessors, StreamHandle stream) {
  constexpr bool kFp8 = F == WeightFormat::Fp8Block;
  constexpr int kBM = kWide ? 128 : 64;
  constexpr int kBN = !kWide ? 128 : (kFp8 ? (kSwiGlu ? 64 : 128) : (kSwiGlu ? 128 : 256));
  constexpr int kStages = kWide || F == WeightFormat::Bf16 ? 4 : 6;
  constexpr bool kFp4 = F == WeightFormat::Nvfp4 || F == WeightFormat::Mxfp4;
  // FP4 rows of K/2 bytes are only 8-byte aligned when K % 32 == 16.
  if constexpr (kFp4) {
    if ((a.k / 2) % 16 != 0) return launch<F, kBM, kBN, kSwiGlu, kStages, 8>(a, multiprocessors, stream);
  }
  launch<F, kBM, kBN, kSwiGlu, kStages, 16>(a, multiprocessors, stream);
}

template <WeightFormat F>
void launch_format(const WeightGemmArgs& a, bool swiglu, int multiprocessors, StreamHandle stream) {
  // 64-row tiles while the (average non-empty) group has at most 128 rows: the weight is the traffic.
  const int64_t busy_groups = a.offsets ? std::max<int64_t>(1, std::min<int64_t>(a.groups, a.rows)) : 1;
  const bool wide = a.rows > 128 * busy_groups;
  if (swiglu) {
    wide ? launch_tiles<F, true, true>(a, multiprocessors, stream) : launch_tiles<F, true, false>(a, multiprocessors, stream);
  } else {
    wide ? launch_tiles<F, false, true>(a, multiprocessors, stream) : launch_tiles<F, false, false>(a, multiprocessors, stream);
  }
}

}  // namespace

void launch_weight_gemm_prefill_sm90(const WeightGemmArgs& a, WeightFormat format, bool swiglu, int multiprocessors,
                                     StreamHandle stream) {
  switch (format) {
    case WeightFormat::Nvfp4: return launch_format<WeightFormat::Nvfp4>(a, swiglu, multiprocessors, stream);
    case WeightFormat::Mxfp4: return launch_format<WeightFormat::Mxfp4>(a, swiglu, multiprocessors, stream);
    case WeightFormat::Fp8Block: return launch_format<WeightFormat::Fp8Block>(a, swiglu, multiprocessors, stream);
    case WeightFormat::Bf16: return launch_format<WeightFormat::Bf16>(a, swiglu, multiprocessors, stream);
  }
}

}  // namespace fp4kit::cuda
