#include "convert/background_writer.h"

#include <utility>

namespace fp4kit {

BackgroundWriter::BackgroundWriter(io::SafetensorsWriter& writer, uint64_t max_queued_bytes, ShardHasher* hasher)
    : writer_(writer), hasher_(hasher), max_queued_bytes_(max_queued_bytes), thread_([this] { run(); }) {}

BackgroundWriter::~BackgroundWriter() {
  {
    std::lock_guard lock(mutex_);
    abort_ = true;
  }
  stop();
}

void BackgroundWriter::push(std::vector<std::byte> bytes) {
  std::unique_lock lock(mutex_);
  // One buffer larger than the bound still goes through, alone.
  changed_.wait(lock, [&] { return error_ || queue_.empty() || queued_bytes_ + bytes.size() <= max_queued_bytes_; });
  if (error_) std::rethrow_exception(error_);
  queued_bytes_ += bytes.size();
  queue_.push_back(std::move(bytes));
  changed_.notify_all();
}

void BackgroundWriter::finish() {
  stop();
  if (error_) std::rethrow_exception(error_);
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
    std::vector<std::byte> bytes;
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [&] { return abort_ || closing_ || !queue_.empty(); });
      if (abort_ || queue_.empty()) return;
      bytes = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      writer_.append(bytes);
      if (hasher_) hasher_->update(bytes);
    } catch (...) {
      std::lock_guard lock(mutex_);
      error_ = std::current_exception();
      queue_.clear();
      queued_bytes_ = 0;
      changed_.notify_all();
      return;
    }
    std::lock_guard lock(mutex_);
    queued_bytes_ -= bytes.size();
    changed_.notify_all();
  }
}

}  // namespace fp4kit
