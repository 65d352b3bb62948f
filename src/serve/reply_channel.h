#pragma once
// The pieces of one response body, handed from the scheduler thread (which writes them as tokens
// arrive) to the HTTP thread (which sends them). The HTTP side calls cancel() when its client is
// gone, which the scheduler sees through the job's `cancelled` flag.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>

namespace fp4kit::serve {

class ReplyChannel {
 public:
  void push(std::string piece) {
    {
      std::lock_guard lock(mutex_);
      pieces_.push_back(std::move(piece));
    }
    ready_.notify_all();
  }
  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    ready_.notify_all();
  }
  // Blocks for the next piece; false once the channel is closed and drained.
  bool next(std::string& piece) {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [&] { return closed_ || !pieces_.empty(); });
    if (pieces_.empty()) return false;
    piece = std::move(pieces_.front());
    pieces_.pop_front();
    return true;
  }
  // Waits up to `timeout` for the close; true once closed (pieces may still be unread).
  bool wait_closed(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return ready_.wait_for(lock, timeout, [&] { return closed_; });
  }
  // Waits for the close and returns everything pushed, joined.
  std::string collect() {
    std::string all, piece;
    while (next(piece)) all += piece;
    return all;
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::string> pieces_;
  bool closed_ = false;
};

}  // namespace fp4kit::serve
