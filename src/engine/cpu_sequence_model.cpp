#include "base/error.h"
#include "engine/sequence_model.h"

namespace fp4kit::engine {

namespace {

class CpuSequenceModel : public SequenceModel {
 public:
  CpuSequenceModel(const std::string& dir, const EngineOptions& o) : engine_(dir, o) {}
  const ModelConfig& config() const override { return engine_.config(); }

  std::unique_ptr<Sequence> start() override {
    auto s = std::make_unique<CpuSequence>();
    s->state.layers.resize(static_cast<size_t>(engine_.config().layers()));
    return s;
  }

  std::vector<float> advance(const std::vector<Sequence*>& sequences, const std::vector<int64_t>& ids) override {
    const int64_t n = new_tokens_each(sequences, ids);
    // The sequences side by side, each at its own position: embed_next moves every one on by the
    // state's seq (0 here) and then runs the new tokens after it.
    ForwardState s;
    s.batch = static_cast<int64_t>(sequences.size());
    s.seq = 0;
    s.routing.resize(static_cast<size_t>(engine_.config().layers()));
    for (Sequence* q : sequences) {
      auto& c = static_cast<CpuSequence&>(*q);
      c.state.past = c.length();
      s.sequences.push_back(std::move(c.state));
    }
    struct GiveBack {  // the states go back to their sequences, also when a layer throws
      ForwardState& s;
      const std::vector<Sequence*>& to;
      ~GiveBack() {
        for (size_t i = 0; i < to.size() && i < s.sequences.size(); ++i)
          static_cast<CpuSequence&>(*to[i]).state = std::move(s.sequences[i]);
      }
    } give_back{s, sequences};
    engine_.embed_next(s, ids);
    for (int64_t l = 0; l < engine_.config().layers(); ++l) engine_.run_layer(l, s);
    std::vector<float> logits = engine_.head(s, /*last_only=*/true);
    for (Sequence* q : sequences) static_cast<CpuSequence&>(*q).grow(n);
    return logits;
  }

 private:
  struct CpuSequence : Sequence {
    SequenceState state;
    using Sequence::grow;
  };
  Engine engine_;
};

}  // namespace

std::unique_ptr<SequenceModel> make_cpu_sequence_model(const std::string& model_dir, const EngineOptions& options) {
  return std::make_unique<CpuSequenceModel>(model_dir, options);
}

SequenceModelFactory cpu_sequence_model_factory() {
  return [](const std::string& dir, const EngineOptions& o, int64_t) { return make_cpu_sequence_model(dir, o); };
}

}  // namespace fp4kit::engine
