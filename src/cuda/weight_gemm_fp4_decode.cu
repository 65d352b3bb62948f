// The decode path for FP4 weights (NVFP4, MXFP4) and FP8 128x128-block weights with K a multiple of
// 128: at most 16 rows of x (8 per mma n-tile) against a weight read once, straight from global
// memory into registers.
//
// Why this shape. At M <= 16 the product is a stream of weight bytes: the kernel must keep enough
// of them in flight (bandwidth x latency, a few MB on an H200) and spend few instructions per byte.
// So the weight is the mma's A operand (16 weight rows x 16 k per mma.sync m16n8k16: 256 weight
// elements per instruction), x the B operand (8 rows of x per n-tile), and every lane holds four
// steps of its two rows in registers (a ring refilled as each step is consumed), with no shared
// memory staging and no barrier in the loop.
//
// Dense products, strided batches of them (one grid layer per product: V4's grouped output
// projection, 8 products of one row in one launch instead of 8), sets of products of one x with
// weights of their own (one grid layer per weight: a decode step's projections of one input), and
// grouped FP4 products of a few rows per group (one grid layer per tile of at most 8 rows of one
// group: a decode step's routed experts). Grouped and dense products may end in V4's clamped SwiGLU (the routed experts' and the
// shared expert's w1/w3): then half of a block's warps stream the gate's rows and the other half
// the same rows of the up matrix, and the sums meet in shared memory.
//
// Work split. A warp owns 16 weight rows (A rows g and g + 8 for lane (g, t)). Per step of 128 k, lane
// t of a quad reads the 32 elements [32t, 32t + 32) of each of its rows: 16 bytes of codes and its
// block scales (two E4M3 bytes, or one E8M0), so one warp load covers 64 contiguous bytes of each
// row. For the mma, lane t puts 4 consecutive k of its own 32 into its k slots {2t, 2t+1, 2t+8,
// 2t+9}, and reads the same 4 k of x: the sum over k is the same set of products in another order.
//
// FP8 blocks. A step of 128 k is one scale block, and a warp's 16 rows lie in one 128-row block, so
// one scale per step serves the warp: each step's products go to their own F32 sums, which the
// scale multiplies into the accumulators (as the shared-memory ring kernel does). Lane t reads
// elements [16t, 16t + 16) and [64 + 16t, 64 + 16t + 16) of each row per step (32 bytes in two
// 16-byte loads, so one warp load covers 64 contiguous bytes of each row), decoded to BF16 by the
// hardware's exact E4M3 conversion (NaN stays NaN).
//
// x. A block's warps share their K range, so x for that range is staged once in
// shared memory (for NVFP4 in the split decode's order: k with k + 4 in each 8), padded 16 bytes per 64 so that the 16-byte reads of a quad fall in distinct banks
// and the row stride puts rows g and g + 1 in the other half of the banks.
//
// Early weight reads. The kernel is launched with programmatic stream serialization and lets the
// next kernel launch once its loads are out. It waits for the work before it (griddepcontrol.wait)
// before reading x; for a weight marked read_early, the first steps' weight loads go out before
// that wait, overlapping the previous kernel's tail.
//
// K split. When the row blocks alone cannot fill the GPU, a cluster of up to 8 blocks splits K for
// the same rows; the blocks add their F32 partial sums through distributed shared memory in rank
// order: deterministic, no workspace, no second launch.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "base/error.h"
#include "cuda/check.cuh"
#include "cuda/dependent_launch.cuh"
#include "cuda/device_facts.cuh"
#include "cuda/mma_sm80.cuh"
#include "cuda/thread_block_cluster.cuh"
#include "cuda/weight_decode.cuh"
#include "cuda/weight_gemm_kernels.cuh"

namespace fp4kit::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kStep = 128;      // k per step
// Steps a lane holds in registers (in flight): 32 bytes of each row per FP4 step, 64 per FP8 step.
// Grouped products hold six FP4 steps at three blocks per multiprocessor (V4-Pro's routed experts at
// one token on an H100: NVFP4 183 -> 164 us; MXFP4 at 8 tokens lost 6 %); dense ones four at four
// (six was slower on every dense shape).
template <WeightFormat F, bool kGrouped>
constexpr int kRing = F == WeightFormat::Fp8Block ? 2 : kGrouped ? 6 : 4;
template <bool kGrouped>
constexpr int kBlocksPerSm = kGrouped ? 3 : 4;  // the launch bounds' residency
constexpr int kMaxRanks = 8;    // the portable cluster size
constexpr int kMaxXBytes = 48 * 1024;  // staged x per block (four blocks per multiprocessor)

// Staged x: element k of a row at padded(k) (8 elements of padding per 32), rows `stride` apart.
__host__ __device__ constexpr int padded(int k) { return k + (k >> 5) * 8; }
// Row stride in elements for `steps` steps: = 4 (mod 8) in 16-byte units.
__host__ __device__ constexpr int x_row_stride(int steps) {
  const int units = (padded(steps * kStep) + 7) / 8;
  return (units + ((4 - units % 8) + 8) % 8) * 8;
}

// One step of a lane: 16 bytes of codes of each of its two A rows and their raw scale bytes; for FP8,
// 32 bytes of each row and the step's block scale.
template <WeightFormat F>
struct StepRegs {
  uint4 lo, hi;
  uint32_t scale_lo, scale_hi;
};
template <>
struct StepRegs<WeightFormat::Fp8Block> {
  uint4 lo[2], hi[2];
  float scale;
};

template <WeightFormat F>
__device__ __forceinline__ uint32_t load_scales(const uint8_t* p) {
  if constexpr (F == WeightFormat::Nvfp4) {
    uint16_t v;
    asm("ld.global.nc.L1::no_allocate.u16 %0, [%1];\n" : "=h"(v) : "l"(p));
    return v;
  } else {
    uint16_t v;
    asm("ld.global.nc.L1::no_allocate.u8 %0, [%1];\n" : "=h"(v) : "l"(p));
    return v;
  }
}

// Eight BF16 of x (k0 .. k0 + 7, two per word) -> the pairs (k0, k0 + 4), (k0 + 1, k0 + 5), ...:
// the order of the split decode's weight pairs.
__device__ __forceinline__ uint4 pair_k_with_k_plus_4(uint4 v) {
  return make_uint4(byte_perm(v.x, v.z, 0x5410u), byte_perm(v.x, v.z, 0x7632u), byte_perm(v.y, v.w, 0x5410u),
                    byte_perm(v.y, v.w, 0x7632u));
}

// What a lane reads from: its two A rows' codes and scales, advanced per step (FP8: scale_lo is the
// warp's block scales, one per step, F32 or E8M0 bytes).
struct LaneStream {
  const uint8_t* code_lo;
  const uint8_t* code_hi;
  const uint8_t* scale_lo;
  const uint8_t* scale_hi;
  bool scales_f32;
};

template <WeightFormat F>
__device__ __forceinline__ void load_step(StepRegs<F>& r, const LaneStream& s, int step) {
  if constexpr (F == WeightFormat::Fp8Block) {
    const uint8_t* lo = s.code_lo + step * kStep;
    const uint8_t* hi = s.code_hi + step * kStep;
    r.lo[0] = load_streaming_16(lo), r.lo[1] = load_streaming_16(lo + 64);
    r.hi[0] = load_streaming_16(hi), r.hi[1] = load_streaming_16(hi + 64);
    r.scale = s.scales_f32 ? __ldg(reinterpret_cast<const float*>(s.scale_lo) + step) : e8m0_to_float(__ldg(s.scale_lo + step));
  } else {
    constexpr int kScaleBytesPerStep = F == WeightFormat::Nvfp4 ? 8 : 4;  // per row
    r.lo = load_streaming_16(s.code_lo + step * (kStep / 2));
    r.hi = load_streaming_16(s.code_hi + step * (kStep / 2));
    r.scale_lo = load_scales<F>(s.scale_lo + step * kScaleBytesPerStep);
    r.scale_hi = load_scales<F>(s.scale_hi + step * kScaleBytesPerStep);
  }
}

// NVFP4 decodes by the split decode (codes k and k + 4 of each 8 in one pair, x staged to match);
// MXFP4 keeps the table lookup, whose pairs are the plain values (its E8M0 scales up to 2^127 leave
// no room for the split decode's 2^118).
template <WeightFormat F>
constexpr bool kSplitDecode = F == WeightFormat::Nvfp4;

// The lane's two block-scale pairs (elements 0-15 and 16-31 of its 32) of one row.
template <WeightFormat F>
__device__ __forceinline__ void scale_splats(uint32_t raw, uint32_t& s0, uint32_t& s1) {
  if constexpr (F == WeightFormat::Nvfp4) {
    nvfp4_scale_splats_for_split(raw, s0, s1);
  } else {
    s0 = s1 = splat_bf16(e8m0_to_bf16_bits(raw));
  }
}

// A lane's F32 sums: per n-tile, two accumulators of one mma fragment each.
template <int NT>
__device__ __forceinline__ void zero_sums(float (&a)[NT][2][4]) {
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int i = 0; i < 4; ++i) a[nt][h][i] = 0.0f;
}

// The products of one step: 8 mmas per n-tile, alternating between two accumulators so that the
// dependent chains stay short.
template <WeightFormat F, int NT>
__device__ __forceinline__ void compute_step(const StepRegs<F>& r, const uint16_t* x0, const uint16_t* x1,
                                             float (&acc)[NT][2][4]) {
  uint32_t lo_s[2], hi_s[2];
  scale_splats<F>(r.scale_lo, lo_s[0], lo_s[1]);
  scale_splats<F>(r.scale_hi, hi_s[0], hi_s[1]);
  const uint32_t lo_w[4] = {r.lo.x, r.lo.y, r.lo.z, r.lo.w};
  const uint32_t hi_w[4] = {r.hi.x, r.hi.y, r.hi.z, r.hi.w};
#pragma unroll
  for (int p = 0; p < 4; ++p) {  // elements [8p, 8p + 8) of the lane's 32
    uint32_t lo[4], hi[4];
    if constexpr (kSplitDecode<F>) {
      e2m1x8_to_bf16x2_split(lo_w[p], lo);
      e2m1x8_to_bf16x2_split(hi_w[p], hi);
    } else {
      e2m1x8_to_bf16x2(lo_w[p], lo);
      e2m1x8_to_bf16x2(hi_w[p], hi);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      lo[i] = bf16x2_mul(lo[i], lo_s[p >> 1]);
      hi[i] = bf16x2_mul(hi[i], hi_s[p >> 1]);
    }
    const uint32_t a0[4] = {lo[0], hi[0], lo[1], hi[1]};
    const uint32_t a1[4] = {lo[2], hi[2], lo[3], hi[3]};
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const uint16_t* xr = nt == 0 ? x0 : x1;
      const uint4 xv = *reinterpret_cast<const uint4*>(xr + 8 * p);
      const uint32_t b0[2] = {xv.x, xv.y};
      const uint32_t b1[2] = {xv.z, xv.w};
      mma_bf16_16816(acc[nt][0], a0, b0);
      mma_bf16_16816(acc[nt][1], a1, b1);
    }
  }
}

// The products of one FP8 step: x0/x1 point at the step's staged x of the lane's two x rows; lane t's
// 8-element groups q are at k = 16t + 8q (q < 2) and 64 + 16t + 8(q - 2).
template <int NT>
__device__ __forceinline__ void compute_step_fp8(const StepRegs<WeightFormat::Fp8Block>& r, const uint16_t* x0,
                                                 const uint16_t* x1, int t, float (&acc)[NT][2][4]) {
  float step_acc[NT][2][4];
  zero_sums(step_acc);
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const uint4 lv = r.lo[q >> 1], hv = r.hi[q >> 1];
    uint32_t lo[4], hi[4];
    e4m3x4_to_bf16x2(q & 1 ? lv.z : lv.x, lo[0], lo[1]);
    e4m3x4_to_bf16x2(q & 1 ? lv.w : lv.y, lo[2], lo[3]);
    e4m3x4_to_bf16x2(q & 1 ? hv.z : hv.x, hi[0], hi[1]);
    e4m3x4_to_bf16x2(q & 1 ? hv.w : hv.y, hi[2], hi[3]);
    const uint32_t a0[4] = {lo[0], hi[0], lo[1], hi[1]};
    const uint32_t a1[4] = {lo[2], hi[2], lo[3], hi[3]};
    const int k = (q < 2 ? 0 : 64) + 16 * t + 8 * (q & 1);
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const uint16_t* xr = nt == 0 ? x0 : x1;
      const uint4 xv = *reinterpret_cast<const uint4*>(xr + padded(k));
      const uint32_t b0[2] = {xv.x, xv.y};
      const uint32_t b1[2] = {xv.z, xv.w};
      mma_bf16_16816(step_acc[nt][0], a0, b0);
      mma_bf16_16816(step_acc[nt][1], a1, b1);
    }
  }
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[nt][h][i] += step_acc[nt][h][i] * r.scale;
}

template <WeightFormat F>
__device__ __forceinline__ float global_scale_of(const GemmWeight& w) {
  return F == WeightFormat::Nvfp4 ? w.global_scale : 1.0f;
}

// The product's value from its F32 sum: the split decode's 2^-8 undone first (exact), then one
// rounding by the global scale.
template <WeightFormat F>
__device__ __forceinline__ float product_value(float sum, float global_scale) {
  if constexpr (kSplitDecode<F>) sum *= kSplitSumFactor;
  return sum * global_scale;
}

// y[row, col] of the block's product (y: its first element, rows ldy apart).
__device__ __forceinline__ void store(const WeightGemmArgs& a, void* y, int64_t ldy, int64_t row, int64_t col, float v) {
  if (a.y_bf16) static_cast<uint16_t*>(y)[row * ldy + col] = float_to_bf16_bits(v);
  else static_cast<float*>(y)[row * ldy + col] = v;
}

// Warps of a block along N: with the SwiGLU epilogue the first half streams the gate, the second
// the up matrix, for the same output columns.
template <bool kSwiGlu>
constexpr int kColumnWarps = kSwiGlu ? kWarps / 2 : kWarps;

// Grid: x = the cluster's blocks (ranks splitting K), y = blocks of kColumnWarps warps' rows (x has
// at most 8 * NT rows), z = the products of a strided batch or of a weight set, or (kGrouped) the
// group tiles.
// Shared memory: staged x [staged_x_rows][x_row_stride(steps_per_rank)] BF16, then (clusters or the
// SwiGLU epilogue) the partial sums [kWarps][16][8 * NT] F32.
// Staged rows: a dense product's own rows (x at M = 1 takes one row's space, so that K needs no
// split for room; at least one, the row that lanes of absent rows read), a grouped product's largest tile.
template <bool kGrouped, int NT>
__host__ __device__ constexpr int staged_x_rows(int64_t rows) {
  return kGrouped ? 8 * NT : rows > 1 ? static_cast<int>(rows) : 1;
}

template <WeightFormat F, int NT, bool kGrouped, bool kSwiGlu, bool kSet = false>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm<kGrouped>) weight_gemm_fp4_decode_kernel(WeightGemmArgs a, int steps_per_rank) {
  constexpr int kTileRows = 8 * NT;
  constexpr int kWarpRows = 16;  // output columns per warp
  constexpr int kColWarps = kColumnWarps<kSwiGlu>;
  extern __shared__ uint4 shared_words[];
  uint16_t* xs = reinterpret_cast<uint16_t*>(shared_words);
  const int stride = x_row_stride(steps_per_rank);
  float* partial = reinterpret_cast<float*>(xs + staged_x_rows<kGrouped, NT>(a.rows) * stride);

  // A grouped product's weight is known only from the offsets the work before wrote.
  const bool early = !kGrouped && a.weight.read_early && (!kSwiGlu || a.up_weight.read_early);
  if (!early) wait_for_previous_grid();

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  // A weight set's product (kSet): its own weight, N and output (dense); its weight rows start at row 0.
  const GemmWeight* set_weight = kSet ? a.set + blockIdx.z : nullptr;
  const int64_t N = set_weight ? set_weight->n : a.n, K = a.k;
  const int64_t ldy = set_weight ? N : a.ldy;
  const int ranks = static_cast<int>(gridDim.x), rank = static_cast<int>(blockIdx.x);
  const int total_steps = static_cast<int>(K / kStep);
  const int step_begin = min(rank * steps_per_rank, total_steps);
  const int steps = min(steps_per_rank, total_steps - step_begin);
  const int64_t col0 = (static_cast<int64_t>(blockIdx.y) * kColWarps + warp % kColWarps) * kWarpRows;
  // The block's product: a dense one's from the arguments (read where used, so that nothing is held
  // in registers through the loop), a grouped one's from its tile.
  GroupTile tile;
  if constexpr (kGrouped) {
    if (!find_group_tile(a, kTileRows, blockIdx.z, tile)) return;  // the same for every block of a cluster
  }
  const int64_t product = kGrouped || set_weight ? 0 : blockIdx.z;  // of a strided batch
  const int64_t first_row = product * N;  // the product's weight rows start here
  const auto global_scale = [&](bool up) {
    if constexpr (kGrouped) return global_scale_of<F>(up ? a.ups[tile.group] : a.gates[tile.group]);
    else return global_scale_of<F>(set_weight ? *set_weight : up ? a.up_weight : a.weight);
  };
  const auto output = [&]() -> void* {
    if (set_weight) return a.set_y[blockIdx.z];
    const int64_t row0 = kGrouped ? tile.begin * a.ldy : product * a.y_batch_stride;
    return static_cast<char*>(a.y) + row0 * (a.y_bf16 ? 2 : 4);
  };
  const uint16_t* x_in = kGrouped ? a.x + tile.begin * a.ldx : a.x + product * a.x_batch_stride;
  const int rows_here = static_cast<int>(kGrouped ? tile.end - tile.begin : a.rows);  // 1..kTileRows
  GemmWeight w;
  if constexpr (kGrouped) w = kSwiGlu && warp >= kColWarps ? a.ups[tile.group] : a.gates[tile.group];
  else w = set_weight ? *set_weight : kSwiGlu && warp >= kColWarps ? a.up_weight : a.weight;

  // The lane's A rows: rows past N read row N - 1 (their sums are never stored).
  LaneStream s;
  {
    const int64_t row_lo = first_row + min(col0 + g, N - 1), row_hi = first_row + min(col0 + g + 8, N - 1);
    const auto* codes = static_cast<const uint8_t*>(w.data);
    const auto* scales = static_cast<const uint8_t*>(w.scales);
    s.scales_f32 = w.fp8_scales_f32;
    if constexpr (F == WeightFormat::Fp8Block) {
      const int64_t k0 = static_cast<int64_t>(step_begin) * kStep + 16 * t;
      s.code_lo = codes + row_lo * K + k0;
      s.code_hi = codes + row_hi * K + k0;
      // The warp's 16 rows share one 128-row block (col0 is a multiple of 16, and so is first_row
      // of 128): [N/128, K/128] scales.
      const int64_t scale_index = ((first_row + min(col0, N - 1)) / 128) * (K / kStep) + step_begin;
      s.scale_lo = s.scale_hi = scales + scale_index * (s.scales_f32 ? 4 : 1);
    } else {
      constexpr int kScaleDiv = F == WeightFormat::Nvfp4 ? 16 : 32;
      const int64_t k0 = static_cast<int64_t>(step_begin) * kStep + 32 * t;
      s.code_lo = codes + row_lo * (K / 2) + k0 / 2;
      s.code_hi = codes + row_hi * (K / 2) + k0 / 2;
      s.scale_lo = scales + row_lo * (K / kScaleDiv) + k0 / kScaleDiv;
      s.scale_hi = scales + row_hi * (K / kScaleDiv) + k0 / kScaleDiv;
    }
  }
  const bool warp_active = col0 < N;

  // The first kRing steps' loads go out before x is staged, so both wait together.
  constexpr int kR = kRing<F, kGrouped>;
  StepRegs<F> ring[kR];
#pragma unroll
  for (int u = 0; u < kR; ++u)
    if (warp_active && u < steps) load_step<F>(ring[u], s, u);
  allow_next_grid();
  if (early) wait_for_previous_grid();

  {
    const int vectors = steps * (kStep / 8);  // 16-byte vectors per row
    const uint16_t* xsrc = x_in + static_cast<int64_t>(step_begin) * kStep;
    for (int i = threadIdx.x; i < rows_here * vectors; i += kThreads) {
      const int r = i / vectors, v = i - r * vectors;
      uint4 val = __ldg(reinterpret_cast<const uint4*>(xsrc + r * a.ldx) + v);
      if constexpr (kSplitDecode<F>) val = pair_k_with_k_plus_4(val);
      *reinterpret_cast<uint4*>(xs + r * stride + padded(8 * v)) = val;
    }
  }
  __syncthreads();

  float acc[NT][2][4];
  zero_sums(acc);

  if (warp_active) {
    // A lane whose x row is past the block's rows reads row 0 instead (staged, so every value is
    // defined): its mma column is another output's, never stored, and no branch or zeroing per step.
    const int x_row0 = g < rows_here ? g : 0, x_row1 = g + 8 < rows_here ? g + 8 : 0;
    // FP4: the lane's own 32 k at padded(32t); FP8: its groups are placed per step (compute_step_fp8).
    const int lane_x = F == WeightFormat::Fp8Block ? 0 : padded(32 * t);
    const uint16_t* x0 = xs + x_row0 * stride + lane_x;
    const uint16_t* x1 = xs + x_row1 * stride + lane_x;
    for (int base = 0; base < steps; base += kR) {
#pragma unroll
      for (int u = 0; u < kR; ++u) {
        const int step = base + u;
        if (step < steps) {
          if constexpr (F == WeightFormat::Fp8Block)
            compute_step_fp8<NT>(ring[u], x0 + padded(step * kStep), x1 + padded(step * kStep), t, acc);
          else compute_step<F, NT>(ring[u], x0 + padded(step * kStep), x1 + padded(step * kStep), acc);
          if (step + kR < steps) load_step<F>(ring[u], s, step + kR);
        }
      }
    }
  }

  // Lane (g, t) holds, per n-tile, A rows g (c0, c1) and g + 8 (c2, c3) for x rows 2t, 2t + 1.
  float sum[NT][4];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) sum[nt][i] = acc[nt][0][i] + acc[nt][1][i];

  if (ranks == 1 && !kSwiGlu) {
    if (!warp_active) return;
    void* y_out = output();
    const float gscale = global_scale(false);
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int xr = 8 * nt + 2 * t + c;
        if (xr >= rows_here) continue;
        if (col0 + g < N) store(a, y_out, ldy, xr, col0 + g, product_value<F>(sum[nt][c], gscale));
        if (col0 + g + 8 < N) store(a, y_out, ldy, xr, col0 + g + 8, product_value<F>(sum[nt][2 + c], gscale));
      }
    return;
  }

  // partial[warp][arow][xrow]; for each output, rank q adds every ranks-th output's partial sums over
  // all ranks in rank order (with SwiGLU, those of the gate's warp and of its up warp).
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int arow = g + (i >= 2 ? 8 : 0), xr = 8 * nt + 2 * t + (i & 1);
      partial[(warp * 16 + arow) * kTileRows + xr] = sum[nt][i];
    }
  if (ranks > 1) cluster_sync_all();
  else __syncthreads();
  const auto rank_sum = [&](int index) {
    if (ranks == 1) return partial[index];
    float v = 0.0f;
    for (int q = 0; q < ranks; ++q) v += cluster_peer(partial, q)[index];
    return v;
  };
  void* y_out = output();
  const float gscale[2] = {global_scale(false), kSwiGlu ? global_scale(true) : 1.0f};  // gate (or the product), up
  constexpr int kOutRows = 16;  // outputs per warp per x row
  constexpr int kOutputs = kColWarps * kOutRows * kTileRows;
  for (int e = rank + ranks * static_cast<int>(threadIdx.x); e < kOutputs; e += ranks * kThreads) {
    const int xr = e % kTileRows, arow = (e / kTileRows) % kOutRows, cw = e / (kTileRows * kOutRows);
    const int64_t col = (static_cast<int64_t>(blockIdx.y) * kColWarps + cw) * kWarpRows + arow;
    if (xr >= rows_here || col >= N) continue;
    const float gate = product_value<F>(rank_sum((cw * 16 + arow) * kTileRows + xr), gscale[0]);
    if constexpr (kSwiGlu) {
      const float up = product_value<F>(rank_sum(((cw + kColWarps) * 16 + arow) * kTileRows + xr), gscale[1]);
      store(a, y_out, ldy, xr, col, clamped_swiglu(gate, up, a.swiglu_limit));
    } else {
      store(a, y_out, ldy, xr, col, gate);
    }
  }
  if (ranks > 1) cluster_sync_all();  // no block leaves while others read its partial sums
}

// layers: the grid's z (the batch, or the group tiles' bound).
template <WeightFormat F, int NT, bool kGrouped, bool kSwiGlu, bool kSet = false>
void launch(const WeightGemmArgs& a, int64_t layers, StreamHandle stream) {
  auto kernel = weight_gemm_fp4_decode_kernel<F, NT, kGrouped, kSwiGlu, kSet>;
  constexpr int kWarpRows = 16, kBlockColumns = kColumnWarps<kSwiGlu> * kWarpRows;
  const DeviceFacts& dev = current_device_facts();
  const int total_steps = static_cast<int>(a.k / kStep);
  const int64_t row_blocks = (a.n + kBlockColumns - 1) / kBlockColumns;
  // Split K over a cluster into as many ranks as still fit every block in one wave of resident
  // blocks (a second, part-filled wave costs a whole block's time: V4-Pro's w2 at M = 1 went from 5
  // ranks, 560 blocks for 528 places on an H100, to 4), each rank keeping at least kRing steps; more
  // where the staged x would not fit kMaxXBytes.
  const int x_rows = staged_x_rows<kGrouped, NT>(a.rows);
  int ranks = 1;
  if (dev.major >= 9) {
    const int64_t blocks = row_blocks * layers;
    const int64_t want = kBlocksPerSm<kGrouped> * static_cast<int64_t>(dev.multiprocessors) / blocks;
    ranks = static_cast<int>(std::clamp<int64_t>(std::min<int64_t>(want, total_steps / kRing<F, kGrouped>), 1, kMaxRanks));
  }
  int steps_per_rank = (total_steps + ranks - 1) / ranks;
  while (x_rows * x_row_stride(steps_per_rank) * 2 > kMaxXBytes && ranks < kMaxRanks && dev.major >= 9) {
    ++ranks;
    steps_per_rank = (total_steps + ranks - 1) / ranks;
  }
  const size_t x_bytes = static_cast<size_t>(x_rows) * x_row_stride(steps_per_rank) * 2;
  const size_t partial_bytes = ranks > 1 || kSwiGlu ? static_cast<size_t>(kWarps) * 16 * 8 * NT * sizeof(float) : 0;
  const size_t smem = x_bytes + partial_bytes;
  const auto shape = [&] {
    return "M=" + std::to_string(a.rows) + " N=" + std::to_string(a.n) + " K=" + std::to_string(a.k) +
           (a.batch > 1 ? " batch=" + std::to_string(a.batch) : std::string()) +
           (a.set ? " set=" + std::to_string(layers) : std::string()) +
           (kGrouped ? " groups=" + std::to_string(a.groups) : std::string()) + (kSwiGlu ? " swiglu" : "") +
           " cluster=" + std::to_string(ranks);
  };
  if (smem > 200 * 1024) throw InputError("weight_gemm_fp4_decode [" + shape() + "]: K too large for the decode path");
  allow_dynamic_shared_memory(reinterpret_cast<const void*>(kernel), smem, "weight_gemm_fp4_decode");
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>(ranks), static_cast<unsigned>(row_blocks), static_cast<unsigned>(layers));
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attrs[2];
  unsigned count = 0;
  if (dev.major >= 9) {
    attrs[count].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attrs[count].val.programmaticStreamSerializationAllowed = 1;
    ++count;
  }
  if (ranks > 1) {
    attrs[count].id = cudaLaunchAttributeClusterDimension;
    attrs[count].val.clusterDim.x = static_cast<unsigned>(ranks);
    attrs[count].val.clusterDim.y = 1;
    attrs[count].val.clusterDim.z = 1;
    ++count;
  }
  config.attrs = attrs;
  config.numAttrs = count;
  check(cudaLaunchKernelEx(&config, kernel, a, steps_per_rank),
        [&] { return "kernel weight_gemm_fp4_decode [" + shape() + "]"; });
  check_launch("weight_gemm_fp4_decode", shape);
}

}  // namespace

bool fp4_decode_applies(const WeightGemmArgs& a, WeightFormat format) {
  if (format != WeightFormat::Nvfp4 && format != WeightFormat::Mxfp4 && format != WeightFormat::Fp8Block) return false;
  // F32 block scales are read as floats.
  if (format == WeightFormat::Fp8Block && a.weight.fp8_scales_f32 && reinterpret_cast<uintptr_t>(a.weight.scales) % 4 != 0)
    return false;
  return a.offsets == nullptr && a.rows <= 16 && a.k % kStep == 0 && a.k / kStep <= (int64_t{1} << 20);
}

void launch_weight_gemm_fp4_decode(const WeightGemmArgs& a, WeightFormat format, StreamHandle stream) {
  const bool one_tile = a.rows <= 8;
  if (format == WeightFormat::Nvfp4) {
    one_tile ? launch<WeightFormat::Nvfp4, 1, false, false>(a, a.batch, stream)
             : launch<WeightFormat::Nvfp4, 2, false, false>(a, a.batch, stream);
  } else if (format == WeightFormat::Fp8Block) {
    one_tile ? launch<WeightFormat::Fp8Block, 1, false, false>(a, a.batch, stream)
             : launch<WeightFormat::Fp8Block, 2, false, false>(a, a.batch, stream);
  } else {
    one_tile ? launch<WeightFormat::Mxfp4, 1, false, false>(a, a.batch, stream)
             : launch<WeightFormat::Mxfp4, 2, false, false>(a, a.batch, stream);
  }
}

void launch_weight_gemm_fp4_decode_set(const WeightGemmArgs& a, WeightFormat format, int64_t products, StreamHandle stream) {
  if (format == WeightFormat::Nvfp4) launch<WeightFormat::Nvfp4, 1, false, false, true>(a, products, stream);
  else if (format == WeightFormat::Fp8Block) launch<WeightFormat::Fp8Block, 1, false, false, true>(a, products, stream);
  else launch<WeightFormat::Mxfp4, 1, false, false, true>(a, products, stream);
}

void launch_weight_gemm_fp4_decode_swiglu(const WeightGemmArgs& a, WeightFormat format, StreamHandle stream) {
  if (format == WeightFormat::Nvfp4) launch<WeightFormat::Nvfp4, 1, false, true>(a, 1, stream);
  else if (format == WeightFormat::Fp8Block) launch<WeightFormat::Fp8Block, 1, false, true>(a, 1, stream);
  else launch<WeightFormat::Mxfp4, 1, false, true>(a, 1, stream);
}

bool fp4_grouped_decode_applies(WeightFormat format, int64_t rows, int64_t busy_groups, int64_t k) {
  // Measured on V4-Pro's routed experts (H100, bench/RESULTS.md): faster than the ring kernel for
  // MXFP4 at 1 and 8 tokens and for NVFP4 at 1 token, but 10 % slower for NVFP4 at 8 tokens (48 rows).
  const bool takes_rows = format == WeightFormat::Mxfp4 || rows <= 2 * kGroupTileRows;
  return (format == WeightFormat::Nvfp4 || format == WeightFormat::Mxfp4) && k % kStep == 0 &&
         k / kStep <= (int64_t{1} << 20) && rows <= kGroupTileRows * busy_groups && takes_rows;
}

void launch_weight_gemm_fp4_grouped_decode(const WeightGemmArgs& a, WeightFormat format, bool swiglu, int64_t tiles,
                                           StreamHandle stream) {
  if (format == WeightFormat::Nvfp4) {
    swiglu ? launch<WeightFormat::Nvfp4, 1, true, true>(a, tiles, stream)
           : launch<WeightFormat::Nvfp4, 1, true, false>(a, tiles, stream);
  } else {
    swiglu ? launch<WeightFormat::Mxfp4, 1, true, true>(a, tiles, stream)
           : launch<WeightFormat::Mxfp4, 1, true, false>(a, tiles, stream);
  }
}

}  // namespace fp4kit::cuda
