#pragma once
// Writes a shard's data on a thread of its own, so that reading and computing the next tensors
// overlap with writing the last ones. Buffers queue in order, bounded by bytes: memory stays a few
// tensors whatever the checkpoint. A write error stops the thread and comes back to the producer
// at its next push() or at finish(). Tensors kept byte for byte can instead be queued as ranges of
// a source file (push_copy), which the thread copies with copy_file_range into the shard's
// temporary file at the tensor's place (range_copy.h), leaving a hole in the writer's stream. The
// other bytes go to a ShardDataStream (through the page cache or around it).
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "convert/range_copy.h"
#include "convert/shard_hash.h"
#include "convert/shard_data_stream.h"
#include "io/safetensors_writer.h"

namespace fp4kit {

class BackgroundWriter {
 public:
  // `hasher` (optional) sees every byte written, in order.
  // `temp` (optional): a second descriptor on the writer's temporary file, for push_copy; closed here.
  // `stream`: where the bytes go (the writer's, or around the page cache); finished by finish().
  BackgroundWriter(io::SafetensorsWriter& writer, ShardDataStream& stream, uint64_t max_queued_bytes,
                   ShardHasher* hasher = nullptr, std::optional<OpenTempShard> temp = std::nullopt);
  BackgroundWriter(const BackgroundWriter&) = delete;
  BackgroundWriter& operator=(const BackgroundWriter&) = delete;
  // Without finish() (an exception on the producer's side): stops after the current write.
  ~BackgroundWriter();

  // Appends `bytes` to the writer's data stream after everything pushed before. Waits while the
  // queue is full; rethrows a write error the thread met.
  void push(std::vector<std::byte> bytes);
  // Whether push_copy may be used: the shard's temporary file could be opened a second time.
  bool can_copy() const { return temp_.has_value(); }
  // Appends `bytes` bytes of `src_fd` from `src_offset` (only if can_copy()); the source's pages are
  // dropped from the cache afterwards.
  void push_copy(int src_fd, uint64_t src_offset, uint64_t bytes);
  // Waits until everything is written; rethrows a write error.
  void finish();

 private:
  void run();
  void stop();

  io::SafetensorsWriter& writer_;
  ShardHasher* hasher_;
  const uint64_t max_queued_bytes_;
  std::mutex mutex_;
  std::condition_variable changed_;
  struct Item {
    std::vector<std::byte> bytes;
    int src_fd = -1;  // >= 0: a copy of `copy_bytes` bytes from src_offset
    uint64_t src_offset = 0, copy_bytes = 0;
  };
  void write_item(Item& item);

  ShardDataStream& stream_;
  std::optional<OpenTempShard> temp_;
  uint64_t position_ = 0;             // bytes of the data section passed to the writer so far
  std::vector<std::byte> copy_buffer_;  // the copies' read-back for the hash
  std::deque<Item> queue_;
  uint64_t queued_bytes_ = 0;
  bool closing_ = false;
  bool abort_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace fp4kit
