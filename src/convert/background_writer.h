#pragma once
// Writes a shard's data on a thread of its own, so that reading and computing the next tensors
// overlap with writing the last ones. Buffers queue in order, bounded by bytes: memory stays a few
// tensors whatever the checkpoint. A write error stops the thread and comes back to the producer
// at its next push() or at finish().
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "convert/shard_hash.h"
#include "io/safetensors_writer.h"

namespace fp4kit {

class BackgroundWriter {
 public:
  // `hasher` (optional) sees every byte written, in order.
  BackgroundWriter(io::SafetensorsWriter& writer, uint64_t max_queued_bytes, ShardHasher* hasher = nullptr);
  BackgroundWriter(const BackgroundWriter&) = delete;
  BackgroundWriter& operator=(const BackgroundWriter&) = delete;
  // Without finish() (an exception on the producer's side): stops after the current write.
  ~BackgroundWriter();

  // Appends `bytes` to the writer's data stream after everything pushed before. Waits while the
  // queue is full; rethrows a write error the thread met.
  void push(std::vector<std::byte> bytes);
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
  std::deque<std::vector<std::byte>> queue_;
  uint64_t queued_bytes_ = 0;
  bool closing_ = false;
  bool abort_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace fp4kit
