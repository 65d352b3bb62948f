#include "convert/background_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <utility>

#include "base/error.h"

namespace fp4kit {

BackgroundWriter::BackgroundWriter(io::SafetensorsWriter& writer, ShardDataStream& stream, uint64_t max_queued_bytes,
                                   ShardHasher* hasher, std::optional<OpenTempShard> temp)
    : writer_(writer),
      hasher_(hasher),
      max_queued_bytes_(max_queued_bytes),
      stream_(stream),
      temp_(temp),
      thread_([this] { run(); }) {}

BackgroundWriter::~BackgroundWriter() {
  {
    std::lock_guard lock(mutex_);
    abort_ = true;
  }
  stop();
  if (temp_) ::close(temp_->fd);
}

void BackgroundWriter::push(std::vector<std::byte> bytes) {
  std::unique_lock lock(mutex_);
  // One buffer larger than the bound still goes through, alone.
  changed_.wait(lock, [&] { return error_ || queue_.empty() || queued_bytes_ + bytes.size() <= max_queued_bytes_; });
  if (error_) std::rethrow_exception(error_);
  queued_bytes_ += bytes.size();
  queue_.push_back(Item{std::move(bytes)});
  changed_.notify_all();
}

void BackgroundWriter::push_copy(int src_fd, uint64_t src_offset, uint64_t bytes) {
  if (!temp_) throw Error("push_copy without a second descriptor on the shard");
  std::unique_lock lock(mutex_);
  // A copy holds no memory; it waits only behind an error.
  if (error_) std::rethrow_exception(error_);
  queue_.push_back(Item{{}, src_fd, src_offset, bytes});
  changed_.notify_all();
}

void BackgroundWriter::write_item(Item& item) {
  if (item.src_fd < 0) {
    stream_.append(item.bytes);
    if (hasher_) hasher_->update(item.bytes);
    position_ += item.bytes.size();
    return;
  }
  // The writer's stream moves on over a hole; the copy fills it in place.
  writer_.append_hole(item.copy_bytes);
  const RangeCopy c{item.src_fd, item.src_offset, temp_->fd, temp_->data_offset + position_, item.copy_bytes};
  copy_range(c, hasher_, copy_buffer_, writer_.path());
  position_ += item.copy_bytes;
  ::posix_fadvise(item.src_fd, static_cast<off_t>(item.src_offset), static_cast<off_t>(item.copy_bytes),
                  POSIX_FADV_DONTNEED);
}

void BackgroundWriter::finish() {
  stop();
  if (error_) std::rethrow_exception(error_);
  stream_.finish();
}

void BackgroundWriter::stop() {
  {
    std::lock_guard lock(mutex_);
    closing_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void BackgroundWriter::run() {
  for (;;) {
    Item item;
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [&] { return abort_ || closing_ || !queue_.empty(); });
      if (abort_ || queue_.empty()) return;
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      write_item(item);
    } catch (...) {
      std::lock_guard lock(mutex_);
      error_ = std::current_exception();
      queue_.clear();
      queued_bytes_ = 0;
      changed_.notify_all();
      return;
    }
    std::lock_guard lock(mutex_);
    queued_bytes_ -= item.bytes.size();
    changed_.notify_all();
  }
}

}  // namespace fp4kit
