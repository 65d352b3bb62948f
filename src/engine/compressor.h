#pragma once
// KV compressors of the compressed attention layers: every `ratio` consecutive tokens are pooled
// into one entry (a softmax over the tokens of learned gates, independently per channel), then
// RMS-normalised and rotated (compress rope) to position w*ratio. Ratio 4 (CSA, and the indexer's
// compressor) uses overlapping windows: the entry of window w also pools the first half-channels
// ("Ca") of window w-1, so each entry spans 8 tokens. Ratio 128 (HCA) pools one window.
//
// The state carries what a continuation needs (transformers' compressor cache): raw projections of
// the tokens of the incomplete window, the Ca half of the last complete window, and the entries.
// Feeding a sequence in one chunk or token by token gives the same entries bit for bit.
#include <cstdint>
#include <vector>

#include "engine/rope.h"

namespace fp4kit::engine {

struct CompressorWeights {
  const float* ape = nullptr;   // [ratio, c*d]: added to the gates by in-window offset
  const float* norm = nullptr;  // [d]
  int64_t ratio = 4;
  int64_t width = 0;            // d: the entry width
  bool overlap = true;          // c = 2 (ratio 4) or c = 1 (ratio 128)
  int64_t row_width() const { return overlap ? 2 * width : width; }
};

struct CompressorState {
  int64_t count = 0;                     // entries emitted; the pending window starts at count*ratio
  std::vector<float> pending_kv, pending_gate;  // [pending, c*d], raw (no ape)
  std::vector<float> overlap_kv, overlap_gate;  // [ratio, d]: Ca of window count-1 (gate with ape)
  std::vector<float> entries;            // [count, d], normalised and rotated
};

// Appends the projections kv, gate [n, c*d] of the next n tokens of the sequence and emits every
// window they complete.
void compressor_append(CompressorState& state, const CompressorWeights& w, const float* kv, const float* gate,
                       int64_t n, const Rope& rope, float rms_eps);

}  // namespace fp4kit::engine
