#include "engine/weight_store.h"

#include "base/error.h"
#include "io/quote_name.h"
#include "io/tensor_info.h"

namespace fp4kit::engine {

WeightStore::WeightStore(const std::string& model_dir, size_t cache_bytes, const WeightOverlay& overlay)
    : dir_(model_dir), ckpt_(io::Checkpoint::open(model_dir)), overlay_(overlay), cache_limit_(cache_bytes) {
  weights_ = std::make_unique<StoredWeights>(ckpt_);
  if (!overlay_.dir.empty()) {
    overlay_ckpt_ = std::make_unique<io::Checkpoint>(io::Checkpoint::open(overlay_.dir));
    overlay_weights_ = std::make_unique<StoredWeights>(*overlay_ckpt_);
  }
}

bool WeightStore::from_overlay(const std::string& name) const {
  if (!overlay_weights_) return false;
  for (const std::string& m : overlay_.markers)
    if (name.find(m) != std::string::npos) return true;
  return false;
}

void WeightStore::check_shape(const std::string& name, const std::vector<int64_t>& shape) const {
  const std::string& dir = source_dir(name);
  if (!source(name).has(name)) throw InputError(dir + ": tensor " + io::quote_name(name) + " is missing from the checkpoint");
  const std::vector<int64_t> actual = source(name).shape(name);
  if (actual != shape)
    throw InputError(dir + ": tensor " + io::quote_name(name) + " has shape " + io::shape_string(actual) +
                     ", the config implies " + io::shape_string(shape));
}

Tensor WeightStore::get(const std::string& name, const std::vector<int64_t>& shape) {
  if (auto it = cache_.find(name); it != cache_.end()) return it->second;
  check_shape(name, shape);
  auto t = std::make_shared<const std::vector<float>>(source(name).read_f32(name));
  const size_t bytes = t->size() * sizeof(float);
  if (cached_bytes_ + bytes <= cache_limit_) {
    cache_.emplace(name, t);
    cached_bytes_ += bytes;
  }
  return t;
}

std::vector<float> WeightStore::rows(const std::string& name, int64_t rows, int64_t cols, size_t begin, size_t end) {
  if (auto it = cache_.find(name); it != cache_.end())
    return {it->second->begin() + static_cast<ptrdiff_t>(begin * cols), it->second->begin() + static_cast<ptrdiff_t>(end * cols)};
  check_shape(name, {rows, cols});
  return source(name).read_f32(name, begin, end);
}

std::vector<int64_t> WeightStore::get_i64(const std::string& name, const std::vector<int64_t>& shape) {
  check_shape(name, shape);
  return source(name).read_i64(name);
}

}  // namespace fp4kit::engine
