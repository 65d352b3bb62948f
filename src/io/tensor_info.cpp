#include "io/tensor_info.h"

#include <limits>

namespace fp4kit::io {

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

StorageSize storage_size(DType dtype, std::span<const int64_t> shape) {
  StorageSize out;
  const std::string what = "shape " + shape_string({shape.begin(), shape.end()}) + " x " +
                           std::string(dtype_name(dtype));
  // Checked at every step, like the reference implementation: a header can hold any 64-bit dims, and
  // a wrapped product would make a tiny byte range look valid for a huge tensor.
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0) {
      out.problem = "shape dimension " + std::to_string(d) + " is negative";
      return out;
    }
    if (__builtin_mul_overflow(numel, d, &numel)) {
      out.problem = what + " has more than 2^63 elements";
      return out;
    }
  }
  int64_t bits = 0;
  if (__builtin_mul_overflow(numel, static_cast<int64_t>(dtype_bits(dtype)), &bits)) {
    out.problem = what + " has more than 2^63 bits";
    return out;
  }
  if (bits % 8 != 0) {
    out.problem = what + " is " + std::to_string(bits) + " bits, not a whole number of bytes";
    return out;
  }
  out.numel = numel;
  out.nbytes = static_cast<uint64_t>(bits / 8);
  return out;
}

}  // namespace fp4kit::io
