#pragma once
// Streaming safetensors writer: declare every tensor, begin() writes the header, then the data goes
// straight to disk in layout order, whole tensors or arbitrary chunks. It never holds tensor data.
// The output is published atomically (AtomicFile) by commit().
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "io/atomic_file.h"
#include "io/tensor_info.h"

namespace fp4kit::io {

class SafetensorsWriter {
 public:
  explicit SafetensorsWriter(std::string path);

  // Both before begin(). Misuse (a duplicate or empty name, a shape with no whole byte size, calls in
  // the wrong phase) throws Error.
  void set_metadata(std::map<std::string, std::string> metadata);
  void declare(std::string name, DType dtype, std::vector<int64_t> shape);

  // Freezes the layout (sorted by name, so the output does not depend on declaration order), computes
  // offsets (contiguous from 0) and writes the 8-byte length and the JSON header, padded with spaces
  // so that the data section starts at a multiple of 8.
  void begin();
  const std::vector<TensorInfo>& layout() const { return layout_; }

  // A whole tensor; tensors must come in layout() order and bytes.size() must be its byte size.
  // Empty tensors may be written at any time or not at all.
  void write(std::string_view name, std::span<const std::byte> bytes);
  // Or the data section as a stream of chunks of any size: the position moves on to the next tensor
  // when one is full. Mixes with write().
  void append(std::span<const std::byte> chunk);
  // Like append() of `n` zero bytes, but leaves a hole in the file (AtomicFile::skip): a header over
  // a sparse data section, for checkpoints whose values nobody reads.
  void append_hole(uint64_t n);

  // Checks that every tensor was fully written, then publishes the file.
  void commit();

  const std::string& path() const { return path_; }
  // From begin() on: the temporary file the shard is written to until commit(), and where its data
  // section starts in it (8 + the header length), for a writer of ranges at explicit offsets.
  const std::string& temp_path() const;
  uint64_t data_offset() const { return data_offset_; }

 private:
  [[noreturn]] void fail(const std::string& what) const;
  const TensorInfo* tensor_at_position() const;  // the tensor holding the next byte to write

  std::string path_;
  std::map<std::string, std::string> metadata_;
  std::vector<TensorInfo> layout_;  // declaration order until begin(), then sorted with offsets
  std::unordered_map<std::string, size_t> index_of_;
  std::optional<AtomicFile> file_;  // exists from begin() on
  uint64_t data_size_ = 0;
  uint64_t data_offset_ = 0;
  uint64_t written_ = 0;  // bytes of the data section written so far
  bool committed_ = false;
};

}  // namespace fp4kit::io
