#include "gpu_engine/gpu_sequence_model.h"

#include <algorithm>

#include "base/error.h"
#include "gpu_engine/gpu_forward.h"

namespace fp4kit::gpu_engine {

namespace {

class GpuSequenceModel : public engine::SequenceModel {
 public:
  GpuSequenceModel(const std::string& dir, const GpuForwardOptions& o, int64_t max_tokens, bool draw_on_device)
      : gpu_(dir, o), max_tokens_(max_tokens), draw_on_device_(draw_on_device) {}
  const engine::ModelConfig& config() const override { return gpu_.config(); }
  std::unique_ptr<Sequence> start() override { return std::make_unique<GpuSequence>(); }

  std::vector<float> advance(const std::vector<Sequence*>& sequences, const std::vector<int64_t>& ids) override {
    std::vector<float> out;
    step(sequences, ids, [&](std::vector<GpuForward::SavedBatch>& saved) { out = gpu_.advance_together(saved, ids); });
    return out;
  }

  bool draws_tokens() const override { return draw_on_device_; }

  // The tokens drawn on the device: a step's logits never leave it.
  std::vector<engine::DrawnToken> advance_and_draw(const std::vector<Sequence*>& sequences, const std::vector<int64_t>& ids,
                                                   const std::vector<engine::TokenDraw>& draws) override {
    if (draws.size() != sequences.size())
      throw Error("advance_and_draw: " + std::to_string(draws.size()) + " draws for " + std::to_string(sequences.size()) +
                  " sequences");
    std::vector<engine::DrawnToken> out;
    step(sequences, ids,
         [&](std::vector<GpuForward::SavedBatch>& saved) { out = gpu_.advance_together_draw(saved, ids, draws); });
    return out;
  }

 private:
  // One step of the sequences, the same number of new tokens of each (prompt chunks of new or
  // running sequences, or one decode token each), as one batch: `together` over their saved batches
  // (a new sequence gets an empty one). A sequence whose last step failed cannot go on: refused
  // before any work.
  template <class Together>
  void step(const std::vector<Sequence*>& sequences, const std::vector<int64_t>& ids, Together together) {
    const size_t n = static_cast<size_t>(new_tokens_each(sequences, ids));
    for (Sequence* s : sequences) {
      const auto& q = static_cast<GpuSequence&>(*s);
      if (q.length() > 0 && !q.saved) throw Error("GPU sequence: its last step failed, it cannot go on");
    }
    // A failed step leaves every one of them unable to go on (their saved state is dropped).
    std::vector<GpuForward::SavedBatch> saved;
    saved.reserve(sequences.size());
    for (Sequence* s : sequences) {
      auto& q = static_cast<GpuSequence&>(*s);
      saved.push_back(q.length() == 0 ? gpu_.new_sequence(std::max<int64_t>(max_tokens_, static_cast<int64_t>(n)))
                                      : std::move(q.saved));
    }
    together(saved);
    for (size_t i = 0; i < sequences.size(); ++i) {
      auto& q = static_cast<GpuSequence&>(*sequences[i]);
      q.saved = std::move(saved[i]);
      q.grow(static_cast<int64_t>(n));
    }
  }

  struct GpuSequence : Sequence {
    GpuForward::SavedBatch saved;
    using Sequence::grow;
  };

  GpuForward gpu_;
  int64_t max_tokens_;
  bool draw_on_device_;
};

}  // namespace

std::unique_ptr<engine::SequenceModel> make_gpu_sequence_model(const std::string& model_dir, Precision precision,
                                                               GpuMemoryBudget memory, int64_t max_tokens,
                                                               bool draw_on_device) {
  GpuForwardOptions o;
  o.precision = precision;
  o.gpu_memory = memory;
  return std::make_unique<GpuSequenceModel>(model_dir, o, max_tokens, draw_on_device);
}

engine::SequenceModelFactory gpu_sequence_model_factory(Precision precision, GpuMemoryBudget memory, bool draw_on_device) {
  return [precision, memory, draw_on_device](const std::string& dir, const engine::EngineOptions&, int64_t max_tokens) {
    return make_gpu_sequence_model(dir, precision, memory, max_tokens, draw_on_device);
  };
}

}  // namespace fp4kit::gpu_engine
