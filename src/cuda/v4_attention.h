#pragma once
// The attention pieces of DeepSeek V4 on the GPU for a batch of sequences run from their first
// token (prefill), in F32 as the CPU engine computes them (engine/compressor.h, indexer.h,
// attention.h), which the tests compare with. Token rows are sequence-major: row b·seq + t is
// token t of sequence b, at position t. Device pointers; asynchronous on `stream`.
#include <cstdint>

#include "cuda/runtime.h"

namespace fp4kit::cuda {

struct SequenceBatch {
  int64_t batch = 0, seq = 0;
  int64_t tokens() const { return batch * seq; }
};

// The KV compressor over whole sequences: entry w of sequence b pools the tokens of window w
// (and, with `overlap`, the first-half channels of window w-1) by a softmax over gate + ape per
// channel; entries [batch, seq / ratio, width] are then RMS-normalised with `norm` and rotated to
// position w·ratio by the caller (rms_norm_rows, rope_rows). kv, gate: [tokens, row width] with
// row width 2·width (overlap) or width; ape [ratio, row width].
struct CompressorPrefill {
  const float* kv = nullptr;
  const float* gate = nullptr;
  const float* ape = nullptr;
  int64_t ratio = 4, width = 0;
  bool overlap = true;
  float* entries = nullptr;  // [batch, seq / ratio, width], pooled (not yet normalised)
};
void compressor_prefill(const CompressorPrefill& c, const SequenceBatch& b, StreamHandle stream);

// The lightning indexer: for each query row, the min(top_k, visible) entries of its sequence with
// the best score Σ_h w_h·ReLU(q_h·k_s)/sqrt(head_dim) among the visible = (t+1)/4 causal ones; equal
// scores in increasing entry order; picks ascending in picks[row, 0..count[row]).
struct IndexerSelect {
  const float* q = nullptr;             // [tokens, heads, head_dim]
  const float* head_weights = nullptr;  // [tokens, heads]
  const float* keys = nullptr;          // [batch, seq / 4, head_dim]
  int64_t heads = 0, head_dim = 0, top_k = 0;
  int32_t* picks = nullptr;             // [tokens, top_k]
  int32_t* count = nullptr;             // [tokens]
};
void indexer_select(const IndexerSelect& s, const SequenceBatch& b, StreamHandle stream);

// Attention of every (row, head): over the sliding window's keys of the sequence (positions
// t-window+1 .. t; key = value = kv) and the compressed entries — all causal ones (HCA: e < (t+1)/ratio)
// or the indexer's picks (CSA) — with a per-head sink logit; softmax in F32 with the sum in F64.
// out [tokens, heads, head_dim] (the caller then rotates its rope slice back).
enum class CompressedKeys : uint8_t { None, AllCausal, Picked };
struct AttentionCore {
  const float* q = nullptr;        // [tokens, heads, head_dim]
  const float* kv = nullptr;       // [tokens, head_dim]
  const float* entries = nullptr;  // [batch, seq / ratio, head_dim]
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
