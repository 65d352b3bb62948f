#include "engine/sequence_model.h"

#include "base/error.h"

namespace fp4kit::engine {

int64_t SequenceModel::new_tokens_each(const std::vector<Sequence*>& sequences, const std::vector<int64_t>& ids) {
  if (sequences.empty() || ids.empty() || ids.size() % sequences.size() != 0)
    throw InputError("token ids: " + std::to_string(ids.size()) + " ids do not continue " +
                     std::to_string(sequences.size()) + " sequences equally");
  return static_cast<int64_t>(ids.size() / sequences.size());
}

std::vector<DrawnToken> SequenceModel::advance_and_draw(const std::vector<Sequence*>&, const std::vector<int64_t>&,
                                                        const std::vector<TokenDraw>&) {
  throw Error("this model gives logits; it does not draw tokens itself");
}

}  // namespace fp4kit::engine
