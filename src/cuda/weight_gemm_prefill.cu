// The prefill path of the weight GEMMs for devices other than Hopper (which takes
// weight_gemm_prefill_sm90.cu): 128-row tiles of x against 128 (or, with the SwiGLU
// epilogue, 2 x 64) weight rows, 64 k at a time through a 3-stage cp.async pipeline. The packed
// weight tile lands in shared memory as stored; each k step the block decodes it to a BF16 tile
// (padded rows, so ldmatrix is free of bank conflicts) and 8 warps (2 x 4, 64 x BN/4 each) run
// mma.sync m16n8k16 with F32 accumulators. FP8 block scales multiply each 128-k step's sums
// (DeepGEMM-style promotion); NVFP4's global scale multiplies the result. BF16 weights skip the
// decode and are read by ldmatrix where they landed.
#include <cuda_runtime.h>

#include <string>

#include "cuda/check.cuh"
#include "cuda/device_facts.cuh"
#include "cuda/mma_sm80.cuh"
#include "cuda/weight_decode.cuh"
#include "cuda/weight_gemm_kernels.cuh"
#include "cuda/weight_gemm_prefill_sm90.cuh"

namespace fp4kit::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kBM = 128, kBK = 64, kStages = 3;
constexpr int kTileStride = kBK + 8;  // BF16 elements per shared row (x, decoded weight, BF16 weight)

template <WeightFormat F, int kBN, bool kSwiGlu>
struct PrefillShape {
  static constexpr bool kFp4 = F == WeightFormat::Nvfp4 || F == WeightFormat::Mxfp4;
  static constexpr int kWeights = kSwiGlu ? 2 : 1;
  // Stored bytes of one weight row per k step, and the shared stride of a raw row.
  static constexpr int kRawBytes = kFp4 ? kBK / 2 : (F == WeightFormat::Fp8Block ? kBK : 2 * kBK);
  static constexpr int kRawStride = F == WeightFormat::Bf16 ? 2 * kTileStride : kRawBytes;
  static constexpr bool kDecode = F != WeightFormat::Bf16;
  // Decode work: kThreadsPerRow threads per weight row, kDecodeK elements each.
  static constexpr int kThreadsPerRow = kThreads / kBN;
  static constexpr int kDecodeK = kBK / kThreadsPerRow;
  static constexpr int kWN = kBN / 4, kNT = kWN / 8, kMT = 4;
  static constexpr size_t kXBytes = size_t{kStages} * kBM * kTileStride * 2;
  static constexpr size_t kRawStageBytes = size_t{kWeights} * kBN * kRawStride;
  static constexpr size_t kDecodedBytes = kDecode ? size_t{kWeights} * kBN * kTileStride * 2 : 0;
  static constexpr size_t kSharedBytes = kXBytes + kStages * kRawStageBytes + kDecodedBytes;
  static_assert(kDecodeK == 16 || kDecodeK == 32, "decode span");
};

// Scale bytes (FP4) or the block scale (FP8, as f32 bits) a thread's decode of k step `t` needs.
template <WeightFormat F, int kDecodeK>
__device__ __forceinline__ uint32_t load_step_scales(const GemmWeight& w, int64_t n, int64_t k, int64_t N,
                                                     int64_t K, int64_t fp8_index) {
  if constexpr (F == WeightFormat::Nvfp4) {
    if (n >= N || k >= K) return 0;
    const uint8_t* s = static_cast<const uint8_t*>(w.scales) + n * (K / 16) + k / 16;
    uint32_t v = __ldg(s);
    if (kDecodeK == 32 && k + 16 < K) v |= static_cast<uint32_t>(__ldg(s + 1)) << 8;
    return v;
  } else if constexpr (F == WeightFormat::Mxfp4) {
    if (n >= N || k >= K) return 0;
    return __ldg(static_cast<const uint8_t*>(w.scales) + n * (K / 32) + k / 32);
  } else if constexpr (F == WeightFormat::Fp8Block) {
    return __float_as_uint(fp8_block_scale(w.scales, w.fp8_scales_f32, fp8_index));
  }
  return 0;
}

// A thread's kDecodeK stored elements (in shared memory) -> kDecodeK/2 BF16 pairs in `out` (shared).
template <WeightFormat F, int kDecodeK>
__device__ __forceinline__ void decode_span(const uint8_t* raw, uint32_t scales, uint16_t* out) {
  uint32_t pairs[kDecodeK / 2];
  if constexpr (F == WeightFormat::Nvfp4 || F == WeightFormat::Mxfp4) {
    uint32_t w[kDecodeK / 8];
    if constexpr (kDecodeK == 32) {
      const uint4 v = *reinterpret_cast<const uint4*>(raw);
      w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
    } else {
      const uint2 v = *reinterpret_cast<const uint2*>(raw);
      w[0] = v.x, w[1] = v.y;
    }
    if constexpr (F == WeightFormat::Nvfp4) {
      nvfp4x16_to_bf16x2(w[0], w[1], scales & 0xFFu, pairs);
      if constexpr (kDecodeK == 32) nvfp4x16_to_bf16x2(w[2], w[3], scales >> 8, pairs + 8);
    } else {
      const uint32_t s = splat_bf16(e8m0_to_bf16_bits(scales));
#pragma unroll
      for (int i = 0; i < kDecodeK / 8; ++i) e2m1x8_to_bf16x2(w[i], pairs + 4 * i);
#pragma unroll
      for (int i = 0; i < kDecodeK / 2; ++i) pairs[i] = bf16x2_mul(pairs[i], s);
    }
  } else {  // FP8: the block scale is applied to the sums
#pragma unroll
    for (int q = 0; q < kDecodeK / 16; ++q) {
      const uint4 v = *reinterpret_cast<const uint4*>(raw + 16 * q);
      e4m3x4_to_bf16x2(v.x, pairs[8 * q + 0], pairs[8 * q + 1]);
      e4m3x4_to_bf16x2(v.y, pairs[8 * q + 2], pairs[8 * q + 3]);
      e4m3x4_to_bf16x2(v.z, pairs[8 * q + 4], pairs[8 * q + 5]);
      e4m3x4_to_bf16x2(v.w, pairs[8 * q + 6], pairs[8 * q + 7]);
    }
  }
#pragma unroll
  for (int i = 0; i < kDecodeK / 8; ++i)
    reinterpret_cast<uint4*>(out)[i] = make_uint4(pairs[4 * i], pairs[4 * i + 1], pairs[4 * i + 2], pairs[4 * i + 3]);
}

template <WeightFormat F, int kBN, bool kSwiGlu, int kVec>
__global__ void __launch_bounds__(kThreads) weight_gemm_prefill_kernel(WeightGemmArgs a) {
  using S = PrefillShape<F, kBN, kSwiGlu>;
  extern __shared__ uint4 shared_words[];
  uint8_t* smem = reinterpret_cast<uint8_t*>(shared_words);
  uint16_t* xs = reinterpret_cast<uint16_t*>(smem);
  uint8_t* raw = smem + S::kXBytes;
  uint16_t* decoded = reinterpret_cast<uint16_t*>(raw + kStages * S::kRawStageBytes);

  GroupTile tile;
  if (!find_group_tile(a, kBM, blockIdx.x, tile)) return;  // uniform over the block

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int warp_m = warp >> 2, warp_n = warp & 3;
  const int64_t N = a.n, K = a.k;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * kBN;
  const int64_t ktiles = (K + kBK - 1) / kBK;

  GemmWeight w[S::kWeights];
  w[0] = gate_weight(a, tile.group);
  if constexpr (kSwiGlu) w[1] = a.ups[tile.group];
  constexpr int kElementBytesX2 = S::kFp4 ? 1 : (F == WeightFormat::Fp8Block ? 2 : 4);
  const int64_t row_bytes = K * kElementBytesX2 / 2;

  auto load_step = [&](int64_t t, int stage) {
    const int64_t k0 = t * kBK;
    uint16_t* xdst = xs + stage * kBM * kTileStride;
#pragma unroll
    for (int q = 0; q < kBM * kBK / 8 / kThreads; ++q) {
      const int i = tid + q * kThreads;
      const int r = i / (kBK / 8), c = i % (kBK / 8);
      const int64_t m = tile.begin + r, k = k0 + 8 * c;
      const bool ok = m < tile.end && k < K;
      cp_async_zfill<16>(xdst + r * kTileStride + 8 * c, ok ? a.x + m * K + k : a.x, ok);
    }
    constexpr int kChunksPerRow = S::kRawBytes / kVec;
#pragma unroll
    for (int wi = 0; wi < S::kWeights; ++wi) {
      uint8_t* wdst = raw + stage * S::kRawStageBytes + wi * kBN * S::kRawStride;
      const uint8_t* src = static_cast<const uint8_t*>(w[wi].data);
      for (int i = tid; i < kBN * kChunksPerRow; i += kThreads) {
        const int r = i / kChunksPerRow, c = i % kChunksPerRow;
        const int64_t n = n0 + r;
        const int64_t byte = k0 * kElementBytesX2 / 2 + c * kVec;
        const bool ok = n < N && byte + kVec <= row_bytes;
        cp_async_zfill<kVec>(wdst + r * S::kRawStride + c * kVec, ok ? src + n * row_bytes + byte : src, ok);
      }
    }
  };

  // The decode assignment: weight row dr, elements [dk, dk + kDecodeK) of the k step.
  const int dr = tid / S::kThreadsPerRow;
  const int dk = (tid % S::kThreadsPerRow) * S::kDecodeK;
  const int64_t scale_cols = (K + 127) / 128;
  auto load_scales = [&](int64_t t, uint32_t* out) {
#pragma unroll
    for (int wi = 0; wi < S::kWeights; ++wi)
      out[wi] = load_step_scales<F, S::kDecodeK>(w[wi], n0 + dr, t * kBK + dk, N, K,
                                                 (n0 / 128) * scale_cols + (t * kBK) / 128);
  };

  float acc[S::kWeights][S::kMT][S::kNT][4] = {};
  float part[F == WeightFormat::Fp8Block ? S::kWeights : 1][S::kMT][S::kNT][4] = {};

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < ktiles) load_step(s, s);
    cp_async_commit();
  }
  uint32_t scales_next[S::kWeights] = {}, scales[S::kWeights];
  load_scales(0, scales_next);

  for (int64_t t = 0; t < ktiles; ++t) {
    const int stage = static_cast<int>(t % kStages);
#pragma unroll
    for (int wi = 0; wi < S::kWeights; ++wi) scales[wi] = scales_next[wi];
    cp_async_wait<kStages - 2>();
    __syncthreads();  // step t landed; every warp is done with step t - 1's buffers
    if (t + kStages - 1 < ktiles) load_step(t + kStages - 1, static_cast<int>((t + kStages - 1) % kStages));
    cp_async_commit();
    if (t + 1 < ktiles) load_scales(t + 1, scales_next);

    if constexpr (S::kDecode) {
#pragma unroll
      for (int wi = 0; wi < S::kWeights; ++wi) {
        const uint8_t* src = raw + stage * S::kRawStageBytes + wi * kBN * S::kRawStride + dr * S::kRawStride +
                             dk * kElementBytesX2 / 2;
        decode_span<F, S::kDecodeK>(src, scales[wi], decoded + (wi * kBN + dr) * kTileStride + dk);
      }
      __syncthreads();
    }

    const uint16_t* xt = xs + stage * kBM * kTileStride;
#pragma unroll
    for (int kk = 0; kk < kBK / 16; ++kk) {
      uint32_t af[S::kMT][4];
#pragma unroll
      for (int mt = 0; mt < S::kMT; ++mt)
        ldmatrix_x4(af[mt], xt + (warp_m * 64 + mt * 16 + (lane & 15)) * kTileStride + kk * 16 + (lane >> 4) * 8);
#pragma unroll
      for (int wi = 0; wi < S::kWeights; ++wi) {
        const uint16_t* wt;
        if constexpr (S::kDecode) wt = decoded + wi * kBN * kTileStride;
        else wt = reinterpret_cast<const uint16_t*>(raw + stage * S::kRawStageBytes + wi * kBN * S::kRawStride);
        uint32_t bf[S::kNT][2];
#pragma unroll
        for (int np = 0; np < S::kNT / 2; ++np) {
          uint32_t r[4];
          ldmatrix_x4(r, wt + (warp_n * S::kWN + np * 16 + (lane & 7) + ((lane >> 4) << 3)) * kTileStride + kk * 16 +
                             ((lane >> 3) & 1) * 8);
          bf[2 * np][0] = r[0], bf[2 * np][1] = r[1], bf[2 * np + 1][0] = r[2], bf[2 * np + 1][1] = r[3];
        }
#pragma unroll
        for (int mt = 0; mt < S::kMT; ++mt)
#pragma unroll
          for (int nt = 0; nt < S::kNT; ++nt) {
            if constexpr (F == WeightFormat::Fp8Block) mma_bf16_16816(part[wi][mt][nt], af[mt], bf[nt]);
            else mma_bf16_16816(acc[wi][mt][nt], af[mt], bf[nt]);
          }
      }
    }

    if constexpr (F == WeightFormat::Fp8Block) {
      // Promote at the end of each 128-k block (and of K): its scale is the same for the whole tile.
      if ((t + 1) * kBK % 128 == 0 || t + 1 == ktiles) {
#pragma unroll
        for (int wi = 0; wi < S::kWeights; ++wi) {
          const float s = __uint_as_float(scales[wi]);
#pragma unroll
          for (int mt = 0; mt < S::kMT; ++mt)
#pragma unroll
            for (int nt = 0; nt < S::kNT; ++nt)
#pragma unroll
              for (int i = 0; i < 4; ++i) {
                acc[wi][mt][nt][i] += part[wi][mt][nt][i] * s;
                part[wi][mt][nt][i] = 0.0f;
              }
        }
      }
    }
  }
  cp_async_wait<0>();

  const int g = lane >> 2, j = lane & 3;
  const float gscale = F == WeightFormat::Nvfp4 ? w[0].global_scale : 1.0f;
  const float uscale = F == WeightFormat::Nvfp4 ? w[S::kWeights - 1].global_scale : 1.0f;
#pragma unroll
  for (int mt = 0; mt < S::kMT; ++mt)
#pragma unroll
    for (int nt = 0; nt < S::kNT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t m = tile.begin + warp_m * 64 + mt * 16 + g + (i >= 2 ? 8 : 0);
        const int64_t col = n0 + warp_n * S::kWN + nt * 8 + 2 * j + (i & 1);
        if (m >= tile.end || col >= N) continue;
        float v = acc[0][mt][nt][i] * gscale;
        if constexpr (kSwiGlu) v = clamped_swiglu(v, acc[1][mt][nt][i] * uscale, a.swiglu_limit);
        if (a.y_bf16) static_cast<uint16_t*>(a.y)[m * N + col] = float_to_bf16_bits(v);
        else static_cast<float*>(a.y)[m * N + col] = v;
      }
}

template <WeightFormat F, int kBN, bool kSwiGlu, int kVec>
void launch(const WeightGemmArgs& a, int64_t row_tiles, StreamHandle stream) {
  using S = PrefillShape<F, kBN, kSwiGlu>;
  auto kernel = weight_gemm_prefill_kernel<F, kBN, kSwiGlu, kVec>;
  allow_dynamic_shared_memory(reinterpret_cast<const void*>(kernel), S::kSharedBytes, "weight_gemm_prefill");
  const dim3 grid(static_cast<unsigned>(row_tiles), ceil_div(a.n, kBN));
  kernel<<<grid, kThreads, S::kSharedBytes, stream>>>(a);
  check_launch("weight_gemm_prefill", [&] {
    return "rows=" + std::to_string(a.rows) + " N=" + std::to_string(a.n) + " K=" + std::to_string(a.k) +
           " row_tiles=" + std::to_string(row_tiles);
  });
}

template <WeightFormat F>
void launch_format(const WeightGemmArgs& a, bool swiglu, int64_t row_tiles, StreamHandle stream) {
  // FP4 rows of K/2 bytes are only 8-byte aligned when K % 32 == 16.
  constexpr bool kFp4 = F == WeightFormat::Nvfp4 || F == WeightFormat::Mxfp4;
  if constexpr (!kFp4) {
    swiglu ? launch<F, 64, true, 16>(a, row_tiles, stream) : launch<F, 128, false, 16>(a, row_tiles, stream);
    return;
  }
  const bool vec16 = (a.k / 2) % 16 == 0;
  if (swiglu) {
    vec16 ? launch<F, 64, true, 16>(a, row_tiles, stream) : launch<F, 64, true, 8>(a, row_tiles, stream);
  } else {
    vec16 ? launch<F, 128, false, 16>(a, row_tiles, stream) : launch<F, 128, false, 8>(a, row_tiles, stream);
  }
}

}  // namespace

void launch_weight_gemm_prefill(const WeightGemmArgs& a, WeightFormat format, bool swiglu, int64_t row_tiles,
                                StreamHandle stream) {
  // Hopper takes the wgmma kernels (weight_gemm_prefill_sm90.cu); other devices these.
  const DeviceFacts& dev = current_device_facts();
  if (dev.major == 9 && dev.minor == 0) return launch_weight_gemm_prefill_sm90(a, format, swiglu, dev.multiprocessors, stream);
  switch (format) {
    case WeightFormat::Nvfp4: return launch_format<WeightFormat::Nvfp4>(a, swiglu, row_tiles, stream);
    case WeightFormat::Mxfp4: return launch_format<WeightFormat::Mxfp4>(a, swiglu, row_tiles, stream);
    case WeightFormat::Fp8Block: return launch_format<WeightFormat::Fp8Block>(a, swiglu, row_tiles, stream);
    case WeightFormat::Bf16: return launch_format<WeightFormat::Bf16>(a, swiglu, row_tiles, stream);
  }
}

}  // namespace fp4kit::cuda
