#include "base/parallel.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace fp4kit {

unsigned default_threads() { return std::max(1u, std::thread::hardware_concurrency()); }

void parallel_for(size_t n, size_t grain, unsigned threads,
                  const std::function<void(size_t, size_t)>& fn) {
  if (n == 0) return;
  grain = std::max<size_t>(grain, 1);
  const size_t pieces = (n + grain - 1) / grain;
  const unsigned workers = static_cast<unsigned>(std::min<size_t>(std::max(threads, 1u), pieces));
  std::atomic<size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto run = [&] {
    for (;;) {
      const size_t piece = next.fetch_add(1);
      if (piece >= pieces) return;
      try {
        fn(piece * grain, std::min(n, (piece + 1) * grain));
      } catch (...) {
        std::lock_guard lock(error_mutex);
        if (!error) error = std::current_exception();
        next.store(pieces);
      }
    }
  };
  if (workers == 1) {
    run();
  } else {
    std::vector<std::thread> pool;
    pool.reserve(workers - 1);
    for (unsigned t = 1; t < workers; ++t) pool.emplace_back(run);
    run();
    for (auto& th : pool) th.join();
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace fp4kit
