#pragma once
// Many sequences, each continued from its own attention caches, several of them in one step: what a
// server drives (serve/scheduler.h). The CPU engine computes one step for all the sequences at once
// (each row on its own, so a sequence's logits do not depend on the others); the GPU pass keeps each
// sequence's caches on the device and runs a decode step of several sequences as one batch through
// its products, each sequence attending over its own caches.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/token_draw.h"

namespace fp4kit::engine {

class SequenceModel {
 public:
  // One sequence's state between steps (its caches and the tokens it has run).
  class Sequence {
   public:
    virtual ~Sequence() = default;
    int64_t length() const { return length_; }

   protected:
    void grow(int64_t n) { length_ += n; }  // after a step ran n new tokens

   private:
    int64_t length_ = 0;
  };

  virtual ~SequenceModel() = default;
  virtual const ModelConfig& config() const = 0;
  // An empty sequence.
  virtual std::unique_ptr<Sequence> start() = 0;
  // Runs ids (sequence-major, ids.size() / sequences.size() new tokens each) after what each sequence
  // has run, and gives the logits of each sequence's last new token [sequences, vocab]. InputError for
  // an id outside the vocabulary or a non-finite activation; a sequence whose step failed cannot go on.
  virtual std::vector<float> advance(const std::vector<Sequence*>& sequences, const std::vector<int64_t>& ids) = 0;
  // Whether advance_and_draw() works: the model draws the next tokens where its logits are (the GPU
  // pass, whose logits then stay on the device).
  virtual bool draws_tokens() const { return false; }
  // advance(), then each sequence's next token drawn by draws[i] (engine/token_draw.h). Error unless
  // draws_tokens(); InputError as advance(), and for a non-finite logit.
  virtual std::vector<DrawnToken> advance_and_draw(const std::vector<Sequence*>& sequences, const std::vector<int64_t>& ids,
                                                   const std::vector<TokenDraw>& draws);

 protected:
  // InputError unless ids give every sequence the same, non-zero number of new tokens; that number.
  static int64_t new_tokens_each(const std::vector<Sequence*>& sequences, const std::vector<int64_t>& ids);
};

// `max_tokens`: the most tokens a sequence will hold (prompt and generation), to size caches.
using SequenceModelFactory = std::function<std::unique_ptr<SequenceModel>(const std::string& model_dir,
                                                                          const EngineOptions& options, int64_t max_tokens)>;

// The CPU engine (f32).
std::unique_ptr<SequenceModel> make_cpu_sequence_model(const std::string& model_dir, const EngineOptions& options);
SequenceModelFactory cpu_sequence_model_factory();

}  // namespace fp4kit::engine
