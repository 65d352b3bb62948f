#include "base/error.h"
#include "engine/layer_runner.h"

namespace fp4kit::engine {

namespace {

class CpuLayerRunner : public LayerRunner {
 public:
  CpuLayerRunner(const std::string& dir, const EngineOptions& o) : engine_(dir, o) {}
  const ModelConfig& config() const override { return engine_.config(); }
  void embed(const std::vector<int64_t>& ids, int64_t batch) override {
    state_ = engine_.embed(ids, batch);
    continued_ = false;
  }
  void embed_continued(const std::vector<int64_t>& ids, int64_t batch, int64_t) override {
    state_ = engine_.embed(ids, batch);
    continued_ = true;
  }
  void embed_next(const std::vector<int64_t>& ids) override {
    if (!continued_) throw Error("embed_next: no batch to continue (start it with embed_continued)");
    engine_.embed_next(state_, ids);
  }
  void run_layer(int64_t layer) override {
    engine_.run_layer(layer, state_);
    if (!continued_)
      for (auto& seq : state_.sequences) seq.layers[static_cast<size_t>(layer)] = {};  // no continuation: caches go
  }
  std::vector<float> hidden() const override { return state_.hidden; }
  void set_hidden(const std::vector<float>& streams, int64_t) override {
    if (streams.size() != state_.hidden.size())
      throw InputError("saved streams of " + std::to_string(streams.size()) + " values do not fit this batch (" +
                       std::to_string(state_.hidden.size()) + ")");
    state_.hidden = streams;
  }
  std::vector<float> head() override { return engine_.head(state_); }
  std::vector<float> head_last() override { return engine_.head(state_, true); }
  void rerun_layer(int64_t layer, std::vector<float>& streams) override {
    if (streams.size() != state_.hidden.size())
      throw InputError("streams of " + std::to_string(streams.size()) + " values do not fit this batch (" +
                       std::to_string(state_.hidden.size()) + ")");
    ForwardState other = state_;  // the same sequences and positions, with the layer's caches empty
    other.hidden = std::move(streams);
    engine_.run_layer(layer, other);
    streams = std::move(other.hidden);
  }

 private:
  Engine engine_;
  ForwardState state_;
  bool continued_ = false;
};

}  // namespace

std::unique_ptr<LayerRunner> make_cpu_runner(const std::string& model_dir, const EngineOptions& options) {
  return std::make_unique<CpuLayerRunner>(model_dir, options);
}

}  // namespace fp4kit::engine
