#pragma once
// What the weight-GEMM kernels are launched with, and how a block finds its group: a dense product
// is one group of `rows` rows; a grouped one reads the group offsets on the device.
#include <cstdint>

#include "cuda/weight_gemm.h"

namespace fp4kit::cuda {

struct WeightGemmArgs {
  const uint16_t* x = nullptr;     // [rows, k] BF16
  int64_t rows = 0, n = 0, k = 0;
  const int32_t* offsets = nullptr;  // null: one group, rows [0, rows)
  int32_t groups = 1;
  GemmWeight weight;                 // the weight of the dense product
  const GemmWeight* gates = nullptr; // grouped: device [groups]
  const GemmWeight* ups = nullptr;   // grouped with the SwiGLU epilogue: device [groups]
  GemmWeight up_weight;              // dense with the SwiGLU epilogue: the up matrix (`weight` the gate)
  float swiglu_limit = 0.0f;
  void* y = nullptr;                 // [rows, n]
  bool y_bf16 = true;
  // Dense products on the register-streaming decode path: rows of x ldx elements apart, of y ldy;
  // with gridDim.z > 1, product b reads x + b * x_batch_stride and weight rows [b * n, (b + 1) * n)
  // and writes y + b * y_batch_stride (elements).
  int64_t ldx = 0, ldy = 0;
  int64_t x_batch_stride = 0, y_batch_stride = 0;
  int32_t batch = 1;
  // A weight set (weight_set_gemm): grid layer p computes product p with weight set[p] (device) and
  // writes set_y[p] ([rows, set[p].n] dense); `n` is then the set's largest.
  const GemmWeight* set = nullptr;
  void* set_y[kMaxWeightSet] = {};
  float* partial = nullptr;          // split K: F32 [splits, rows, n], summed by reduce_split_k
  int64_t k_per_split = 0;           // split K: a multiple of the kernel's k step
};

// Rows [begin, end) of one group, and the tile of it that a block computes.
struct GroupTile {
  int32_t group = 0;
  int64_t begin = 0, end = 0;  // the tile's rows
};

// Block `tile` of the tiles of `rows_per_tile` rows that the groups split into, in group order
// (a group of r rows has ceil(r / rows_per_tile) tiles; empty groups have none). Every lane of the
// warp calls it and gets the same answer; false when `tile` is past the last one. Offsets are
// clamped into [0, rows] (a group whose end is below its start is empty), so bad offsets cannot
// send a block outside x or y.
__device__ inline bool find_group_tile(const WeightGemmArgs& a, int64_t rows_per_tile, int64_t tile, GroupTile& out) {
  if (!a.offsets) {
    const int64_t begin = tile * rows_per_tile;
    if (begin >= a.rows) return false;
    out.group = 0;
    out.begin = begin;
    out.end = begin + rows_per_tile < a.rows ? begin + rows_per_tile : a.rows;
    return true;
  }
  const int lane = threadIdx.x & 31;
  auto clamp_row = [&](int64_t v) { return v < 0 ? int64_t{0} : (v > a.rows ? a.rows : v); };
  // Each round's offsets are loaded during the round before (the rounds would otherwise wait for
  // their loads one after another: 8 rounds for 256 experts).
  int32_t next_begin = 0, next_end = 0;
  if (lane < a.groups) next_begin = __ldg(a.offsets + lane), next_end = __ldg(a.offsets + lane + 1);
  int64_t tiles_before = 0;
  for (int32_t base = 0; base < a.groups; base += 32) {
    const int32_t g = base + lane;
    const int32_t raw_begin = next_begin, raw_end = next_end;
    if (g + 32 < a.groups) next_begin = __ldg(a.offsets + g + 32), next_end = __ldg(a.offsets + g + 33);
    int64_t begin = 0, end = 0, tiles = 0;
    if (g < a.groups) {
      begin = clamp_row(raw_begin);
      end = clamp_row(raw_end);
      if (end > begin) tiles = (end - begin + rows_per_tile - 1) / rows_per_tile;
    }
    int64_t inclusive = tiles;
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
      const int64_t other = __shfl_up_sync(0xFFFFFFFFu, inclusive, d);
      if (lane >= d) inclusive += other;
    }
    const int64_t total = __shfl_sync(0xFFFFFFFFu, inclusive, 31);
    if (tile < tiles_before + total) {
      const unsigned hit = __ballot_sync(0xFFFFFFFFu, tiles_before + inclusive > tile);
      const int src = __ffs(hit) - 1;
      const int64_t first_tile = tiles_before + __shfl_sync(0xFFFFFFFFu, inclusive - tiles, src);
      const int64_t g_begin = __shfl_sync(0xFFFFFFFFu, begin, src);
      const int64_t g_end = __shfl_sync(0xFFFFFFFFu, end, src);
      out.group = base + src;
      out.begin = g_begin + (tile - first_tile) * rows_per_tile;
      out.end = out.begin + rows_per_tile < g_end ? out.begin + rows_per_tile : g_end;
      return true;
    }
    tiles_before += total;
  }
  return false;
}

__device__ inline GemmWeight gate_weight(const WeightGemmArgs& a, int32_t group) {
  return a.gates ? a.gates[group] : a.weight;
}

// DeepSeek V4's clamped SwiGLU on F32 sums: silu(min(g, limit)) * clamp(u, -limit, limit).
__device__ __forceinline__ float clamped_swiglu(float g, float u, float limit) {
  if (limit > 0.0f) {  // comparisons, not fminf/fmaxf, so that NaN stays NaN
    g = g > limit ? limit : g;
    u = u > limit ? limit : (u < -limit ? -limit : u);
  }
  return g / (1.0f + expf(-g)) * u;
}

}  // namespace fp4kit::cuda
