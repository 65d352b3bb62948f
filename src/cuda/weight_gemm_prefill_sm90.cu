// The Hopper prefill path of the weight GEMMs: the weight is the A operand of wgmma, decoded into
// registers (RS form), x the B operand from the swizzled shared tile; y is computed transposed per
// tile (rows = weight rows, columns = tokens). No decoded shared tile, hence no generic->async proxy
// fence in the main loop.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "cuda/check.cuh"
#include "cuda/device_facts.cuh"
#include "cuda/weight_decode.cuh"
#include "cuda/weight_gemm_kernels.cuh"
#include "cuda/weight_gemm_prefill_sm90.cuh"
#include "cuda/wgmma_sm90.cuh"

namespace fp4kit::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kBK = 64;
constexpr int kWRows = 128;  // weight rows per block and weight: 2 warpgroups x 64

template <WeightFormat F, int kBT, bool kSwiGlu, int kBudget>
struct RsShape {
  static constexpr bool kFp4 = F == WeightFormat::Nvfp4 || F == WeightFormat::Mxfp4;
  static constexpr bool kFp8 = F == WeightFormat::Fp8Block;
  static constexpr int kWeights = kSwiGlu ? 2 : 1;
  static constexpr int kRawBytes = kFp4 ? kBK / 2 : (kFp8 ? kBK : 2 * kBK);
  static constexpr int kRawStride = kRawBytes + 16;  // conflict-free fragment reads
  static constexpr size_t kXStage = size_t{kBT} * 128;
  static constexpr size_t kRawStage = size_t{kWeights} * kWRows * kRawStride;
  static constexpr int kStagesRaw = static_cast<int>((size_t{kBudget} * 1024 - 1024) / (kXStage + kRawStage));
  static constexpr int kStages = kStagesRaw > 8 ? 8 : kStagesRaw;
  static constexpr size_t kSharedBytes = 1024 + kStages * (kXStage + kRawStage);
  static_assert(kStages >= 3, "pipeline depth");
};

template <WeightFormat F>
__device__ __forceinline__ uint32_t row_step_scales(const void* scales, int64_t n, int64_t k0, int64_t N, int64_t K) {
  uint32_t v = 0;
  if constexpr (F == WeightFormat::Nvfp4 || F == WeightFormat::Mxfp4) {
    if (n >= N) return 0;
    const uint8_t* s = static_cast<const uint8_t*>(scales);
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int64_t k = k0 + 16 * q;
      if (k < K) {
        const uint32_t b = F == WeightFormat::Nvfp4 ? __ldg(s + n * (K / 16) + k / 16) : __ldg(s + n * (K / 32) + k / 32);
        v |= b << (8 * q);
      }
    }
  }
  return v;
}

// The A fragments (k16 steps q = 0..3) of one weight row pair (rows g and g+8 of the warp's 16)
// from the stored bytes in shared memory: f[q] = {row g k 2j.., row g+8 k 2j.., row g k 2j+8..,
// row g+8 k 2j+8..}.
template <WeightFormat F>
__device__ __forceinline__ void decode_fragments(const uint8_t* ra, const uint8_t* rb, uint32_t sa, uint32_t sb, int j,
                                                 uint32_t (&f)[4][4]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const uint8_t* p = h == 0 ? ra : rb;
    const uint32_t scales = h == 0 ? sa : sb;
    if constexpr (F == WeightFormat::Nvfp4 || F == WeightFormat::Mxfp4) {
      const uint4 v0 = *reinterpret_cast<const uint4*>(p);
      const uint4 v1 = *reinterpret_cast<const uint4*>(p + 16);
      const uint32_t w[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
      const uint32_t sel = static_cast<uint32_t>(j) | (static_cast<uint32_t>(4 + j) << 4);
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        uint32_t p0, p1;
        e2m1x4_to_bf16x2(byte_perm(w[2 * q], w[2 * q + 1], sel), p0, p1);
        const uint32_t byte = (scales >> (8 * q)) & 0xFFu;
        const uint32_t s = splat_bf16(F == WeightFormat::Nvfp4 ? e4m3_to_bf16_bits(byte) : e8m0_to_bf16_bits(byte));
        f[q][h] = bf16x2_mul(p0, s);
        f[q][h + 2] = bf16x2_mul(p1, s);
      }
    } else if constexpr (F == WeightFormat::Fp8Block) {
      const uint4 v0 = *reinterpret_cast<const uint4*>(p), v1 = *reinterpret_cast<const uint4*>(p + 16);
      const uint4 v2 = *reinterpret_cast<const uint4*>(p + 32), v3 = *reinterpret_cast<const uint4*>(p + 48);
      const uint32_t w[16] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w,
                              v2.x, v2.y, v2.z, v2.w, v3.x, v3.y, v3.z, v3.w};
      const uint32_t o = 2u * static_cast<uint32_t>(j & 1);
      const uint32_t sel = o | ((o + 1) << 4) | ((o + 4) << 8) | ((o + 5) << 12);
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const uint32_t lo = (j & 2) ? w[4 * q + 1] : w[4 * q];
        const uint32_t hi = (j & 2) ? w[4 * q + 3] : w[4 * q + 2];
        e4m3x4_to_bf16x2(byte_perm(lo, hi, sel), f[q][h], f[q][h + 2]);
      }
    } else {
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        f[q][h] = *reinterpret_cast<const uint32_t*>(p + 32 * q + 4 * j);
        f[q][h + 2] = *reinterpret_cast<const uint32_t*>(p + 32 * q + 16 + 4 * j);
      }
    }
  }
}

template <WeightFormat F, int kBT, bool kSwiGlu, int kBudget, int kVec>
__global__ void __launch_bounds__(kThreads) weight_gemm_prefill_rs_kernel(WeightGemmArgs a, int64_t steps_per_split) {
#if defined(__CUDA_ARCH__) && !FP4KIT_WGMMA
  // wgmma exists on sm_90a only and the launcher takes these kernels on compute capability 9.0 only:
  // the other targets of the fatbinary get this stub, not a second compile of the whole kernel.
  __trap();
#else
  using S = RsShape<F, kBT, kSwiGlu, kBudget>;
  constexpr int kAcc = kBT / 2;  // accumulators per thread and weight
  constexpr int kStages = S::kStages;
  constexpr int kW = S::kWeights;
  constexpr bool kFp8 = S::kFp8;
  extern __shared__ uint4 shared_words[];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(shared_words) + 1023) & ~uintptr_t{1023});
  uint8_t* xs = smem;                          // kStages x [kBT][64] BF16, swizzled
  uint8_t* raw = xs + kStages * S::kXStage;    // kStages x [kW * 128][kRawStride] stored bytes

  GroupTile tile;
  if (!find_group_tile(a, kBT, blockIdx.x, tile)) return;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2;
  const int g = lane >> 2, j = lane & 3;
  const int64_t N = a.n, K = a.k;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * kWRows;
  const int64_t ktiles = (K + kBK - 1) / kBK;
  const int64_t t_begin = static_cast<int64_t>(blockIdx.z) * steps_per_split;
  const int64_t t_end = t_begin + steps_per_split < ktiles ? t_begin + steps_per_split : ktiles;
  const int steps = static_cast<int>(t_end - t_begin);

  const GemmWeight w0 = gate_weight(a, tile.group);
  const GemmWeight w1 = kSwiGlu ? a.ups[tile.group] : w0;
  constexpr int kElementBytesX2 = S::kFp4 ? 1 : (kFp8 ? 2 : 4);
  const int64_t row_bytes = K * kElementBytesX2 / 2;

  auto load_step = [&](int64_t t, int stage) {
    const int64_t k0 = t * kBK;
    uint8_t* xdst = xs + stage * S::kXStage;
#pragma unroll
    for (int q = 0; q < kBT * 8 / kThreads; ++q) {
      const int i = tid + q * kThreads;
      const int r = i >> 3, c = i & 7;
      const int64_t m = tile.begin + r, k = k0 + 8 * c;
      const bool ok = m < tile.end && k < K;
      cp_async_zfill<16>(xdst + swizzle128_offset(r, c), ok ? a.x + m * K + k : a.x, ok);
    }
    constexpr int kChunksPerRow = S::kRawBytes / kVec;
    static_assert(kW * kWRows * kChunksPerRow % kThreads == 0, "weight copy assignment");
#pragma unroll
    for (int q = 0; q < kW * kWRows * kChunksPerRow / kThreads; ++q) {
      const int i = tid + q * kThreads;
      const int rr = i / kChunksPerRow, c = i % kChunksPerRow;
      const int wi = rr / kWRows, r = rr % kWRows;
      const int64_t n = n0 + r;
      const int64_t byte = k0 * kElementBytesX2 / 2 + c * kVec;
      const bool ok = n < N && byte + kVec <= row_bytes;
      const uint8_t* src = static_cast<const uint8_t*>(wi == 0 ? w0.data : w1.data);
      cp_async_zfill<kVec>(raw + stage * S::kRawStage + rr * S::kRawStride + c * kVec,
                           ok ? src + n * row_bytes + byte : src, ok);
    }
  };

  // This thread's fragment rows (block-local): ra and ra + 8 of each weight.
  const int ra = wg * 64 + (warp & 3) * 16 + g;
  auto load_scales = [&](int64_t t, uint32_t (&s)[kW][2]) {
#pragma unroll
    for (int wi = 0; wi < kW; ++wi)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        s[wi][h] = t < t_end ? row_step_scales<F>(wi == 0 ? w0.scales : w1.scales, n0 + ra + 8 * h, t * kBK, N, K) : 0u;
  };
  auto decode = [&](int stage, const uint32_t (&s)[kW][2], uint32_t (&f)[kW][4][4]) {
#pragma unroll
    for (int wi = 0; wi < kW; ++wi) {
      const uint8_t* base = raw + stage * S::kRawStage + (wi * kWRows + ra) * S::kRawStride;
      decode_fragments<F>(base, base + 8 * S::kRawStride, s[wi][0], s[wi][1], j, f[wi]);
    }
  };
  const int64_t scale_cols = (K + 127) / 128;
  auto fp8_scale = [&](int wi, int64_t t) -> float {
    return fp8_block_scale(wi == 0 ? w0.scales : w1.scales, wi == 0 ? w0.fp8_scales_f32 : w1.fp8_scales_f32,
                           (n0 / 128) * scale_cols + (t * kBK) / 128);
  };

  float acc[kW][kAcc];
  float part[kFp8 ? kW : 1][kFp8 ? kAcc : 1];
#pragma unroll
  for (int wi = 0; wi < kW; ++wi)
#pragma unroll
    for (int i = 0; i < kAcc; ++i) acc[wi][i] = 0.0f;
  if constexpr (kFp8) {
#pragma unroll
    for (int wi = 0; wi < kW; ++wi)
#pragma unroll
      for (int i = 0; i < kAcc; ++i) part[wi][i] = 0.0f;
  }
  uint32_t frag_even[kW][4][4], frag_odd[kW][4][4];
  uint32_t scales_even[kW][2], scales_odd[kW][2];  // for the decode in iterations of that parity

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < steps) load_step(t_begin + s, s);
    cp_async_commit();
  }
  {
    uint32_t first[kW][2];
    load_scales(t_begin, first);
    load_scales(t_begin + 1, scales_even);
    load_scales(t_begin + 2, scales_odd);
    cp_async_wait<kStages - 2>();
    __syncthreads();  // step 0 landed
    decode(0, first, frag_even);
  }

  auto fence_sums = [&]() {
#pragma unroll
    for (int wi = 0; wi < kW; ++wi) {
      if constexpr (kFp8) wgmma_fence_registers<kAcc>(part[wi]);
      else wgmma_fence_registers<kAcc>(acc[wi]);
    }
  };
  // Iteration i: the MMAs of step i on `cur`, meanwhile the copies of step i + kStages - 1 and the
  // decode of step i + 1 into `next` (with `scales`, then refilled for step i + 3).
  auto iteration = [&](int i, uint32_t (&cur)[kW][4][4], uint32_t (&next)[kW][4][4], uint32_t (&scales)[kW][2]) {
    const int64_t t = t_begin + i;
    const uint8_t* xt = xs + (i % kStages) * S::kXStage;
    const bool block_start = !kFp8 || (t * kBK) % 128 == 0;
    fence_sums();
    wgmma_fence();
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const uint64_t db = wgmma_descriptor(xt + 32 * q);
#pragma unroll
      for (int wi = 0; wi < kW; ++wi) {
        if constexpr (kFp8) WgmmaRs<kBT>::run(part[wi], cur[wi][q], db, !(block_start && q == 0));
        else WgmmaRs<kBT>::run(acc[wi], cur[wi][q], db, true);
      }
    }
    wgmma_commit();
    if (i + 1 < steps) {
      cp_async_wait<kStages - 3>();
      __syncthreads();  // step i + 1 landed; every warpgroup is done with step i - 1's stage
      if (i + kStages - 1 < steps) load_step(t + kStages - 1, (i + kStages - 1) % kStages);
      cp_async_commit();
      decode((i + 1) % kStages, scales, next);
      load_scales(t + 3, scales);
    }
    const bool promote = kFp8 && (((t + 1) * kBK) % 128 == 0 || i + 1 == steps);
    float block_scale[kW] = {};
    if (promote) {
#pragma unroll
      for (int wi = 0; wi < kW; ++wi) block_scale[wi] = fp8_scale(wi, t);
    }
    wgmma_wait<0>();
    fence_sums();
#pragma unroll
    for (int wi = 0; wi < kW; ++wi)
#pragma unroll
      for (int q = 0; q < 4; ++q)
#pragma unroll
        for (int r = 0; r < 4; ++r) asm volatile("" : "+r"(cur[wi][q][r])::"memory");
    if constexpr (kFp8) {
      if (promote) {
#pragma unroll
        for (int wi = 0; wi < kW; ++wi)
#pragma unroll
          for (int r = 0; r < kAcc; ++r) acc[wi][r] += part[wi][r] * block_scale[wi];
      }
    }
  };
  for (int i = 0; i < steps; i += 2) {
    iteration(i, frag_even, frag_odd, scales_even);
    if (i + 1 < steps) iteration(i + 1, frag_odd, frag_even, scales_odd);
  }
  cp_async_wait<0>();

  // Accumulator of m64nNk16, transposed tile: register 4c + e of warp w holds weight row
  // 16w + g (+8 for e >= 2) and token 8c + 2j + (e & 1).
  const int64_t nrow = n0 + ra;
  const bool split = a.partial != nullptr;
  const float gscale = F == WeightFormat::Nvfp4 && !split ? w0.global_scale : 1.0f;
  const float uscale = F == WeightFormat::Nvfp4 ? w1.global_scale : 1.0f;
#pragma unroll
  for (int c = 0; c < kBT / 8; ++c)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t n = nrow + 8 * (e >> 1);
      const int64_t m = tile.begin + 8 * c + 2 * j + (e & 1);
      if (m >= tile.end || n >= N) continue;
      float v = acc[0][4 * c + e] * gscale;
      if constexpr (kSwiGlu) v = clamped_swiglu(v, acc[kW - 1][4 * c + e] * uscale, a.swiglu_limit);
      if (split) a.partial[static_cast<int64_t>(blockIdx.z) * a.rows * N + m * N + n] = v;
      else if (a.y_bf16) static_cast<uint16_t*>(a.y)[m * N + n] = float_to_bf16_bits(v);
      else static_cast<float*>(a.y)[m * N + n] = v;
    }
#endif
}

constexpr int64_t resident_blocks(size_t shared_bytes) {
  const int64_t r = static_cast<int64_t>((size_t{228} << 10) / (shared_bytes + 1024));
  return r < 1 ? 1 : r;
}

template <WeightFormat F, int kBT, bool kSwiGlu, int kBudget, int kVec>
void launch(const WeightGemmArgs& args, int multiprocessors, StreamHandle stream) {
  using S = RsShape<F, kBT, kSwiGlu, kBudget>;
  auto kernel = weight_gemm_prefill_rs_kernel<F, kBT, kSwiGlu, kBudget, kVec>;
  allow_dynamic_shared_memory(reinterpret_cast<const void*>(kernel), S::kSharedBytes, "weight_gemm_prefill_sm90");
  WeightGemmArgs a = args;
  const bool grouped = a.offsets != nullptr;
  const int64_t row_tiles = (a.rows + kBT - 1) / kBT + (grouped ? a.groups : 0);
  const int64_t col_tiles = (a.n + kWRows - 1) / kWRows;
  const int64_t ktiles = (a.k + kBK - 1) / kBK;
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
                            std::to_string(a.k) + " tokens per tile=" + std::to_string(kBT) + " row_tiles=" +
                            std::to_string(row_tiles) + " splits=" + std::to_string(splits);
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
        [&] { return "weight_gemm_prefill_sm90: split-K workspace of " + std::to_string(bytes) + " bytes"; });
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

template <WeightFormat F, bool kSwiGlu, bool kWide>
void launch_tiles(const WeightGemmArgs& a, int multiprocessors, StreamHandle stream) {
  constexpr bool kFp8 = F == WeightFormat::Fp8Block;
  constexpr int kBT = !kWide || kSwiGlu ? 64 : (kFp8 ? 128 : 256);
  constexpr int kBudget = kWide || kSwiGlu ? 220 : 110;  // KiB: one block per multiprocessor, or two
  constexpr bool kFp4 = F == WeightFormat::Nvfp4 || F == WeightFormat::Mxfp4;
  if constexpr (kFp4) {
    if ((a.k / 2) % 16 != 0) return launch<F, kBT, kSwiGlu, kBudget, 8>(a, multiprocessors, stream);
  }
  launch<F, kBT, kSwiGlu, kBudget, 16>(a, multiprocessors, stream);
}

template <WeightFormat F>
void launch_format(const WeightGemmArgs& a, bool swiglu, int multiprocessors, StreamHandle stream) {
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
