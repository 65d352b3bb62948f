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
    const size_t V = static_cast<size_t>(gpu_.config().base.vocab_size);
    std::vector<float> out;
    step(
        sequences, ids, [&](std::vector<GpuForward::SavedBatch>& saved) { out = gpu_.advance_together(saved, ids); },
        [&](size_t i) {
          const std::vector<float> logits = gpu_.head(true);
          if (out.empty()) out.resize(sequences.size() * V);
          std::copy(logits.begin(), logits.end(), out.begin() + static_cast<ptrdiff_t>(i * V));
        });
    return out;
  }

  bool draws_tokens() const override { return draw_on_device_; }

  // The tokens drawn on the device: a step's logits never leave it.
  std::vector<engine::DrawnToken> advance_and_draw(const std::vector<Sequence*>& sequences, const std::vector<int64_t>& ids,
                                                   const std::vector<engine::TokenDraw>& draws) override {
    if (draws.size() != sequences.size())
      throw Error("advance_and_draw: " + std::to_string(draws.size()) + " draws for " + std::to_string(sequences.size()) +
                  " sequences");
    std::vector<engine::DrawnToken> out(sequences.size());
    step(
        sequences, ids, [&](std::vector<GpuForward::SavedBatch>& saved) { out = gpu_.advance_together_draw(saved, ids, draws); },
        [&](size_t i) { out[i] = std::move(gpu_.head_draw({draws[i]}).front()); });
    return out;
  }

 private:
  // One step of the sequences: the same number of new tokens of each (prompt chunks of new or
  // running sequences, or one decode token each) together (`together` over their saved batches; a
  // new sequence gets an empty one), else each sequence's new tokens one sequence after another,
  // `head(i)` after sequence i's layers (a sequence whose last step failed, which cannot go on).
  template <class Together, class Head>
  void step(const std::vector<Sequence*>& sequences, const std::vector<int64_t>& ids, Together together, Head head) {
    const size_t n = static_cast<size_t>(new_tokens_each(sequences, ids));
    const auto can_go_together = [](Sequence* s) {
      const auto& q = static_cast<GpuSequence&>(*s);
      return q.length() == 0 || static_cast<bool>(q.saved);
    };
    if (std::all_of(sequences.begin(), sequences.end(), can_go_together)) {
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
      return;
    }
    for (size_t i = 0; i < sequences.size(); ++i) {
      auto& q = static_cast<GpuSequence&>(*sequences[i]);
      const std::vector<int64_t> mine(ids.begin() + static_cast<ptrdiff_t>(i * n), ids.begin() + static_cast<ptrdiff_t>((i + 1) * n));
      if (q.length() == 0) {
        gpu_.embed_continued(mine, 1, std::max<int64_t>(max_tokens_, static_cast<int64_t>(n)));
      } else {
        if (!q.saved) throw Error("GPU sequence: its last step failed, it cannot go on");
        gpu_.restore_batch(std::move(q.saved));
        gpu_.embed_next(mine);
      }
      for (int64_t l = 0; l < gpu_.config().layers(); ++l) gpu_.run_layer(l);
      head(i);
      q.saved = gpu_.save_batch();
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
