#include "gpu_engine/gpu_layer_runner.h"

#include "gpu_engine/gpu_forward.h"

namespace fp4kit::gpu_engine {

namespace {

class GpuLayerRunner : public engine::LayerRunner {
 public:
  GpuLayerRunner(const std::string& dir, const engine::EngineOptions& o, Precision precision, GpuMemoryBudget memory,
                 int64_t max_chunk_sequences)
      : gpu_(dir, options(o, precision, memory, max_chunk_sequences)) {}
  const engine::ModelConfig& config() const override { return gpu_.config(); }
  void embed(const std::vector<int64_t>& ids, int64_t batch) override { gpu_.embed(ids, batch); }
  void embed_continued(const std::vector<int64_t>& ids, int64_t batch, int64_t max_tokens) override {
    gpu_.embed_continued(ids, batch, max_tokens);
  }
  void embed_next(const std::vector<int64_t>& ids) override { gpu_.embed_next(ids); }
  void run_layer(int64_t layer) override { gpu_.run_layer(layer); }
  std::vector<float> hidden() const override { return gpu_.hidden(); }
  void set_hidden(const std::vector<float>& streams, int64_t after_layer) override { gpu_.set_hidden(streams, after_layer); }
  std::vector<float> head() override { return gpu_.head(); }
  std::vector<float> head_last() override { return gpu_.head(true); }
  void rerun_layer(int64_t layer, std::vector<float>& streams) override { gpu_.rerun_layer(layer, streams); }
  engine::LayerTiming last_timing() const override { return gpu_.last_timing(); }

 private:
  static GpuForwardOptions options(const engine::EngineOptions& o, Precision precision, GpuMemoryBudget memory,
                                   int64_t max_chunk_sequences) {
    GpuForwardOptions g;
    g.precision = precision, g.observer = o.observer, g.observe_all_experts = o.observe_all_experts;
    g.gpu_memory = memory;
    g.max_chunk_sequences = max_chunk_sequences;
    return g;
  }
  GpuForward gpu_;
};

}  // namespace

std::unique_ptr<engine::LayerRunner> make_gpu_runner(const std::string& model_dir, const engine::EngineOptions& options,
                                                     Precision precision, GpuMemoryBudget memory,
                                                     int64_t max_chunk_sequences) {
  return std::make_unique<GpuLayerRunner>(model_dir, options, precision, memory, max_chunk_sequences);
}

engine::LayerRunnerFactory gpu_runner_factory(Precision precision, GpuMemoryBudget memory, int64_t max_chunk_sequences) {
  return [precision, memory, max_chunk_sequences](const std::string& dir, const engine::EngineOptions& o) {
    return make_gpu_runner(dir, o, precision, memory, max_chunk_sequences);
  };
}

}  // namespace fp4kit::gpu_engine
