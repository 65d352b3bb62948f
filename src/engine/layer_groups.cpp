#include "engine/layer_groups.h"

#include <charconv>
#include <string_view>

#include "base/error.h"

namespace fp4kit::engine {

namespace {

// The decoder layer a tensor belongs to ("layers.N." or "model.layers.N."), or -1.
int64_t layer_of(std::string_view name) {
  for (std::string_view prefix : {"layers.", "model.layers."}) {
    if (!name.starts_with(prefix)) continue;
    name.remove_prefix(prefix.size());
    int64_t layer = -1;
    const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), layer);
    if (ec == std::errc() && end != name.data() && end < name.data() + name.size() && *end == '.') return layer;
  }
  return -1;
}

bool is_embedding(std::string_view name) {
  return name.starts_with("embed.") || name.starts_with("model.embed_tokens.");
}

}  // namespace

std::vector<io::TensorGroup> forward_tensor_groups(const io::Checkpoint& checkpoint, int64_t layers) {
  std::vector<io::TensorGroup> groups(static_cast<size_t>(layers + 2));
  groups.front().label = "embedding";
  for (int64_t l = 0; l < layers; ++l) groups[static_cast<size_t>(l + 1)].label = "layer " + std::to_string(l);
  groups.back().label = "head";
  for (const std::string& file : checkpoint.shard_files())
    for (const io::TensorInfo& t : checkpoint.shard(file).tensors()) {
      const std::string_view name = t.name;
      if (name.starts_with("mtp.") || name.starts_with("model.mtp.")) continue;
      const int64_t layer = layer_of(name);
      if (layer >= layers) continue;  // past the config's layers: the pass never reads it
      if (layer >= 0) groups[static_cast<size_t>(layer + 1)].tensors.push_back(t.name);
      else if (is_embedding(name)) groups.front().tensors.push_back(t.name);
      else groups.back().tensors.push_back(t.name);
    }
  for (int64_t l = 0; l < layers; ++l)
    if (groups[static_cast<size_t>(l + 1)].tensors.empty())
      throw InputError(checkpoint.dir() + ": no tensors of layer " + std::to_string(l) + " (config.json has " +
                       std::to_string(layers) + " layers)");
  return groups;
}

}  // namespace fp4kit::engine
