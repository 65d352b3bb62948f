#pragma once
// The DeepSeek V4 forward pass on one GPU in F32: the CPU engine's arithmetic (engine/engine.h)
// with every operation on the device — hyper-connections, norms, rope, the q/kv LoRA attention with
// sliding window, sinks, the CSA/HCA compressors and the lightning indexer, routing, shared and
// routed experts, the head — and every product a full-F32 cuBLASLt GEMM. It is the precision-check
// mode of the GPU engine: the tests hold its logits to the CPU engine's.
//
// The checkpoint streams through: the forward pass's tensor groups (embedding, each layer, head;
// engine/layer_groups.h) are read by the tensor prefetcher (O_DIRECT into pinned slots, one reader
// thread, the next group read while this one computes), copied to the device as stored (FP8
// blocks, MXFP4, NVFP4 in either layout, BF16) and decoded to F32 there, one weight at a time as
// the pass reaches it. Device memory holds the hidden states, one group's stored bytes and the F32
// weights in use; host memory two groups.
//
// Scope today: whole sequences from position 0 (what calibration, evaluation and `run` compute);
// the observer sees each linear input's amax (LinearObserver::on_linear_amax), which is what
// calibration needs. Continuing a sequence (generation with caches) and BF16 activations through the
// weight GEMMs are not here yet.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/model_config.h"
#include "engine/observer.h"

namespace fp4kit::gpu_engine {

struct GpuForwardOptions {
  engine::LinearObserver* observer = nullptr;  // gets on_linear_amax() for every linear input
  bool observe_all_experts = false;            // every expert's inputs cover all tokens (observer only)
};

class GpuForward {
 public:
  // Reads config.json and the shard headers; InputError (exit 2) where there is no usable GPU or the
  // build has no CUDA.
  explicit GpuForward(const std::string& model_dir, const GpuForwardOptions& options = {});
  ~GpuForward();
  GpuForward(const GpuForward&) = delete;
  GpuForward& operator=(const GpuForward&) = delete;

  const engine::ModelConfig& config() const;

  // Logits [batch·seq, vocab] for ids [batch, seq] (sequence-major), every sequence from position 0.
  // InputError for an id outside the vocabulary, or naming the first layer whose output holds a
  // non-finite value. With `layer_seconds`, the time of each layer (device work included).
  std::vector<float> forward(const std::vector<int64_t>& ids, int64_t batch, std::vector<double>* layer_seconds = nullptr);

  // The same pass layer by layer (engine/layer_runner.h): embed() starts a batch and reads the
  // embedding group; run_layer() takes the layers in increasing order, each streamed in;
  // hidden()/set_hidden() copy the streams [tokens, hc, hidden] out and back (set_hidden restarts
  // the stream at after_layer + 1); head() gives the logits once every layer ran.
  void embed(const std::vector<int64_t>& ids, int64_t batch);
  void run_layer(int64_t layer);
  std::vector<float> hidden() const;
  void set_hidden(const std::vector<float>& streams, int64_t after_layer);
  std::vector<float> head();

 private:
  struct Impl;
  struct Batch;
  void start_groups(int64_t first_layer);
  void next_group();
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<Batch> batch_;
};

}  // namespace fp4kit::gpu_engine
