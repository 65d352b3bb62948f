#pragma once
// A checkpoint's tensors in the order the forward pass reads them, as groups a prefetcher reads
// ahead: first what the embedding needs, then each decoder layer, then the hyper head, the final
// norm and the head. The multi-token-prediction module (mtp.*) is not part of the forward pass
// and belongs to no group.
#include <cstdint>
#include <vector>

#include "io/checkpoint_index.h"
#include "io/tensor_prefetcher.h"

namespace fp4kit::engine {

// InputError naming the checkpoint and the layer if a layer in [0, layers) has no tensors.
std::vector<io::TensorGroup> forward_tensor_groups(const io::Checkpoint& checkpoint, int64_t layers);

}  // namespace fp4kit::engine
