#pragma once
// The data section of a shard being written: appended through the safetensors writer (the page
// cache), or, where the file system allows, around it (io/direct_io.h), the writer's stream then
// moving on over a hole that the direct stream fills. Both give the same file.
#include <cstdint>
#include <optional>
#include <span>

#include "io/direct_io.h"
#include "io/safetensors_writer.h"

namespace fp4kit {

class ShardDataStream {
 public:
  // After writer.begin(). With `direct`, tries O_DIRECT on the writer's temporary file.
  ShardDataStream(io::SafetensorsWriter& writer, bool direct, size_t direct_buffer_bytes = 8u << 20);

  bool is_direct() const { return direct_.has_value(); }
  // Appends after everything before; Error naming the shard on a failed write.
  void append(std::span<const std::byte> bytes);
  // Before writer.commit(): writes what the direct stream still stages.
  void finish();

 private:
  io::SafetensorsWriter& writer_;
  std::optional<io::DirectWriteStream> direct_;
};

}  // namespace fp4kit
