#pragma once
// The attention pieces of DeepSeek V4 on the GPU for a batch of sequences, in F32 as the CPU engine
// computes them (engine/compressor.h, indexer.h, attention.h), which the tests compare with. Query
// rows are sequence-major: row b·seq + t is new token t of sequence b, at position past + t. The
// key-side rows (the shared KV head, the compressors' inputs) hold every token of a sequence so far,
// positions 0 .. past + seq - 1, at row b·key_stride() + position: a whole sequence (past = 0), or a
// continuation whose earlier rows a cache kept. Device pointers; asynchronous on `stream`.
#include <cstdint>

#include "cuda/runtime.h"

namespace fp4kit::cuda {

struct SequenceBatch {
  int64_t batch = 0, seq = 0;  // seq new tokens (query rows) of each of batch sequences
  int64_t past = 0;            // tokens of each sequence before the new ones
  int64_t kv_rows = 0;         // key-side rows per sequence (the cache's capacity); 0: past + seq
  // constexpr: callable in kernels (the CUDA build relaxes constexpr across host and device).
  constexpr int64_t tokens() const { return batch * seq; }
  constexpr int64_t total() const { return past + seq; }  // tokens of each sequence so far
  constexpr int64_t key_stride() const { return kv_rows > 0 ? kv_rows : past + seq; }
};

// The KV compressor over the sequences so far: entry w of sequence b pools the tokens of window w
// (and, with `overlap`, the first-half channels of window w-1) by a softmax over gate + ape per
// channel; entries [batch, total / ratio, width] (every complete window; a window completes once)
// are then RMS-normalised with `norm` and rotated to position w·ratio by the caller (rms_norm_rows,
// rope_rows). kv, gate: key-side rows of row width 2·width (overlap) or width; ape [ratio, row width].
struct CompressorPrefill {
  const float* kv = nullptr;
  const float* gate = nullptr;
  const float* ape = nullptr;
  int64_t ratio = 4, width = 0;
  bool overlap = true;
  float* entries = nullptr;  // [batch, total / ratio, width], pooled (not yet normalised)
};
void compressor_prefill(const CompressorPrefill& c, const SequenceBatch& b, StreamHandle stream);

// The lightning indexer: for each query row, the min(top_k, visible) entries of its sequence with
// the best score Σ_h w_h·ReLU(q_h·k_s)/sqrt(head_dim) among the visible = (p+1)/4 causal ones; equal
// scores in increasing entry order; picks ascending in picks[row, 0..count[row]).
struct IndexerSelect {
  const float* q = nullptr;             // [tokens, heads, head_dim]
  const float* head_weights = nullptr;  // [tokens, heads]
  float head_weight_scale = 1.0f;       // each head weight multiplied by it as it is read
  const float* keys = nullptr;          // [batch, total / 4, head_dim]
  int64_t heads = 0, head_dim = 0, top_k = 0;
  int32_t* picks = nullptr;             // [tokens, top_k]
  int32_t* count = nullptr;             // [tokens]
};
void indexer_select(const IndexerSelect& s, const SequenceBatch& b, StreamHandle stream);

// Attention of every (row, head): over the sliding window's keys of the sequence (positions
// p-window+1 .. p; key = value = kv) and the compressed entries — all causal ones (HCA: e < (p+1)/ratio)
// or the indexer's picks (CSA) — with a per-head sink logit; softmax in F32 with the sum in F64.
// out [tokens, heads, head_dim] (the caller then rotates its rope slice back).
enum class CompressedKeys : uint8_t { None, AllCausal, Picked };
struct AttentionCore {
  const float* q = nullptr;        // [tokens, heads, head_dim]
  const float* kv = nullptr;       // key-side rows [batch, key_stride, head_dim]
  const float* entries = nullptr;  // [batch, total / ratio, head_dim]
  const int32_t* picks = nullptr;  // Picked: [tokens, pick_stride]
  const int32_t* pick_count = nullptr;
  int64_t pick_stride = 0;
  const float* sink = nullptr;     // [heads]
  int64_t heads = 0, head_dim = 0, window = 0, ratio = 0;
  CompressedKeys compressed = CompressedKeys::None;
  float* out = nullptr;
};
// Many heads (a multiple of 32, head_dim a multiple of 64, the row's scores fitting in shared
// memory) go through the tiled kernel, the rest through the reference kernel.
void attention_core(const AttentionCore& a, const SequenceBatch& b, StreamHandle stream);
// One block per (row, head): the CPU engine's loop, the oracle of the tiled kernel.
void attention_core_reference(const AttentionCore& a, const SequenceBatch& b, StreamHandle stream);
// The tiled kernel (v4_attention_core.cu) for rows of at most `max_keys` keys; false, with nothing
// launched, where the shape does not suit it.
bool attention_core_tiled(const AttentionCore& a, const SequenceBatch& b, int64_t max_keys, StreamHandle stream);

}  // namespace fp4kit::cuda
