#pragma once
// Reads golden tensors from the reference files under tests/data/oracles.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "formats/float_span.h"
#include "io/safetensors_file.h"
#include "test_data.h"

namespace fp4kit::testing {

class OracleFile {
 public:
  explicit OracleFile(const std::string& relative) : file_(io::SafetensorsFile::open(test_data(relative))) {}

  bool has(const std::string& name) const { return file_.find(name) != nullptr; }
  const io::TensorInfo& info(const std::string& name) const { return file_.at(name); }
  std::vector<uint8_t> bytes(const std::string& name) const {
    const auto& t = file_.at(name);
    std::vector<uint8_t> out(t.nbytes());
    file_.read(t, std::as_writable_bytes(std::span(out)));
    return out;
  }
  float scalar(const std::string& name) const {
    auto b = bytes(name);
    float f;
    std::memcpy(&f, b.data(), 4);
    return f;
  }
  std::vector<float> f32(const std::string& name) const {
    auto b = bytes(name);
    std::vector<float> out(b.size() / 4);
    std::memcpy(out.data(), b.data(), b.size());
    return out;
  }
  const io::SafetensorsFile& file() const { return file_; }

 private:
  io::SafetensorsFile file_;
};

// Number of differing bytes, and a gtest failure message naming the first one.
inline ::testing::AssertionResult BytesEqual(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  size_t diff = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i] != want[i] && diff++ == 0) first = i;
  if (diff == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << diff << " of " << got.size() << " bytes differ; first at " << first
                                       << ": got 0x" << std::hex << int(got[first]) << " want 0x" << int(want[first]);
}

template <typename T>
std::vector<uint8_t> as_bytes_vec(const std::vector<T>& v) {
  std::vector<uint8_t> out(v.size() * sizeof(T));
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

}  // namespace fp4kit::testing
