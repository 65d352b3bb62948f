#pragma once
// The DeepSeek V4 forward pass on one GPU: the CPU engine's arithmetic (engine/engine.h) with every
// operation on the device — hyper-connections, norms, rope, the q/kv LoRA attention with sliding
// window, sinks, the CSA/HCA compressors and the lightning indexer, routing, shared and routed
// experts, the head.
//
// Two precisions (gpu_engine/precision.h). BF16, the default, computes what the serving engines
// compute: every linear's input rounded to BF16, the weight in its stored form through the weight
// GEMMs (cuda/weight_gemm.h; routed experts through the grouped MoE GEMM), F32 accumulation and
// F32 everywhere else (norms, attention, router, mixing). F32 decodes each weight to F32 and runs
// full-F32 cuBLASLt GEMMs: the check mode whose logits the tests hold to the CPU engine's.
//
// The checkpoint streams through: the forward pass's tensor groups (embedding, each layer, head;
// engine/layer_groups.h) are read by the tensor prefetcher (O_DIRECT into pinned slots, one reader
// thread, the next group read while this one computes) and copied to the device as stored (FP8
// blocks, MXFP4, NVFP4 in either layout, BF16). Device memory holds the hidden states, one group's
// stored bytes and the decoded weights in use; host memory two groups.
//
// A checkpoint that fits in half the memory budget stays on the device once read (resident): later
// passes skip the disk and the copies.
//
// Generation continues a batch: embed_continued() keeps each layer's attention caches on the device
// (the KV head's rows and the compressors' projected inputs of every token so far), and
// embed_next() runs only the new tokens through every layer. The sequences of a batch advance
// together. The observer sees each linear input's amax (LinearObserver::on_linear_amax), which is
// what calibration needs, and, where it wants them, the rows themselves in device memory
// (on_linear_device_rows: XᵀX statistics summed on the device).
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/layer_runner.h"
#include "engine/model_config.h"
#include "engine/observer.h"
#include "engine/token_draw.h"
#include "gpu_engine/gpu_memory.h"
#include "gpu_engine/precision.h"

namespace fp4kit::gpu_engine {

struct GpuForwardOptions {
  Precision precision = Precision::Bf16;       // of the linear products (gpu_engine/gpu_linear.h)
  engine::LinearObserver* observer = nullptr;  // gets on_linear_amax() (and the rows) of every linear input
  bool observe_all_experts = false;            // every expert's inputs cover all tokens (observer only)
  int64_t decode_once_rows = kDecodeOnceRows;  // BF16 products (gpu_engine/precision.h)
  int64_t decode_once_expert_rows = kDecodeOnceExpertRows;
  // Device memory the pass may hold (its buffers; the CUDA context and cuBLAS's workspace aside);
  // unset: what the device has free when the pass starts. Layers run their sequences in chunks that
  // fit it; a group whose weights leave no room for one sequence is an InputError.
  GpuMemoryBudget gpu_memory;
  int64_t max_chunk_sequences = 0;  // at most this many sequences per chunk (0: as many as fit)
  // A checkpoint whose stored bytes take at most half the budget stays on the device after its first
  // pass: later passes (generation, repeated runs) read nothing from disk.
  bool keep_resident = true;
};

class GpuForward {
  struct Batch;  // one batch's streams, ids and (continued) attention caches

 public:
  // Reads config.json and the shard headers; InputError (exit 2) where there is no usable GPU or the
  // build has no CUDA.
  explicit GpuForward(const std::string& model_dir, const GpuForwardOptions& options = {});
  ~GpuForward();
  GpuForward(const GpuForward&) = delete;
  GpuForward& operator=(const GpuForward&) = delete;

  const engine::ModelConfig& config() const;
  // Whether the checkpoint stays on the device between passes (GpuForwardOptions::keep_resident).
  bool resident() const;

  // Logits [batch·seq, vocab] for ids [batch, seq] (sequence-major), every sequence from position 0.
  // InputError for an id outside the vocabulary, or naming the first layer whose output holds a
  // non-finite value. With `layer_seconds`, the time of each layer (device work included).
  std::vector<float> forward(const std::vector<int64_t>& ids, int64_t batch, std::vector<double>* layer_seconds = nullptr);

  // The same pass layer by layer (engine/layer_runner.h): embed() starts a batch and reads the
  // embedding group; run_layer() takes the layers in increasing order, each streamed in;
  // hidden()/set_hidden() copy the streams [tokens, hc, hidden] out and back (set_hidden restarts
  // the stream at after_layer + 1); head() gives the logits once every layer ran.
  void embed(const std::vector<int64_t>& ids, int64_t batch);
  // As embed(), keeping the attention caches (device memory per token and layer: the KV head's row
  // and the compressors' inputs) so that embed_next() can continue every sequence; `max_tokens` per
  // sequence sizes them first (they grow past it).
  void embed_continued(const std::vector<int64_t>& ids, int64_t batch, int64_t max_tokens);
  // The next ids.size()/batch tokens of every sequence, once every layer of the last step ran; then
  // run_layer() from layer 0 and head() give the new tokens' logits.
  void embed_next(const std::vector<int64_t>& ids);
  void run_layer(int64_t layer);
  std::vector<float> hidden() const;
  void set_hidden(const std::vector<float>& streams, int64_t after_layer);
  // last_only: only each sequence's last token, logits [batch, vocab].
  std::vector<float> head(bool last_only = false);
  // As head(true), each sequence's next token drawn on the device by draws[i] (cuda/token_draw.h):
  // only the draws come to the host. InputError naming the first non-finite logit.
  std::vector<engine::DrawnToken> head_draw(const std::vector<engine::TokenDraw>& draws);
  // The layer run_layer() last ran, again with its weights (still on the device) on other streams of
  // this batch's shape, in place; the batch's own streams stay (engine::LayerRunner::rerun_layer).
  void rerun_layer(int64_t layer, std::vector<float>& streams);
  // The split of the last embed(), run_layer() or head() (engine/layer_runner.h).
  engine::LayerTiming last_timing() const { return timing_; }

  // A continued batch taken out of the pass (its caches stay on the device, its last step's hidden
  // streams go), so that others can run meanwhile; restore_batch() makes it current again and
  // embed_next() continues it.
  class SavedBatch {
   public:
    SavedBatch();
    ~SavedBatch();
    SavedBatch(SavedBatch&&) noexcept;
    SavedBatch& operator=(SavedBatch&&) noexcept;
    explicit operator bool() const { return batch_ != nullptr; }

   private:
    friend class GpuForward;
    std::unique_ptr<Batch> batch_;
  };
  // Once head() ran for a batch started with embed_continued(); Error otherwise.
  SavedBatch save_batch();
  void restore_batch(SavedBatch saved);
  // A saved batch of one sequence with no tokens yet, for advance_together() to start with its
  // prompt; its caches are first sized for `max_tokens` (they grow past it).
  SavedBatch new_sequence(int64_t max_tokens);
  // The same number n of new tokens for each of several saved batches of one sequence each
  // (ids[i·n .. i·n + n) continue saved[i], each at its own position), as one step: every product
  // reads its weight once for all of them, and each sequence attends over its own caches (prompts of
  // several new sequences, or one decode step of many). Logits of each sequence's last token
  // [saved.size(), vocab]; the batches stay saved, continued by their tokens. InputError for an id
  // outside the vocabulary or a non-finite activation; after any error the batches cannot go on.
  std::vector<float> advance_together(std::vector<SavedBatch>& saved, const std::vector<int64_t>& ids);
  // The same with each sequence's token drawn on the device (head_draw).
  std::vector<engine::DrawnToken> advance_together_draw(std::vector<SavedBatch>& saved, const std::vector<int64_t>& ids,
                                                        const std::vector<engine::TokenDraw>& draws);

 private:
  struct Impl;
  void check_ids(const std::vector<int64_t>& ids, int64_t batch, int64_t past, const char* verb) const;
  void embed_tokens(const std::vector<int64_t>& ids, std::vector<int64_t> positions = {});
  void reserve_cache(Batch& continued, int64_t layer);
  void start_groups(int64_t first_layer);
  void next_group();
  void park_group();
  struct StepChunk;  // tokens that go through a layer's products together
  void compute_layer(int64_t layer, float* streams, bool use_cache);
  // first_nonfinite: where the layer's output check goes (one chunk only: the index covers all
  // streams), or null.
  void compute_chunks(int64_t layer, float* streams, const std::vector<StepChunk>& chunks,
                      int64_t* first_nonfinite = nullptr);
  void finish_timing();
  // The head's work up to the logits on the device, handed to `consume(logits, first_sequence, rows)`
  // chunk by chunk; then what head() does after them (timing, the group let go, the step's checks).
  void run_head(bool last_only, const std::function<void(const float*, int64_t, int64_t)>& consume);
  // advance_together() up to its head, which `head_step` runs inside the step's checks.
  void step_together(std::vector<SavedBatch>& saved, const std::vector<int64_t>& ids, const std::function<void()>& head_step);
  int64_t sequences_per_chunk(int64_t bytes_per_token, const std::string& what) const;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<Batch> batch_;
  engine::LayerTiming timing_;
  size_t previous_budget_ = 0;
  int64_t max_chunk_sequences_ = 0;
  std::chrono::steady_clock::time_point step_start_;
};

}  // namespace fp4kit::gpu_engine
