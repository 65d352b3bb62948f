#include "gpu_engine/gpu_sequence_model.h"

#include <algorithm>

#include "base/error.h"
#include "gpu_engine/gpu_forward.h"

namespace fp4kit::gpu_engine {

namespace {

class GpuSequenceModel : public engine::SequenceModel {
 public:
  GpuSequenceModel(const std::string& dir, const GpuForwardOptions& o, int64_t max_tokens)
      : gpu_(dir, o), max_tokens_(max_tokens) {}
  const engine::ModelConfig& config() const override { return gpu_.config(); }
  std::unique_ptr<Sequence> start() override { return std::make_unique<GpuSequence>(); }

  std::vector<float> advance(const std::vector<Sequence*>& sequences, const std::vector<int64_t>& ids) override {
    const size_t n = static_cast<size_t>(new_tokens_each(sequences, ids)), V = static_cast<size_t>(gpu_.config().base.vocab_size);
    if (n == 1 &&
        std::all_of(sequences.begin(), sequences.end(), [](Sequence* s) { return static_cast<bool>(static_cast<GpuSequence*>(s)->saved); }))
      return decode_together(sequences, ids);
    std::vector<float> out(sequences.size() * V);
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
      const std::vector<float> logits = gpu_.head(true);
      std::copy(logits.begin(), logits.end(), out.begin() + static_cast<ptrdiff_t>(i * V));
      q.saved = gpu_.save_batch();
      q.grow(static_cast<int64_t>(n));
    }
    return out;
  }

 private:
  struct GpuSequence : Sequence {
    GpuForward::SavedBatch saved;
    using Sequence::grow;
  };

  // One new token of each running sequence (one or more) in one pass over the weights. A failed step
  // leaves every one of them unable to go on (their saved state is dropped).
  std::vector<float> decode_together(const std::vector<Sequence*>& sequences, const std::vector<int64_t>& ids) {
    std::vector<GpuForward::SavedBatch> saved;
    saved.reserve(sequences.size());
    for (Sequence* s : sequences) saved.push_back(std::move(static_cast<GpuSequence*>(s)->saved));
    std::vector<float> logits = gpu_.advance_together(saved, ids);
    for (size_t i = 0; i < sequences.size(); ++i) {
      auto& q = static_cast<GpuSequence&>(*sequences[i]);
      q.saved = std::move(saved[i]);
      q.grow(1);
    }
    return logits;
  }
  GpuForward gpu_;
  int64_t max_tokens_;
};

}  // namespace

std::unique_ptr<engine::SequenceModel> make_gpu_sequence_model(const std::string& model_dir, Precision precision,
                                                               GpuMemoryBudget memory, int64_t max_tokens) {
  GpuForwardOptions o;
  o.precision = precision;
  o.gpu_memory = memory;
  return std::make_unique<GpuSequenceModel>(model_dir, o, max_tokens);
}

engine::SequenceModelFactory gpu_sequence_model_factory(Precision precision, GpuMemoryBudget memory) {
  return [precision, memory](const std::string& dir, const engine::EngineOptions&, int64_t max_tokens) {
    return make_gpu_sequence_model(dir, precision, memory, max_tokens);
  };
}

}  // namespace fp4kit::gpu_engine
