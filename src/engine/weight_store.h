#pragma once
// The forward pass's view of a checkpoint's weights: f32 tensors with the shape the config implies,
// read through StoredWeights (so every storage dequantizes one way). Tensors are kept in a cache of
// at most `cache_bytes`; a tensor that does not fit is handed out uncached and freed by its last
// user. Memory is thus bounded by the cache plus what one layer step holds at a time (the attention
// weights of one layer, or one expert), whatever the size of the model.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/checkpoint_index.h"
#include "models/stored_weight.h"

namespace fp4kit::engine {

using Tensor = std::shared_ptr<const std::vector<float>>;

// Some weights read from a second checkpoint of the same model: every tensor whose name contains one
// of `markers` (e.g. ".ffn.experts.") comes from `dir`, with its scales; the rest from the model's own
// directory. How eval runs a layer with one kind of weight quantized and the others from the source.
struct WeightOverlay {
  std::string dir;                   // "" = none
  std::vector<std::string> markers;
};

class WeightStore {
 public:
  WeightStore(const std::string& model_dir, size_t cache_bytes, const WeightOverlay& overlay = {});

  const std::string& dir() const { return dir_; }
  bool has(const std::string& name) const { return source(name).has(name); }
  // The whole tensor, checked against `shape` (InputError naming the tensor and both shapes).
  Tensor get(const std::string& name, const std::vector<int64_t>& shape);
  // Rows [begin, end) of a matrix [rows, cols] (never cached: used for embedding rows and head slabs).
  std::vector<float> rows(const std::string& name, int64_t rows, int64_t cols, size_t begin, size_t end);
  std::vector<int64_t> get_i64(const std::string& name, const std::vector<int64_t>& shape);
  std::vector<int64_t> shape(const std::string& name) const { return source(name).shape(name); }
  size_t cached_bytes() const { return cached_bytes_; }

 private:
  void check_shape(const std::string& name, const std::vector<int64_t>& shape) const;
  bool from_overlay(const std::string& name) const;
  const StoredWeights& source(const std::string& name) const { return from_overlay(name) ? *overlay_weights_ : *weights_; }
  const std::string& source_dir(const std::string& name) const { return from_overlay(name) ? overlay_.dir : dir_; }
  std::string dir_;
  io::Checkpoint ckpt_;
  std::unique_ptr<StoredWeights> weights_;
  WeightOverlay overlay_;
  std::unique_ptr<io::Checkpoint> overlay_ckpt_;
  std::unique_ptr<StoredWeights> overlay_weights_;
  size_t cache_limit_;
  size_t cached_bytes_ = 0;
  std::map<std::string, Tensor> cache_;
};

}  // namespace fp4kit::engine
