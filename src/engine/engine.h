#pragma once
// The DeepSeek V4 forward pass in f32 on the CPU, matching transformers' DeepseekV4ForCausalLM
// (eager attention and experts) on dequantized weights. It is driven layer by layer, so that a
// caller (calibration) can step through the model and watch every linear input:
//
//   Engine engine(model_dir, options);               // reads config.json and shard headers only
//   ForwardState s = engine.embed(ids, batch);        // ids [batch, seq], sequence-major
//   for (int64_t l = 0; l < engine.config().layers(); ++l) engine.run_layer(l, s);
//   std::vector<float> logits = engine.head(s);       // [batch*seq, vocab]
//
// ForwardState holds the hc residual streams [tokens, hc, hidden] between layers and, per sequence,
// the attention caches (sliding window, compressor states and entries). embed_next() feeds the next
// tokens of every sequence after the ones already run, which is how generation decodes with a cache.
// Weights are read when a layer runs, through WeightStore (any storage, dequantized to f32), kept only
// within EngineOptions::weight_cache_bytes; one expert is resident at a time otherwise.
//
// Every output element is computed by one thread in a fixed order (see matmul.h), so results do not
// depend on the thread count. Non-finite activations raise an InputError naming the first layer
// whose output holds one.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/attention.h"
#include "engine/model_config.h"
#include "engine/moe.h"
#include "engine/observer.h"
#include "engine/rope.h"
#include "engine/weight_store.h"

namespace fp4kit::engine {

struct EngineOptions {
  unsigned threads = 0;                   // 0: default_threads()
  size_t weight_cache_bytes = size_t{1} << 30;
  LinearObserver* observer = nullptr;     // sees every linear input (observer.h)
  bool observe_all_experts = false;       // every expert's inputs cover all tokens (observer only)
};

struct SequenceState {
  int64_t past = 0;                       // position of the sequence's first token in the state
  std::vector<AttentionCache> layers;     // one per decoder layer
};

struct ForwardState {
  int64_t batch = 0, seq = 0;             // batch sequences of seq tokens each
  std::vector<int64_t> ids;               // [batch*seq]
  std::vector<float> hidden;              // [batch*seq, hc, hidden]
  std::vector<SequenceState> sequences;   // [batch]
  std::vector<Routing> routing;           // per layer, from its last run
  int64_t indexer_boundary_ties = 0;      // queries whose indexer top-k boundary was an exact tie
  int64_t tokens() const { return batch * seq; }
};

class Engine {
 public:
  // `overlay`: some weights read from another checkpoint of the same model (weight_store.h).
  explicit Engine(const std::string& model_dir, EngineOptions options = {}, const WeightOverlay& overlay = {});
  const ModelConfig& config() const { return cfg_; }
  const std::string& dir() const { return store_.dir(); }
  unsigned threads() const { return options_.threads; }

  // A fresh state: ids [batch, seq] (sequence-major) at positions 0..seq-1, streams = embeddings.
  // InputError for an id outside the vocabulary or a shape that does not divide.
  ForwardState embed(const std::vector<int64_t>& ids, int64_t batch);
  // The next ids.size()/batch tokens of every sequence, after the ones the state has run.
  void embed_next(ForwardState& state, const std::vector<int64_t>& ids);
  void run_layer(int64_t layer, ForwardState& state);
  // Final hyper head, norm and head: logits [rows, vocab] of every token, or of the last token of
  // each sequence (rows = batch) with `last_only`.
  std::vector<float> head(const ForwardState& state, bool last_only = false);
  // The final hidden state (after hyper head and norm) [rows, hidden], same row choice as head().
  std::vector<float> final_hidden(const ForwardState& state, bool last_only = false);

  // embed + every layer + head.
  std::vector<float> forward(const std::vector<int64_t>& ids, int64_t batch);

 private:
  void fill_embeddings(ForwardState& state);
  void check_finite(const ForwardState& state, const std::string& where) const;
  ModelConfig cfg_;
  EngineOptions options_;
  WeightStore store_;
  Rope main_rope_, compress_rope_;
};

}  // namespace fp4kit::engine
