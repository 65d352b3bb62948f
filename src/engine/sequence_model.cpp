#include "engine/sequence_model.h"

#include "base/error.h"

namespace fp4kit::engine {

int64_t SequenceModel::new_tokens_each(const std::vector<Sequence*>& sequences, const std::vector<int64_t>& ids) {
  if (sequences.empty() || ids.empty() || ids.size() % sequences.size() != 0)
    throw InputError("token ids: " + std::to_string(ids.size()) + " ids do not continue " +
                     std::to_string(sequences.size()) + " sequences equally");
  return static_cast<int64_t>(ids.size() / sequences.size());
}

}  // namespace fp4kit::engine
