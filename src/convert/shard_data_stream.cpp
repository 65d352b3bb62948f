#include "convert/shard_data_stream.h"

namespace fp4kit {

ShardDataStream::ShardDataStream(io::SafetensorsWriter& writer, bool direct, size_t direct_buffer_bytes)
    : writer_(writer),
      direct_(direct ? io::DirectWriteStream::open(writer.temp_path(), writer.data_offset(), direct_buffer_bytes)
                     : std::nullopt) {}

void ShardDataStream::append(std::span<const std::byte> bytes) {
  if (!direct_) {
    writer_.append(bytes);
    return;
  }
  writer_.append_hole(bytes.size());
  direct_->append(bytes);
}

void ShardDataStream::finish() {
  if (direct_) direct_->finish();
}

}  // namespace fp4kit
