#pragma once
// Shared by the engine tests: the reference outputs of transformers on the tiny checkpoint
// (tests/data/dsv4-tiny/reference.safetensors, see its README) and a forward pass over them, run once.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "io/safetensors_file.h"
#include "nan_aware.h"
#include "test_data.h"

namespace fp4kit::testing {

inline std::string tiny_dir() { return test_data("dsv4-tiny"); }

class Reference {
 public:
  // `file`: a path under tests/data (the fixture's reference by default).
  explicit Reference(const std::string& file = "dsv4-tiny/reference.safetensors")
      : file_(io::SafetensorsFile::open(test_data(file))) {}
  bool has(const std::string& name) const { return file_.find(name) != nullptr; }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const io::TensorInfo& t : file_.tensors()) out.push_back(t.name);
    return out;
  }
  std::vector<int64_t> shape(const std::string& name) const { return file_.at(name).shape; }
  std::vector<float> f32(const std::string& name) const { return as<float>(name, DType::F32); }
  std::vector<int64_t> i64(const std::string& name) const { return as<int64_t>(name, DType::I64); }

 private:
  template <typename T>
  std::vector<T> as(const std::string& name, DType dtype) const {
    const io::TensorInfo& info = file_.at(name);
    if (info.dtype != dtype) throw std::runtime_error(name + ": unexpected dtype");
    const std::vector<std::byte> bytes = file_.read_all(info);
    std::vector<T> out(bytes.size() / sizeof(T));
    std::memcpy(out.data(), bytes.data(), bytes.size());
    return out;
  }
  io::SafetensorsFile file_;
};

// max |a - b|; NaN if any difference is NaN, infinite if the sizes differ.
inline float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = a.size() == b.size() ? 0.0f : INFINITY;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = max_keeping_nan(m, std::abs(a[i] - b[i]));
  return m;
}

}  // namespace fp4kit::testing
