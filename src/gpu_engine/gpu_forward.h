#pragma once
// The DeepSeek V4 forward pass on one GPU in F32: the CPU engine's arithmetic (engine/engine.h)
// with every operation on the device — hyper-connections, norms, rope, the q/kv LoRA attention with
// sliding window, sinks, the CSA/HCA compressors and the lightning indexer, routing, shared and
// routed experts, the head — and every product a full-F32 cuBLASLt GEMM. It is the precision-check
// mode of the GPU engine: the tests hold its logits to the CPU engine's.
//
// Scope today: whole sequences from position 0 (what calibration, evaluation and `run` compute),
// the layers run one after the other with their weights read through engine::WeightStore
// (dequantized to F32 on the host) and uploaded when the layer runs; device memory holds the
// hidden states and one layer's weights. Continuing a sequence (generation with caches), BF16
// activations through the weight GEMMs, the streamed upload of stored bytes and the observer hook
// are not here yet.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/model_config.h"

namespace fp4kit::gpu_engine {

class GpuForward {
 public:
  // Reads config.json and the shard headers; InputError (exit 2) where there is no usable GPU or the
  // build has no CUDA.
  explicit GpuForward(const std::string& model_dir, size_t weight_cache_bytes = size_t{1} << 30);
  ~GpuForward();
  GpuForward(const GpuForward&) = delete;
  GpuForward& operator=(const GpuForward&) = delete;

  const engine::ModelConfig& config() const;

  // Logits [batch·seq, vocab] for ids [batch, seq] (sequence-major), every sequence from position 0.
  // InputError for an id outside the vocabulary, or naming the first layer whose output holds a
  // non-finite value. With `layer_seconds`, the time of each layer (device work included).
  std::vector<float> forward(const std::vector<int64_t>& ids, int64_t batch, std::vector<double>* layer_seconds = nullptr);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fp4kit::gpu_engine
