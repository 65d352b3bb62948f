#include <cuda_runtime.h>

#include <string>

#include "cuda/block_reduce.cuh"
#include "cuda/check.cuh"
#include "cuda/dependent_launch.cuh"
#include "cuda/device_facts.cuh"
#include "cuda/v4_attention.h"

namespace fp4kit::cuda {
namespace {

constexpr int kAttentionThreads = 128;

// One thread per (sequence, entry, channel); slots in engine::compressor_append's order.
__global__ void compressor_prefill_kernel(CompressorPrefill c, SequenceBatch sb) {
  const int64_t count = sb.total() / c.ratio, d = c.width, m = c.ratio, stride = sb.key_stride();
  const int64_t total = sb.batch * count * d;
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= total) return;
  const int64_t ch = e % d, bw = e / d, w = bw % count, b = bw / count;
  const int64_t rw = c.overlap ? 2 * d : d, off = c.overlap ? d : 0;
  const bool previous = c.overlap && w >= 1;
  auto z_of = [&](int64_t slot) {  // gate + ape of slot: previous window's first half, then this window
    if (previous && slot < m) {
      const int64_t row = b * stride + (w - 1) * m + slot;
      return c.gate[row * rw + ch] + c.ape[slot * rw + ch];
    }
    const int64_t i = previous ? slot - m : slot, row = b * stride + w * m + i;
    return c.gate[row * rw + off + ch] + c.ape[i * rw + off + ch];
  };
  auto v_of = [&](int64_t slot) {
    if (previous && slot < m) return c.kv[(b * stride + (w - 1) * m + slot) * rw + ch];
    const int64_t i = previous ? slot - m : slot;
    return c.kv[(b * stride + w * m + i) * rw + off + ch];
  };
  const int64_t slots = previous ? 2 * m : m;
  float mx = -INFINITY;
  for (int64_t s = 0; s < slots; ++s) mx = fmaxf(mx, z_of(s));
  float sum = 0;
  for (int64_t s = 0; s < slots; ++s) sum += expf(z_of(s) - mx);
  float acc = 0;
  for (int64_t s = 0; s < slots; ++s) acc += (expf(z_of(s) - mx) / sum) * v_of(s);
  c.entries[(b * count + w) * d + ch] = acc;
}

// One block per query row.
__global__ void indexer_select_kernel(IndexerSelect s, SequenceBatch sb) {
  extern __shared__ float score[];  // [visible], then chosen flags
  const int64_t row = blockIdx.x, b = row / sb.seq, p = sb.past + row % sb.seq;
  const int64_t visible = (p + 1) / 4, keep = visible < s.top_k ? visible : s.top_k;
  int32_t* picks = s.picks + row * s.top_k;
  if (threadIdx.x == 0) s.count[row] = static_cast<int32_t>(keep);
  if (keep == visible) {  // every causal entry: the scores do not matter
    for (int64_t i = threadIdx.x; i < visible; i += blockDim.x) picks[i] = static_cast<int32_t>(i);
    return;
  }
  unsigned char* chosen = reinterpret_cast<unsigned char*>(score + visible);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const float scale = 1.0f / sqrtf(static_cast<float>(s.head_dim));
  const int64_t count = sb.total() / 4;
  for (int64_t e = warp; e < visible; e += warps) {
    const float* k = s.keys + (b * count + e) * s.head_dim;
    float total = 0;
    for (int64_t h = 0; h < s.heads; ++h) {
      const float* q = s.q + (row * s.heads + h) * s.head_dim;
      float part = 0;
      for (int64_t i = lane; i < s.head_dim; i += 32) part += q[i] * k[i];
      const float qk = warp_sum(part);
      total += fmaxf(qk, 0.0f) * scale * (s.head_weights[row * s.heads + h] * s.head_weight_scale);
    }
    if (lane == 0) score[e] = isnan(total) ? -INFINITY : total;
  }
  __syncthreads();
  for (int64_t e = threadIdx.x; e < visible; e += blockDim.x) {
    int64_t rank = 0;
    for (int64_t j = 0; j < visible; ++j) rank += score[j] > score[e] || (score[j] == score[e] && j < e);
    chosen[e] = rank < keep;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int32_t n = 0;
    for (int64_t e = 0; e < visible; ++e)
      if (chosen[e]) picks[n++] = static_cast<int32_t>(e);
  }
}

// One block per (row, head).
__global__ void attention_core_kernel(AttentionCore a, SequenceBatch sb) {
  allow_next_grid();  // the next product may launch now (cuda/dependent_launch.cuh)
  extern __shared__ float score[];  // [keys]
  __shared__ float fscratch[32];
  __shared__ double dscratch[32];
  const int64_t row = blockIdx.x / a.heads, h = blockIdx.x % a.heads, b = row / sb.seq, p = sb.past + row % sb.seq;
  const int64_t D = a.head_dim;
  const int64_t n_window = p + 1 < a.window ? p + 1 : a.window;
  int64_t n_entries = 0;
  if (a.compressed == CompressedKeys::AllCausal) n_entries = (p + 1) / a.ratio;
  if (a.compressed == CompressedKeys::Picked) n_entries = a.pick_count[row];
  const int64_t n = n_window + n_entries;
  const int64_t count = a.ratio > 0 ? sb.total() / a.ratio : 0;
  auto key = [&](int64_t j) -> const float* {
    if (j < n_window) return a.kv + (b * sb.key_stride() + p - n_window + 1 + j) * D;
    const int64_t i = j - n_window;
    const int64_t entry = a.compressed == CompressedKeys::Picked ? a.picks[row * a.pick_stride + i] : i;
    return a.entries + (b * count + entry) * D;
  };
  const float* q = a.q + (row * a.heads + h) * D;
  const float scale = 1.0f / sqrtf(static_cast<float>(D));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int64_t j = warp; j < n; j += warps) {
    const float* k = key(j);
    float part = 0;
    for (int64_t i = lane; i < D; i += 32) part += q[i] * k[i];
    const float dot = warp_sum(part);
    if (lane == 0) score[j] = dot * scale;
  }
  __syncthreads();
  const float sink = a.sink[h];
  float mx = sink;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) mx = fmaxf(mx, score[j]);
  mx = block_reduce(mx, fscratch, [](float x, float y) { return fmaxf(x, y); });
  double sum = 0;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    const float p = expf(score[j] - mx);
    score[j] = p;
    sum += p;
  }
  sum = block_reduce(sum, dscratch, [](double x, double y) { return x + y; });
  const float total = static_cast<float>(exp(static_cast<double>(sink - mx)) + sum);
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    float o = 0;
    for (int64_t j = 0; j < n; ++j) o += (score[j] / total) * key(j)[i];
    a.out[(row * a.heads + h) * D + i] = o;
  }
}

std::string batch_text(const SequenceBatch& b) {
  return "batch=" + std::to_string(b.batch) + " seq=" + std::to_string(b.seq) + " past=" + std::to_string(b.past);
}

// A continuation's key-side rows must hold every token so far.
void check_batch(const char* kernel, const SequenceBatch& b) {
  if (b.batch < 0 || b.seq < 0 || b.past < 0 || (b.kv_rows != 0 && b.kv_rows < b.total()))
    throw InputError(std::string(kernel) + ": bad sequence batch (" + batch_text(b) + " kv_rows=" +
                     std::to_string(b.kv_rows) + ")");
}

}  // namespace

void compressor_prefill(const CompressorPrefill& c, const SequenceBatch& b, StreamHandle stream) {
  if (c.ratio < 1 || c.width < 1 || !c.kv || !c.gate || !c.ape || !c.entries)
    throw InputError("compressor_prefill: bad arguments (ratio " + std::to_string(c.ratio) + ", width " +
                     std::to_string(c.width) + ")");
  check_batch("compressor_prefill", b);
  const int64_t total = b.batch * (b.total() / c.ratio) * c.width;
  if (total == 0) return;
  compressor_prefill_kernel<<<ceil_div(static_cast<size_t>(total), 256), 256, 0, stream>>>(c, b);
  check_launch("compressor_prefill", [&] {
    return batch_text(b) + " ratio=" + std::to_string(c.ratio) + " width=" + std::to_string(c.width);
  });
}

void indexer_select(const IndexerSelect& s, const SequenceBatch& b, StreamHandle stream) {
  if (s.heads < 1 || s.head_dim < 1 || s.top_k < 1 || !s.q || !s.head_weights || !s.keys || !s.picks || !s.count)
    throw InputError("indexer_select: bad arguments (heads " + std::to_string(s.heads) + ", head_dim " +
                     std::to_string(s.head_dim) + ", top_k " + std::to_string(s.top_k) + ")");
  check_batch("indexer_select", b);
  if (b.tokens() == 0) return;
  const int64_t visible = b.total() / 4;
  const size_t smem = static_cast<size_t>(visible) * 5;
  if (smem > 200 * 1024)
    throw InputError("indexer_select: " + std::to_string(visible) + " compressed entries per sequence do not fit (" +
                     batch_text(b) + ")");
  auto kernel = indexer_select_kernel;
  allow_dynamic_shared_memory(reinterpret_cast<const void*>(kernel), smem, "indexer_select");
  kernel<<<static_cast<unsigned>(b.tokens()), kAttentionThreads, smem, stream>>>(s, b);
  check_launch("indexer_select", [&] {
    return batch_text(b) + " heads=" + std::to_string(s.heads) + " top_k=" + std::to_string(s.top_k);
  });
}

namespace {

void check_attention_core(const AttentionCore& a) {
  if (a.heads < 1 || a.head_dim < 1 || a.window < 1 || !a.q || !a.kv || !a.sink || !a.out ||
      (a.compressed != CompressedKeys::None && (a.ratio < 1 || !a.entries)) ||
      (a.compressed == CompressedKeys::Picked && (!a.picks || !a.pick_count || a.pick_stride < 1)))
    throw InputError("attention_core: bad arguments (heads " + std::to_string(a.heads) + ", head_dim " +
                     std::to_string(a.head_dim) + ", window " + std::to_string(a.window) + ")");
}

// The most keys a row can have: its window and every entry it may see.
int64_t attention_max_keys(const AttentionCore& a, const SequenceBatch& b) {
  int64_t keys = a.window < b.total() ? a.window : b.total();
  const int64_t entries = a.ratio > 0 ? b.total() / a.ratio : 0;
  if (a.compressed == CompressedKeys::AllCausal) keys += entries;
  if (a.compressed == CompressedKeys::Picked) keys += a.pick_stride < entries ? a.pick_stride : entries;
  return keys;
}

}  // namespace

void attention_core(const AttentionCore& a, const SequenceBatch& b, StreamHandle stream) {
  check_attention_core(a);
  check_batch("attention_core", b);
  if (b.tokens() == 0) return;
  if (attention_core_tiled(a, b, attention_max_keys(a, b), stream)) return;
  attention_core_reference(a, b, stream);
}

void attention_core_reference(const AttentionCore& a, const SequenceBatch& b, StreamHandle stream) {
  check_attention_core(a);
  check_batch("attention_core", b);
  if (b.tokens() == 0) return;
  const int64_t keys = attention_max_keys(a, b);
  const size_t smem = static_cast<size_t>(keys) * 4;
  if (smem > 200 * 1024) throw InputError("attention_core: " + std::to_string(keys) + " keys per query do not fit");
  auto kernel = attention_core_kernel;
  allow_dynamic_shared_memory(reinterpret_cast<const void*>(kernel), smem, "attention_core");
  kernel<<<static_cast<unsigned>(b.tokens() * a.heads), kAttentionThreads, smem, stream>>>(a, b);
  check_launch("attention_core", [&] {
    return batch_text(b) + " heads=" + std::to_string(a.heads) + " head_dim=" + std::to_string(a.head_dim) +
           " keys<=" + std::to_string(keys);
  });
}

}  // namespace fp4kit::cuda
