// The decode path of the weight GEMMs: at most 16 rows of x at a time against a weight streamed
// once from memory.
//
// Work split. A block is 8 warps. Without the SwiGLU epilogue a warp owns 16 weight rows (output
// columns), two mma n-tiles: lane (g, j) streams rows g and g + 8; with it, 8 rows of the gate and
// the same 8 of the up matrix. Within a quad of lanes (one row), lane j copies, per 128 k (a
// "chunk"), the 32 elements [32j, 32j + 32): 16 bytes for FP4, 32 for FP8, 64 for BF16, so one
// warp instruction covers 64 contiguous bytes of each row. The weight goes through a per-warp ring
// of steps in shared memory filled by cp.async, two or three steps ahead of the products, with no
// barrier (each lane reads back only what it copied). Block scales are loaded into registers with
// the step and read only at its products: the step loop is unrolled by the ring depth so that no
// instruction touches a register whose load is still in flight (that would wait for the load).
// When the row blocks alone cannot fill the machine (a dense product with small N), a cluster of
// up to 8 blocks splits K for the same rows and the blocks add their F32 partial sums through
// distributed shared memory, in rank order: deterministic, no workspace, no second launch.
//
// Products. The decoded BF16 pairs feed mma.sync m16n8k16 directly: for each mma, lane j supplies
// 4 consecutive k of its own chunk as the k slots {2j, 2j+1, 2j+8, 2j+9}, and reads the matching x
// elements (rows g and g + 8) from shared memory; one 16-byte read serves two mmas of every row
// tile. The sum over k is the same set of products in another order. x is staged per segment of K
// with cp.async into two buffers, padded 16 bytes per 64 elements so that a quad's reads fall in
// distinct banks. FP8 block scales multiply the F32 sums of each chunk (a chunk is one 128-k
// block); NVFP4's global scale multiplies the result.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "base/error.h"
#include "cuda/check.cuh"
#include "cuda/device_facts.cuh"
#include "cuda/mma_sm80.cuh"
#include "cuda/thread_block_cluster.cuh"
#include "cuda/weight_decode.cuh"
#include "cuda/weight_gemm_kernels.cuh"

namespace fp4kit::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kPassRows = 16;                    // rows of x per pass (the mma's M)
constexpr int kChunk = 128;                      // k per chunk (a quad's k per load)
constexpr int kMaxCluster = 8;                   // the portable cluster size
constexpr int kBlockSharedBytes = 112 * 1024;    // two blocks per multiprocessor (227 KB)

template <WeightFormat F>
struct DecodeFormat {
  // 32-bit words of one lane's 32 elements of a row.
  static constexpr int kWords = F == WeightFormat::Bf16 ? 16 : (F == WeightFormat::Fp8Block ? 8 : 4);
  // Bytes of a row per 2 elements.
  static constexpr int kBytesPer2 = F == WeightFormat::Bf16 ? 4 : (F == WeightFormat::Fp8Block ? 2 : 1);
};

// One step: one chunk of each of the lane's rows of each matrix (the gate, and with the SwiGLU
// epilogue the up matrix): 32 bytes per lane for FP4, 64 with SwiGLU or for FP8, up to 256 for
// BF16 with SwiGLU. The weight streams through a per-warp ring of kStages steps in shared memory
// (256 bytes per lane, 64 KB per block where the format allows), filled by cp.async: kStages - 1
// steps are in flight while one is decoded, without registers or barriers (each lane reads back
// only what it copied).
template <WeightFormat F, bool kSwiGlu>
struct StepShape {
  static constexpr int kMats = kSwiGlu ? 2 : 1;
  // Row tiles per warp: with SwiGLU a lane streams one row of each matrix, else two rows.
  static constexpr int kTiles = kSwiGlu ? 1 : 2;
  static constexpr int kWarpRows = 8 * kTiles;
  static constexpr int kBlockRows = kWarps * kWarpRows;
  static constexpr int kPieces = DecodeFormat<F>::kWords / 4;  // 16-byte pieces of a lane's chunk
  static constexpr int kChunks = 1;
  static constexpr int kLanePieces = kMats * kTiles * kChunks * kPieces;  // per lane per step
  // FP4: three stages (two steps in flight) keep the kernel within 128 registers without spills.
  static constexpr int kStages = kPieces == 1 ? 3 : (256 / (kLanePieces * 16) < 2 ? 2 : (256 / (kLanePieces * 16) > 4 ? 4 : 256 / (kLanePieces * 16)));
  static constexpr int kRingBytes = kWarps * 32 * kStages * kLanePieces * 16;
};

// Element k of a staged x row sits at pad(k): 8 elements (16 bytes) of padding per 64.
__host__ __device__ constexpr int padded(int k) { return k + (k >> 6) * 8; }
// Elements per staged row for `chunks` chunks; = 16 (mod 64), so rows g, g+1 fall in other banks.
__host__ __device__ constexpr int x_stride(int chunks) { return (padded(chunks * kChunk) + 63) / 64 * 64 + 16; }
// The launcher allocates segment_bytes(rows, s) for its s, from which the kernel finds s again.
__host__ __device__ constexpr int segment_bytes(int rows, int chunks) { return 4 * rows * (144 * chunks + 80); }
// The most chunks (a multiple of `step`, at least `step`) whose two staged segments of `rows` rows fit `bytes`.
__host__ __device__ inline int segment_chunks(int rows, int bytes, int step, int cap) {
  int s = (bytes / (4 * rows) - 80) / 144;  // x_stride(s) <= 144 s + 80
  s = s / step * step;
  s = s < step ? step : s;
  return s < cap ? s : cap;
}

// What the launcher adds to WeightGemmArgs.
struct DecodePlan {
  int32_t chunks = 0;   // chunks of K, ceil(K / 128)
  int32_t x_bytes = 0;  // shared memory for staged x (both segment buffers), after the weight ring
};

// Copies one lane's 32 elements of row `row` from element kc into its ring pieces `dst[q * 32]`
// (zeros past `k_end` or when !ok; nothing is read then). FP4 rows are K/2 bytes: with
// K % 32 == 16 they are only 8-byte aligned (kAligned16 false) and go in 8-byte halves.
template <WeightFormat F, bool kAligned16>
__device__ __forceinline__ void copy_chunk(uint4* dst, const uint8_t* row, int64_t kc, int64_t k_end, bool ok) {
  if constexpr (F == WeightFormat::Nvfp4 || F == WeightFormat::Mxfp4) {
    const uint8_t* p = row + kc / 2;
    if constexpr (kAligned16) {
      const bool valid = ok && kc < k_end;  // K % 32 == 0: chunks are whole
      cp_async_zfill<16>(dst, valid ? p : row, valid);
    } else {
      const bool lo = ok && kc < k_end, hi = ok && kc + 16 < k_end;
      cp_async_zfill<8>(dst, lo ? p : row, lo);
      cp_async_zfill<8>(reinterpret_cast<uint8_t*>(dst) + 8, hi ? p + 8 : row, hi);
    }
  } else {
    constexpr int kBytesPerElement = F == WeightFormat::Bf16 ? 2 : 1;
    constexpr int kElementsPer16 = 16 / kBytesPerElement;
#pragma unroll
    for (int q = 0; q < DecodeFormat<F>::kWords / 4; ++q) {
      const bool valid = ok && kc + (q + 1) * kElementsPer16 <= k_end;
      cp_async_zfill<16>(dst + q * 32, valid ? row + (kc + q * kElementsPer16) * kBytesPerElement : row, valid);
    }
  }
}

// The scales of one step, as raw loads that stay untouched until the step's products (the first
// instruction that reads a register a load is still filling waits for the load): NVFP4 the two
// E4M3 bytes of the lane's chunk, MXFP4 its E8M0 byte, FP8 the 128x128 block scale of the warp's
// rows and the chunk (E8M0 byte or F32 bits; the same for every lane, since a lane's mma sums are
// other rows' than the ones it loads). Loads past k_end or past the last row read the first scale
// instead and count as 0, so padding decodes to 0, not NaN.
template <WeightFormat F, bool kSwiGlu>
struct StepScales {
  uint32_t raw[StepShape<F, kSwiGlu>::kMats][StepShape<F, kSwiGlu>::kTiles][2];
};

// Which raw scales of a step count (the same test as when they were loaded, redone at the
// products rather than kept in a register): bit (mat * kTiles + r) * 2 + b for raw[mat][r][b].
template <WeightFormat F, bool kSwiGlu, typename Rows>
__device__ __forceinline__ uint32_t scale_validity(const Rows& lr, int64_t chunk, int64_t k_end, int j) {
  using S = StepShape<F, kSwiGlu>;
  const int64_t kc = chunk * kChunk + 32 * j;
  uint32_t valid = 0;
#pragma unroll
  for (int mat = 0; mat < S::kMats; ++mat)
#pragma unroll
    for (int r = 0; r < S::kTiles; ++r) {
      const int bit = (mat * S::kTiles + r) * 2;
      if constexpr (F == WeightFormat::Fp8Block) {
        if (r == 0 && chunk * kChunk < k_end) valid |= 1u << bit;
      } else {
        if (lr.ok[r] && kc < k_end) valid |= 1u << bit;
        if (lr.ok[r] && kc + 16 < k_end) valid |= 2u << bit;
      }
    }
  return valid;
}

// What a lane needs to find its rows: per matrix the two row starts and whether they exist.
template <bool kSwiGlu>
struct LaneRows {
  static constexpr int kMats = kSwiGlu ? 2 : 1, kTiles = kSwiGlu ? 1 : 2;
  GemmWeight w[kMats];
  const uint8_t* row[kMats][kTiles];
  int64_t n[kTiles];
  int64_t n0;
  bool ok[kTiles];
};

// Issues the copies of one step into ring stage `ring` (this lane's pieces) and loads its scales.
template <WeightFormat F, bool kSwiGlu, bool kAligned16>
__device__ __forceinline__ void issue_step(uint4* ring, StepScales<F, kSwiGlu>& sc, const LaneRows<kSwiGlu>& lr,
                                           int64_t chunk, int64_t K, int64_t k_end, int j) {
  using S = StepShape<F, kSwiGlu>;
#pragma unroll
  for (int mat = 0; mat < S::kMats; ++mat)
#pragma unroll
    for (int r = 0; r < S::kTiles; ++r)
#pragma unroll
      for (int u = 0; u < S::kChunks; ++u) {
        const int64_t kc = (chunk + u) * kChunk + 32 * j;
        const int piece = ((mat * S::kTiles + r) * S::kChunks + u) * S::kPieces;
        copy_chunk<F, kAligned16>(ring + piece * 32, lr.row[mat][r], kc, k_end, lr.ok[r]);
      }
  const int64_t kc = chunk * kChunk + 32 * j;
#pragma unroll
  for (int mat = 0; mat < S::kMats; ++mat) {
    const uint8_t* base = static_cast<const uint8_t*>(lr.w[mat].scales);
#pragma unroll
    for (int r = 0; r < S::kTiles; ++r) {
      if constexpr (F == WeightFormat::Nvfp4) {
        const bool v0 = lr.ok[r] && kc < k_end, v1 = lr.ok[r] && kc + 16 < k_end;
        const int64_t i = lr.n[r] * (K / 16) + kc / 16;
        sc.raw[mat][r][0] = __ldg(v0 ? base + i : base);
        sc.raw[mat][r][1] = __ldg(v1 ? base + i + 1 : base);
      } else if constexpr (F == WeightFormat::Mxfp4) {
        const bool v0 = lr.ok[r] && kc < k_end;
        sc.raw[mat][r][0] = __ldg(v0 ? base + lr.n[r] * (K / 32) + kc / 32 : base);
      } else if constexpr (F == WeightFormat::Fp8Block) {
        if (r == 0) {
          const bool v0 = chunk * kChunk < k_end;
          const int64_t i = v0 ? (lr.n0 / 128) * ((K + 127) / 128) + chunk : 0;
          sc.raw[mat][0][0] = lr.w[mat].fp8_scales_f32 ? __float_as_uint(__ldg(reinterpret_cast<const float*>(base) + i))
                                                       : static_cast<uint32_t>(__ldg(base + i));
        }
      }
    }
  }
}

// Half h of a chunk (16 elements) -> 8 BF16 pairs (pair q = elements 2q, 2q+1 of the half).
// `w`: the half's words; `splat` the block scale as a BF16 pair (NVFP4: of this half's block;
// MXFP4: of the chunk).
template <WeightFormat F>
__device__ __forceinline__ void decode_half(const uint32_t* w, uint32_t splat, uint32_t* pairs) {
  if constexpr (F == WeightFormat::Nvfp4 || F == WeightFormat::Mxfp4) {
    e2m1x8_to_bf16x2(w[0], pairs);
    e2m1x8_to_bf16x2(w[1], pairs + 4);
#pragma unroll
    for (int i = 0; i < 8; ++i) pairs[i] = bf16x2_mul(pairs[i], splat);
  } else if constexpr (F == WeightFormat::Fp8Block) {
#pragma unroll
    for (int i = 0; i < 4; ++i) e4m3x4_to_bf16x2(w[i], pairs[2 * i], pairs[2 * i + 1]);
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) pairs[i] = w[i];
  }
}

__device__ __forceinline__ void put_words(uint32_t* w, const uint4& v) { w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w; }

// The products of one step from ring stage `ring`: for each chunk, each half, two 16-byte x reads
// per x row group and four mmas per (matrix, row tile).
template <WeightFormat F, bool kSwiGlu>
__device__ __forceinline__ void compute_step(const uint4* ring, const StepScales<F, kSwiGlu>& sc, uint32_t valid,
                                             const LaneRows<kSwiGlu>& lr,
                                             float (&acc)[StepShape<F, kSwiGlu>::kMats][StepShape<F, kSwiGlu>::kTiles][4], const uint16_t* xg,
                                             const uint16_t* xg8, bool has_g, bool has_g8, int x_off) {
  using S = StepShape<F, kSwiGlu>;
  constexpr bool kFp4 = F == WeightFormat::Nvfp4 || F == WeightFormat::Mxfp4;
#pragma unroll
  for (int u = 0; u < S::kChunks; ++u) {
    // Block scales as BF16 pairs: NVFP4 one per half, MXFP4 one per chunk.
    uint32_t splat[S::kMats][S::kTiles][2];
    uint32_t fp4_words[S::kMats][S::kTiles][4];
#pragma unroll
    for (int mat = 0; mat < S::kMats; ++mat)
#pragma unroll
      for (int r = 0; r < S::kTiles; ++r) {
        const int bit = (mat * S::kTiles + r) * 2;
        if constexpr (F == WeightFormat::Nvfp4) {
          const uint32_t lo = (valid >> bit & 1u) ? sc.raw[mat][r][0] : 0u;
          const uint32_t hi = (valid >> bit & 2u) ? sc.raw[mat][r][1] : 0u;
          e4m3x2_to_bf16_splats(lo | hi << 8, splat[mat][r][0], splat[mat][r][1]);
        } else if constexpr (F == WeightFormat::Mxfp4) {
          const uint32_t byte = sc.raw[mat][r][0];
          splat[mat][r][0] = splat[mat][r][1] = (valid >> bit & 1u) ? splat_bf16(e8m0_to_bf16_bits(byte)) : 0u;
        } else {
          splat[mat][r][0] = splat[mat][r][1] = 0;
        }
        if constexpr (kFp4) put_words(fp4_words[mat][r], ring[(((mat * S::kTiles + r) * S::kChunks + u) * S::kPieces) * 32]);
      }
    float block_sum[S::kMats][S::kTiles][4];
#pragma unroll
    for (int mat = 0; mat < S::kMats; ++mat)
#pragma unroll
      for (int r = 0; r < S::kTiles; ++r)
#pragma unroll
        for (int i = 0; i < 4; ++i) block_sum[mat][r][i] = 0.0f;
    const int off = x_off + u * padded(kChunk);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      // x elements [16h, 16h + 16) of this lane's 32, rows g and g + 8 (zeros for absent rows).
      uint4 xa[2] = {make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0)};
      uint4 xb[2] = {make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0)};
      if (has_g) {
        xa[0] = *reinterpret_cast<const uint4*>(xg + off + 16 * h);
        xa[1] = *reinterpret_cast<const uint4*>(xg + off + 16 * h + 8);
      }
      if (has_g8) {
        xb[0] = *reinterpret_cast<const uint4*>(xg8 + off + 16 * h);
        xb[1] = *reinterpret_cast<const uint4*>(xg8 + off + 16 * h + 8);
      }
#pragma unroll
      for (int mat = 0; mat < S::kMats; ++mat)
#pragma unroll
        for (int r = 0; r < S::kTiles; ++r) {
          const uint4* piece = ring + (((mat * S::kTiles + r) * S::kChunks + u) * S::kPieces) * 32;
          uint32_t words[8];
          if constexpr (kFp4) {
            words[0] = fp4_words[mat][r][2 * h], words[1] = fp4_words[mat][r][2 * h + 1];
          } else if constexpr (F == WeightFormat::Fp8Block) {
            put_words(words, piece[h * 32]);
          } else {
            put_words(words, piece[(2 * h) * 32]);
            put_words(words + 4, piece[(2 * h + 1) * 32]);
          }
          uint32_t pairs[8];
          decode_half<F>(words, splat[mat][r][h], pairs);
          float* dst = F == WeightFormat::Fp8Block ? block_sum[mat][r] : acc[mat][r];
#pragma unroll
          for (int t = 0; t < 2; ++t) {
            const uint32_t a0[4] = {xa[t].x, xb[t].x, xa[t].y, xb[t].y};
            const uint32_t a1[4] = {xa[t].z, xb[t].z, xa[t].w, xb[t].w};
            const uint32_t b0[2] = {pairs[4 * t], pairs[4 * t + 1]};
            const uint32_t b1[2] = {pairs[4 * t + 2], pairs[4 * t + 3]};
            mma_bf16_16816(dst, a0, b0);
            mma_bf16_16816(dst, a1, b1);
          }
        }
    }
    if constexpr (F == WeightFormat::Fp8Block) {  // promote the chunk's sums with its block scale
      float fp8_scale[S::kMats];
#pragma unroll
      for (int mat = 0; mat < S::kMats; ++mat) {
        const uint32_t raw = sc.raw[mat][0][0];
        fp8_scale[mat] = !(valid >> (mat * S::kTiles * 2) & 1u) ? 0.0f
                         : (lr.w[mat].fp8_scales_f32 ? __uint_as_float(raw) : e8m0_to_float(raw));
      }
#pragma unroll
      for (int mat = 0; mat < S::kMats; ++mat)
#pragma unroll
        for (int r = 0; r < S::kTiles; ++r)
#pragma unroll
          for (int i = 0; i < 4; ++i) acc[mat][r][i] += block_sum[mat][r][i] * fp8_scale[mat];
    }
  }
}

// y[m, col] from the F32 sums of the gate (and up) product.
template <WeightFormat F, bool kSwiGlu>
__device__ __forceinline__ void store_output(const WeightGemmArgs& a, const LaneRows<kSwiGlu>& lr, int64_t m,
                                             int64_t col, float gate, float up) {
  float v = gate * (F == WeightFormat::Nvfp4 ? lr.w[0].global_scale : 1.0f);
  if constexpr (kSwiGlu) {
    up *= F == WeightFormat::Nvfp4 ? lr.w[1].global_scale : 1.0f;
    v = clamped_swiglu(v, up, a.swiglu_limit);
  }
  if (a.y_bf16) static_cast<uint16_t*>(a.y)[m * a.n + col] = float_to_bf16_bits(v);
  else static_cast<float*>(a.y)[m * a.n + col] = v;
}

// Grid: x = the cluster's blocks (ranks splitting K), y = 128-row blocks of N, z = group tiles.
// Shared memory: the weight ring, then staged x, then (clusters) the partial sums.
template <WeightFormat F, bool kSwiGlu, bool kAligned16>
__global__ void __launch_bounds__(kThreads, 2) weight_gemm_decode_kernel(WeightGemmArgs a, DecodePlan plan) {
  using S = StepShape<F, kSwiGlu>;
  constexpr int U = S::kChunks, kMats = S::kMats, kStages = S::kStages, kTiles = S::kTiles;
  constexpr int kWarpRows = S::kWarpRows, kBlockRows = S::kBlockRows;
  extern __shared__ uint4 shared_words[];
  uint16_t* xs = reinterpret_cast<uint16_t*>(reinterpret_cast<char*>(shared_words) + S::kRingBytes);
  float* partial = reinterpret_cast<float*>(reinterpret_cast<char*>(xs) + plan.x_bytes);  // [mat][16][128]

  GroupTile tile;
  // One tile per non-empty group (as tall as the group); every block of a cluster finds the same.
  if (!find_group_tile(a, a.rows, blockIdx.z, tile)) return;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, j = lane & 3;
  const int64_t N = a.n, K = a.k;
  const int ranks = static_cast<int>(gridDim.x), rank = static_cast<int>(blockIdx.x);
  const int chunk_begin = rank * plan.chunks / ranks, chunk_end = (rank + 1) * plan.chunks / ranks;
  const int64_t k_end = min(K, static_cast<int64_t>(chunk_end) * kChunk);
  const int steps = (chunk_end - chunk_begin + U - 1) / U;
  const int64_t block_row0 = static_cast<int64_t>(blockIdx.y) * kBlockRows;
  const int64_t n0 = block_row0 + warp * kWarpRows;
  const bool warp_active = n0 < N;
  // This lane's pieces of the warp's ring: stage st at ring + st * kLanePieces * 32.
  uint4* ring = shared_words + warp * (kStages * S::kLanePieces * 32) + lane;

  LaneRows<kSwiGlu> lr;
  lr.w[0] = gate_weight(a, tile.group);
  if constexpr (kSwiGlu) lr.w[1] = a.ups[tile.group];
  lr.n0 = n0;
  const int64_t row_bytes = K * DecodeFormat<F>::kBytesPer2 / 2;
#pragma unroll
  for (int r = 0; r < kTiles; ++r) {
    lr.n[r] = n0 + 8 * r + g;
    lr.ok[r] = lr.n[r] < N;
#pragma unroll
    for (int mat = 0; mat < kMats; ++mat)
      lr.row[mat][r] = static_cast<const uint8_t*>(lr.w[mat].data) + (lr.ok[r] ? lr.n[r] : 0) * row_bytes;
  }

  for (int64_t m0 = tile.begin; m0 < tile.end; m0 += kPassRows) {
    const int rows_here = static_cast<int>(tile.end - m0 < kPassRows ? tile.end - m0 : kPassRows);
    // Staged segments: as many chunks as two buffers of rows_here rows hold.
    const int seg_chunks = segment_chunks(rows_here, plan.x_bytes, U, steps * U);
    const int stride = x_stride(seg_chunks);
    const int steps_per_seg = seg_chunks / U;
    const int segments = (steps + steps_per_seg - 1) / steps_per_seg;
    const uint16_t* xrow = a.x + m0 * K;

    // x of segment `seg` into buffer seg % 2 (zeros past this block's k range); the copies join
    // the next committed group.
    auto stage = [&](int seg) {
      uint16_t* buf = xs + (seg & 1) * rows_here * stride;
      const int64_t k0 = static_cast<int64_t>(chunk_begin + seg * seg_chunks) * kChunk;
      const int vectors = seg_chunks * (kChunk / 8);
      for (int i = threadIdx.x; i < rows_here * vectors; i += kThreads) {
        const int r = i / vectors, v = i - r * vectors;
        const int64_t k = k0 + 8 * v;
        const bool valid = k < k_end;
        cp_async_zfill<16>(buf + r * stride + padded(8 * v), valid ? xrow + r * K + k : xrow, valid);
      }
    };

    float acc[kMats][kTiles][4];
#pragma unroll
    for (int mat = 0; mat < kMats; ++mat)
#pragma unroll
      for (int r = 0; r < kTiles; ++r)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[mat][r][i] = 0.0f;

    cp_async_wait<0>();
    __syncthreads();  // the previous pass is done with the staged x, the ring and the partial sums
    stage(0);
    // Step t's copies go to ring stage t % kStages as one cp.async group (empty past the last
    // step), kStages - 1 steps ahead of its products; its scales go to sc[t % kStages].
    StepScales<F, kSwiGlu> sc[kStages];  // sc[t % kStages]: the scales of step t
    auto issue = [&](int t, StepScales<F, kSwiGlu>& s) {
      if (t < steps && warp_active)
        issue_step<F, kSwiGlu, kAligned16>(ring + (t % kStages) * (S::kLanePieces * 32), s, lr,
                                           chunk_begin + static_cast<int64_t>(t) * U, K, k_end, j);
      cp_async_commit();
    };
    const bool has_g = g < rows_here, has_g8 = g + 8 < rows_here;
    auto consume = [&](int t, const StepScales<F, kSwiGlu>& s) {
      const int seg = t / steps_per_seg;
      if (t == seg * steps_per_seg) {
        cp_async_wait<0>();
        __syncthreads();  // segment seg is staged; everyone is done with segment seg - 1
        if (seg + 1 < segments) stage(seg + 1);
      } else {
        cp_async_wait<kStages - 1>();
      }
      if (!warp_active) return;
      const uint16_t* buf = xs + (seg & 1) * rows_here * stride;
      const int chunk_in_seg = t * U - seg * seg_chunks;
      const int x_off = padded(chunk_in_seg * kChunk + 32 * j);
      const uint32_t valid = scale_validity<F, kSwiGlu>(lr, chunk_begin + static_cast<int64_t>(t) * U, k_end, j);
      compute_step<F, kSwiGlu>(ring + (t % kStages) * (S::kLanePieces * 32), s, valid, lr, acc, buf + g * stride,
                               buf + (g + 8) * stride, has_g, has_g8, x_off);
    };
#pragma unroll
    for (int i = 0; i < kStages - 1; ++i) issue(i, sc[i]);
    // Unrolled by the ring depth so that each step's scales stay in their own registers.
    for (int t = 0; t < steps; t += kStages) {
#pragma unroll
      for (int i = 0; i < kStages; ++i) {
        if (t + i >= steps) break;
        issue(t + i + kStages - 1, sc[(i + kStages - 1) % kStages]);
        consume(t + i, sc[i]);
      }
    }

    if (ranks == 1) {
      if (!warp_active) continue;
#pragma unroll
      for (int r = 0; r < kTiles; ++r)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int64_t m = m0 + g + (i >= 2 ? 8 : 0);
          const int64_t col = n0 + 8 * r + 2 * j + (i & 1);
          if (m >= m0 + rows_here || col >= N) continue;
          store_output<F, kSwiGlu>(a, lr, m, col, acc[0][r][i], kSwiGlu ? acc[kMats - 1][r][i] : 0.0f);
        }
      continue;
    }
    // Cluster: the partial sums go to shared memory; rank q adds every ranks-th element over
    // all ranks in rank order.
    if (warp_active) {
#pragma unroll
      for (int mat = 0; mat < kMats; ++mat)
#pragma unroll
        for (int r = 0; r < kTiles; ++r)
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const int mr = g + (i >= 2 ? 8 : 0);
            const int nl = warp * kWarpRows + 8 * r + 2 * j + (i & 1);
            partial[(mat * kPassRows + mr) * kBlockRows + nl] = acc[mat][r][i];
          }
    }
    cluster_sync_all();
    for (int e = rank + ranks * static_cast<int>(threadIdx.x); e < rows_here * kBlockRows; e += ranks * kThreads) {
      const int64_t col = block_row0 + (e % kBlockRows);
      if (col >= N) continue;
      float sum[kMats];
#pragma unroll
      for (int mat = 0; mat < kMats; ++mat) sum[mat] = 0.0f;
      for (int q = 0; q < ranks; ++q) {
        const float* peer = cluster_peer(partial, q);
#pragma unroll
        for (int mat = 0; mat < kMats; ++mat) sum[mat] += peer[mat * kPassRows * kBlockRows + e];
      }
      store_output<F, kSwiGlu>(a, lr, m0 + e / kBlockRows, col, sum[0], sum[kMats - 1]);
    }
    cluster_sync_all();  // no block leaves (or restages) while others read its partial sums
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
void launch(const WeightGemmArgs& a, int64_t tiles, StreamHandle stream) {
  using S = StepShape<F, kSwiGlu>;
  auto kernel = weight_gemm_decode_kernel<F, kSwiGlu, kAligned16>;
  const DeviceFacts& dev = current_device_facts();
  DecodePlan plan;
  plan.chunks = static_cast<int32_t>((a.k + kChunk - 1) / kChunk);
  const int64_t row_blocks = (a.n + S::kBlockRows - 1) / S::kBlockRows;
  // Split K over a cluster until the blocks fill every multiprocessor twice (each rank keeps at
  // least two chunks).
  int ranks = 1;
  if (dev.major >= 9) {  // thread block clusters
    const int64_t want = (2 * static_cast<int64_t>(dev.multiprocessors) + row_blocks * tiles - 1) / (row_blocks * tiles);
    ranks = static_cast<int>(std::clamp<int64_t>(std::min<int64_t>(want, plan.chunks / 2), 1, kMaxCluster));
  }
  const int rows = static_cast<int>(std::min<int64_t>(kPassRows, a.rows));
  const int range = (plan.chunks + ranks - 1) / ranks;
  const int cap = (range + S::kChunks - 1) / S::kChunks * S::kChunks;
  // x gets what two blocks per multiprocessor leave beside the ring and the partial sums, and at
  // least one step's worth.
  const int partial_bytes = ranks > 1 ? S::kMats * kPassRows * S::kBlockRows * static_cast<int>(sizeof(float)) : 0;
  const int spare = kBlockSharedBytes - S::kRingBytes - partial_bytes;
  const int seg = segment_chunks(rows, std::max(spare, segment_bytes(rows, S::kChunks)), S::kChunks, cap);
  plan.x_bytes = segment_bytes(rows, seg);
  const size_t smem = static_cast<size_t>(S::kRingBytes) + plan.x_bytes + partial_bytes;
  allow_dynamic_shared_memory(reinterpret_cast<const void*>(kernel), smem, "weight_gemm_decode");
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>(ranks), static_cast<unsigned>(row_blocks), static_cast<unsigned>(tiles));
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute cluster;
  cluster.id = cudaLaunchAttributeClusterDimension;
  cluster.val.clusterDim.x = static_cast<unsigned>(ranks);
  cluster.val.clusterDim.y = 1;
  cluster.val.clusterDim.z = 1;
  if (ranks > 1) {
    config.attrs = &cluster;
    config.numAttrs = 1;
  }
  const auto shape = [&] {
    return "M=" + std::to_string(a.rows) + " N=" + std::to_string(a.n) + " K=" + std::to_string(a.k) +
           " tiles=" + std::to_string(tiles) + " cluster=" + std::to_string(ranks);
  };
  check(cudaLaunchKernelEx(&config, kernel, a, plan), [&] { return "kernel weight_gemm_decode [" + shape() + "]"; });
  check_launch("weight_gemm_decode", shape);
}

template <WeightFormat F>
void launch_format(const WeightGemmArgs& a, bool swiglu, int64_t tiles, StreamHandle stream) {
  // FP4 rows of K/2 bytes are 16-byte aligned when K % 32 == 0; FP8 and BF16 rows always are.
  const bool aligned16 = !(F == WeightFormat::Nvfp4 || F == WeightFormat::Mxfp4) || a.k % 32 == 0;
  if (swiglu) {
    aligned16 ? launch<F, true, true>(a, tiles, stream) : launch<F, true, false>(a, tiles, stream);
  } else {
    aligned16 ? launch<F, false, true>(a, tiles, stream) : launch<F, false, false>(a, tiles, stream);
  }
}

}  // namespace

void launch_weight_gemm_decode(const WeightGemmArgs& a, WeightFormat format, bool swiglu, int64_t tiles,
                               StreamHandle stream) {
  switch (format) {
    case WeightFormat::Nvfp4: return launch_format<WeightFormat::Nvfp4>(a, swiglu, tiles, stream);
    case WeightFormat::Mxfp4: return launch_format<WeightFormat::Mxfp4>(a, swiglu, tiles, stream);
    case WeightFormat::Fp8Block: return launch_format<WeightFormat::Fp8Block>(a, swiglu, tiles, stream);
    case WeightFormat::Bf16: return launch_format<WeightFormat::Bf16>(a, swiglu, tiles, stream);
  }
}

void launch_reduce_split_k(const WeightGemmArgs& a, int64_t splits, StreamHandle stream) {
  const int64_t total = a.rows * a.n;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((total + 255) / 256, 4096));
  reduce_split_k_kernel<<<blocks, 256, 0, stream>>>(a, splits);
  check_launch("weight_gemm_reduce_split_k", [&] { return "M=" + std::to_string(a.rows) + " N=" + std::to_string(a.n) +
                                                 " splits=" + std::to_string(splits); });
}

}  // namespace fp4kit::cuda
