#pragma once
// DeepSeek V4 attention for one layer over a batch of sequences: low-rank query with q norm and a
// per-head RMS norm, one shared KV head (key = value) with kv norm, partial rope, sliding window,
// attention sinks, grouped output projection; in CSA/HCA layers also compressed entries (all causal
// ones for HCA, the indexer's choice for CSA). Each sequence continues from its AttentionCache, so a
// full forward is the same computation as prefill-then-decode.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/compressor.h"
#include "engine/model_config.h"
#include "engine/observer.h"
#include "engine/rope.h"
#include "engine/weight_store.h"

namespace fp4kit::engine {

struct AttentionCache {
  std::vector<float> window;  // the last < sliding_window key/value vectors [n, head_dim], oldest first
  CompressorState compressor, indexer;
};

struct AttentionWeights {
  Tensor wq_a, q_norm, wq_b, wkv, kv_norm, wo_a, wo_b, sink;
  Tensor cmp_wkv, cmp_wgate, cmp_ape, cmp_norm;            // CSA / HCA
  Tensor idx_wq_b, idx_weights_proj, idx_wkv, idx_wgate, idx_ape, idx_norm;  // CSA
};

AttentionWeights load_attention_weights(WeightStore& store, const ModelConfig& cfg, int64_t layer);

struct SequenceSpan {
  int64_t first_row = 0;  // of the batch's token rows
  int64_t length = 0;     // new tokens
  int64_t past = 0;       // position of the first new token
  AttentionCache* cache = nullptr;
};

struct AttentionContext {
  const ModelConfig* cfg = nullptr;
  int64_t layer = 0;
  const Rope* main_rope = nullptr;
  const Rope* compress_rope = nullptr;
  unsigned threads = 1;
  LinearObserver* observer = nullptr;
  int64_t* indexer_boundary_ties = nullptr;  // incremented per query whose top-k boundary is a tie
};

// a [T, H] (after attn_norm) -> out [T, H].
void attention_forward(const AttentionContext& ctx, const AttentionWeights& w, const float* a, int64_t tokens,
                       const std::vector<SequenceSpan>& sequences, float* out);

}  // namespace fp4kit::engine
