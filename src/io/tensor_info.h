#pragma once
// Where one tensor lives inside a safetensors file, and the size arithmetic every reader and writer shares.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "formats/dtype.h"

namespace fp4kit::io {

struct TensorInfo {
  std::string name;
  DType dtype = DType::U8;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets relative to the start of the data section
  uint64_t nbytes() const { return end - begin; }
  int64_t numel() const;  // product of shape (1 for a 0-d tensor)
};

// "[256, 128]"; "[]" for a 0-d tensor.
std::string shape_string(const std::vector<int64_t>& shape);

// Bytes that a tensor of `shape` x `dtype` occupies. When there is no answer (a negative dimension, an
// element or bit count past 2^63, a partial last byte of a sub-byte dtype), `problem` says why in words
// that can follow "tensor 'X': " in a message, and nbytes is 0.
struct StorageSize {
  int64_t numel = 0;
  uint64_t nbytes = 0;
  std::string problem;
};
StorageSize storage_size(DType dtype, std::span<const int64_t> shape);

}  // namespace fp4kit::io
