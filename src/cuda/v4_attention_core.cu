// The attention core for many heads: one block per (row, 64, 32 or 16 heads, slice of the output's
// dimensions) sharing the row's keys (V4's single KV head), scores and outputs computed as tiled F32
// products in registers. With few rows (decode) the heads go 16 to a block and the output's
// dimensions split over blocks, each block computing its heads' scores in full (the same arithmetic
// in every block) and its slice of the outputs, so that a single token still fills the GPU. The
// softmax and the weighted sum over the keys are the reference kernel's arithmetic (sum in F64,
// each probability divided by the total, keys in increasing order); the score's dot product is
// summed in dimension order where the reference sums lane-strided partials, a last-bit difference.
#include <cuda_runtime.h>

#include <string>

#include "cuda/check.cuh"
#include "cuda/dependent_launch.cuh"
#include "cuda/device_facts.cuh"
#include "cuda/v4_attention.h"

namespace fp4kit::cuda {
namespace {

constexpr int kCoreThreads = 256;  // 16 head groups x 16 key (or dimension) groups
constexpr int kKeyTile = 64;   // keys per score tile
// Dimensions per score tile step (DT): each step's loads wait for the step before (a barrier
// between), so blocks of 16 heads (decode) take 128 at a time where the head allows it, 4 steps of
// a 512-dimension head instead of 16; more heads keep 32 (their scores take the shared memory).
constexpr int kDimTileWide = 128, kDimTile = 32;
constexpr int kOutTile = 64;   // dimensions per output pass
constexpr int kValueKeys = 32; // keys per output tile step
constexpr int kPad = 4;        // keeps float4 rows aligned and spreads banks

template <int RH>
__device__ __forceinline__ void load_heads(const float* p, float (&v)[RH]) {
  if constexpr (RH == 4) {
    const float4 x = *reinterpret_cast<const float4*>(p);
    v[0] = x.x, v[1] = x.y, v[2] = x.z, v[3] = x.w;
  } else if constexpr (RH == 1) {
    v[0] = *p;
  } else {
    const float2 x = *reinterpret_cast<const float2*>(p);
    v[0] = x.x, v[1] = x.y;
  }
}

__device__ __forceinline__ void load4(const float* p, float (&v)[4]) {
  const float4 x = *reinterpret_cast<const float4*>(p);
  v[0] = x.x, v[1] = x.y, v[2] = x.z, v[3] = x.w;
}

// Shared memory: scores [16·RH][n_stride], key rows [n_stride], then one tile buffer used as the
// transposed Q and K tiles of the scores or the value tile of the output.
template <int RH, int DT>
__global__ void __launch_bounds__(kCoreThreads) attention_core_tiled_kernel(AttentionCore a, SequenceBatch sb, int n_stride) {
  wait_for_previous_grid();  // launched dependent: nothing read before this
  allow_next_grid();  // the next product may launch now (cuda/dependent_launch.cuh)
  constexpr int HB = 16 * RH;
  static_assert(kValueKeys * (kOutTile + kPad) <= DT * (HB + kPad + kKeyTile + kPad), "the value tile fits the tiles");
  extern __shared__ float4 smem4[];
  float* score = reinterpret_cast<float*>(smem4);
  const float** keys = reinterpret_cast<const float**>(score + HB * n_stride);
  float* qt = reinterpret_cast<float*>(keys + n_stride);  // [DT][HB + kPad]
  float* kt = qt + DT * (HB + kPad);                       // [DT][kKeyTile + kPad]
  float* vt = qt;                                          // [kValueKeys][kOutTile + kPad]

  const int64_t per_row = a.heads / HB;
  const int64_t row = blockIdx.x / per_row, h0 = blockIdx.x % per_row * HB;
  const int64_t b = row / sb.seq, p = sb.past + row % sb.seq, D = a.head_dim;
  const int64_t n_window = p + 1 < a.window ? p + 1 : a.window;
  int64_t n_entries = 0;
  if (a.compressed == CompressedKeys::AllCausal) n_entries = (p + 1) / a.ratio;
  if (a.compressed == CompressedKeys::Picked) n_entries = a.pick_count[row];
  const int n = static_cast<int>(n_window + n_entries);
  const int64_t count = a.ratio > 0 ? sb.total() / a.ratio : 0;
  const int tid = threadIdx.x, th = tid / 16, tk = tid % 16;

  for (int j = tid; j < n; j += kCoreThreads) {
    if (j < n_window) {
      keys[j] = a.kv + (b * sb.key_stride() + p - n_window + 1 + j) * D;
    } else {
      const int64_t i = j - n_window;
      const int64_t entry = a.compressed == CompressedKeys::Picked ? a.picks[row * a.pick_stride + i] : i;
      keys[j] = a.entries + (b * count + entry) * D;
    }
  }
  __syncthreads();  // key pointers written
  const float* q = a.q + (row * a.heads + h0) * D;
  const float scale = 1.0f / sqrtf(static_cast<float>(D));

  // Scores: [HB heads] x [n keys], each thread RH heads x 4 keys of a 64-key tile.
  for (int j0 = 0; j0 < n; j0 += kKeyTile) {
    float acc[RH][4] = {};
    for (int64_t d0 = 0; d0 < D; d0 += DT) {
      // The tile's loads all in flight at once, then written transposed.
      constexpr int kQ = HB * DT / kCoreThreads, kK = kKeyTile * DT / kCoreThreads;
      float qv[kQ], kv[kK];
#pragma unroll
      for (int u = 0; u < kQ; ++u) {
        const int i = tid + u * kCoreThreads, h = i / DT, d = i % DT;
        qv[u] = q[h * D + d0 + d];
      }
#pragma unroll
      for (int u = 0; u < kK; ++u) {
        const int i = tid + u * kCoreThreads, j = i / DT, d = i % DT;
        kv[u] = j0 + j < n ? keys[j0 + j][d0 + d] : 0.0f;
      }
      __syncthreads();  // key pointers written, or the last tile consumed
#pragma unroll
      for (int u = 0; u < kQ; ++u) {
        const int i = tid + u * kCoreThreads, h = i / DT, d = i % DT;
        qt[d * (HB + kPad) + h] = qv[u];
      }
#pragma unroll
      for (int u = 0; u < kK; ++u) {
        const int i = tid + u * kCoreThreads, j = i / DT, d = i % DT;
        kt[d * (kKeyTile + kPad) + j] = kv[u];
      }
      __syncthreads();
#pragma unroll 8
      for (int d = 0; d < DT; ++d) {
        float qh[RH], kd[4];
        load_heads<RH>(qt + d * (HB + kPad) + th * RH, qh);
        load4(kt + d * (kKeyTile + kPad) + tk * 4, kd);
#pragma unroll
        for (int r = 0; r < RH; ++r)
#pragma unroll
          for (int c = 0; c < 4; ++c) acc[r][c] = fmaf(qh[r], kd[c], acc[r][c]);
      }
    }
#pragma unroll
    for (int r = 0; r < RH; ++r)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int j = j0 + tk * 4 + c;
        if (j < n) score[(th * RH + r) * n_stride + j] = acc[r][c] * scale;
      }
  }
  __syncthreads();

  // Softmax per head (a warp per head): the sink joins the max and the total, the sum in F64.
  const int lane = tid & 31, warp = tid >> 5;
  for (int h = warp; h < HB; h += kCoreThreads / 32) {
    float* s = score + h * n_stride;
    const float sink = a.sink[h0 + h];
    float mx = sink;
    for (int j = lane; j < n; j += 32) mx = fmaxf(mx, s[j]);
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    double sum = 0;
    for (int j = lane; j < n; j += 32) {
      const float p = expf(s[j] - mx);
      s[j] = p;
      sum += p;
    }
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const float total = static_cast<float>(exp(static_cast<double>(sink - mx)) + sum);
    for (int j = lane; j < n; j += 32) s[j] = s[j] / total;
  }

  // Output: [HB heads] x [this block's slice of D], each thread RH heads x 4 dimensions of a
  // 64-dimension pass.
  const int slice = static_cast<int>(D) / static_cast<int>(gridDim.y);  // 32-bit: no division call
  const int d_end = (static_cast<int>(blockIdx.y) + 1) * slice;
  for (int d0 = static_cast<int>(blockIdx.y) * slice; d0 < d_end; d0 += kOutTile) {
    float acc[RH][4] = {};
    for (int j0 = 0; j0 < n; j0 += kValueKeys) {
      __syncthreads();  // softmax done, or the last tile consumed
      for (int i = tid; i < kValueKeys * kOutTile; i += kCoreThreads) {
        const int j = i / kOutTile, d = i % kOutTile;
        vt[j * (kOutTile + kPad) + d] = j0 + j < n ? keys[j0 + j][d0 + d] : 0.0f;
      }
      __syncthreads();
      const int jn = n - j0 < kValueKeys ? n - j0 : kValueKeys;
      for (int j = 0; j < jn; ++j) {
        float v[4];
        load4(vt + j * (kOutTile + kPad) + tk * 4, v);
#pragma unroll
        for (int r = 0; r < RH; ++r) {
          const float p = score[(th * RH + r) * n_stride + j0 + j];
#pragma unroll
          for (int c = 0; c < 4; ++c) acc[r][c] = fmaf(p, v[c], acc[r][c]);
        }
      }
    }
#pragma unroll
    for (int r = 0; r < RH; ++r) {
      float* o = a.out + (row * a.heads + h0 + th * RH + r) * D + d0 + tk * 4;
      *reinterpret_cast<float4*>(o) = make_float4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
    }
  }
}

size_t tiled_smem_bytes(int heads_per_block, int dim_tile, int n_stride) {
  const size_t tiles = static_cast<size_t>(dim_tile) * (heads_per_block + kPad + kKeyTile + kPad) * 4;
  return static_cast<size_t>(heads_per_block) * n_stride * 4 + static_cast<size_t>(n_stride) * sizeof(float*) + tiles;
}

constexpr size_t kMaxTiledSmem = 200 * 1024;

}  // namespace

bool attention_core_tiled(const AttentionCore& a, const SequenceBatch& b, int64_t max_keys, StreamHandle stream) {
  if (a.head_dim % kOutTile != 0 || max_keys < 1) return false;
  const int n_stride = static_cast<int>((max_keys + 3) / 4 * 4);
  // Rows that fill the GPU with the largest head groups keep them; fewer rows take 16 heads a block
  // and split the output's dimensions over blocks (slices of whole 64-dimension passes).
  const int64_t sms = current_device_facts().multiprocessors;
  const bool few_rows = b.tokens() * (a.heads / 64) < sms;
  int rh = 0;
  if (!few_rows && a.heads % 64 == 0 && tiled_smem_bytes(64, kDimTile, n_stride) <= kMaxTiledSmem) rh = 4;
  else if (!few_rows && a.heads % 32 == 0 && tiled_smem_bytes(32, kDimTile, n_stride) <= kMaxTiledSmem) rh = 2;
  else if (a.heads % 16 == 0 && tiled_smem_bytes(16, kDimTile, n_stride) <= kMaxTiledSmem) rh = 1;
  if (rh == 0) return false;
  const bool wide = rh == 1 && a.head_dim % kDimTileWide == 0 &&
                    tiled_smem_bytes(16, kDimTileWide, n_stride) <= kMaxTiledSmem;
  const int64_t head_blocks = b.tokens() * (a.heads / (16 * rh));
  int slices = 1;
  if (few_rows)
    while (head_blocks * slices * 2 <= 2 * sms && (a.head_dim / kOutTile) % (slices * 2) == 0) slices *= 2;
  const size_t smem = tiled_smem_bytes(16 * rh, wide ? kDimTileWide : kDimTile, n_stride);
  auto kernel = rh == 4   ? attention_core_tiled_kernel<4, kDimTile>
                : rh == 2 ? attention_core_tiled_kernel<2, kDimTile>
                : wide    ? attention_core_tiled_kernel<1, kDimTileWide>
                          : attention_core_tiled_kernel<1, kDimTile>;
  allow_dynamic_shared_memory(reinterpret_cast<const void*>(kernel), smem, "attention_core (tiled)");
  check(launch_dependent(kernel, dim3(static_cast<unsigned>(head_blocks), static_cast<unsigned>(slices)), dim3(kCoreThreads),
                         smem, stream, a, b, n_stride),
        "attention_core (tiled) launch");
  check_launch("attention_core (tiled)", [&] {
    return "batch=" + std::to_string(b.batch) + " seq=" + std::to_string(b.seq) + " past=" + std::to_string(b.past) +
           " heads=" + std::to_string(a.heads) + " head_dim=" + std::to_string(a.head_dim) +
           " keys<=" + std::to_string(max_keys);
  });
  return true;
}

}  // namespace fp4kit::cuda
