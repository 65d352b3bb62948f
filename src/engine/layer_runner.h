#pragma once
// The forward pass driven layer by layer, whatever computes it: the CPU engine (engine.h) or the
// GPU engine (gpu_engine/), so that a driver such as calibrate runs on either. The runner owns the
// state of one batch: embed() starts it, run_layer() takes the layers in increasing order (a GPU
// runner streams them), hidden()/set_hidden() save and restore the streams between layers (resume).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/engine.h"

namespace fp4kit::engine {

// Where the time of the last run_layer() went, for runners that stream the checkpoint (zeros
// elsewhere): waiting for the reader, copying the layer's stored bytes to the device, computing.
struct LayerTiming {
  double read_wait_seconds = 0, copy_seconds = 0, compute_seconds = 0;
  uint64_t bytes = 0;                // stored bytes of the layer's tensors
  uint64_t device_peak_bytes = 0;    // most device memory held at once during the layer
  int64_t chunks = 1;                // the batch's sequences ran in this many chunks (memory budget)
  // The compute split by stage ("attention.core", "moe.routed", ...), in order of first appearance:
  // the device's time, and the host's time between the same marks (queueing work, or waiting).
  std::vector<std::pair<std::string, double>> stage_seconds, host_stage_seconds;
};

class LayerRunner {
 public:
  virtual ~LayerRunner() = default;
  virtual const ModelConfig& config() const = 0;
  // A new batch: ids [batch, seq], sequence-major, every sequence from position 0.
  virtual void embed(const std::vector<int64_t>& ids, int64_t batch) = 0;
  // The same, keeping each sequence's attention caches so that embed_next() can continue it
  // (generation); `max_tokens` per sequence is a hint for sizing them.
  virtual void embed_continued(const std::vector<int64_t>& ids, int64_t batch, int64_t max_tokens) = 0;
  // The next ids.size()/batch tokens of every sequence of a continued batch, once every layer of the
  // last step ran; run_layer() from layer 0 and head() then give the new tokens' logits.
  virtual void embed_next(const std::vector<int64_t>& ids) = 0;
  // The next layer; InputError naming the layer if its output holds a non-finite value.
  virtual void run_layer(int64_t layer) = 0;
  // The hc residual streams [tokens, hc, hidden] after the last layer run.
  virtual std::vector<float> hidden() const = 0;
  // Streams saved after layer `after_layer`: the next run_layer is after_layer + 1.
  virtual void set_hidden(const std::vector<float>& streams, int64_t after_layer) = 0;
  // Logits [tokens, vocab] of this step's tokens once every layer ran.
  virtual std::vector<float> head() = 0;
  // The same for each sequence's last token only: logits [batch, vocab].
  virtual std::vector<float> head_last() = 0;
  // Runs the layer run_layer() last ran once more, with this runner's weights, on other streams of
  // this batch's shape (in place), leaving the runner's own streams as they were: what this model's
  // layer makes of another model's input (eval's attribution). InputError naming the layer if the
  // output holds a non-finite value.
  virtual void rerun_layer(int64_t layer, std::vector<float>& streams) = 0;
  virtual LayerTiming last_timing() const { return {}; }
};

// Makes a runner for a model directory; the observer (may be null) sees every linear input.
using LayerRunnerFactory =
    std::function<std::unique_ptr<LayerRunner>(const std::string& model_dir, const EngineOptions& options)>;

// The CPU engine as a LayerRunner.
std::unique_ptr<LayerRunner> make_cpu_runner(const std::string& model_dir, const EngineOptions& options);

}  // namespace fp4kit::engine
