#include "base/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace fp4kit {

unsigned default_threads() { return std::max(1u, std::thread::hardware_concurrency()); }

namespace {

// Worker threads kept for the whole process. A loop used to start and join its own threads on every
// call: 2484 thread starts in one `eval` of the tiny fixture (0.9 s), each tens of microseconds
// natively and far more under a hypervisor or AddressSanitizer.
//
// A call posts its job and runs pieces itself; idle workers join it (at most threads - 1 of them).
// When no piece is left, the caller takes the job off the list and waits for the workers still
// inside one of its pieces. A worker only takes up a job while idle, and a piece that itself calls
// parallel_for is the caller of that inner job, so every piece in flight is being run by a thread
// that makes progress: nesting cannot deadlock. One mutex guards the list and the counts, so that a
// worker never touches a job after the caller returned.
class WorkerPool {
 public:
  struct Job {
    const std::function<void(size_t, size_t)>* fn = nullptr;
    size_t n = 0, grain = 1, pieces = 0;
    unsigned helpers_allowed = 0;  // workers that may join
    std::atomic<size_t> next{0};   // the next piece to run
    unsigned helpers_joined = 0;   // guarded by mutex_
    unsigned helpers_inside = 0;   // guarded by mutex_
    std::exception_ptr error;      // the first exception; guarded by mutex_
  };

  static WorkerPool& instance() {
    // Never destroyed: workers may still wait on its condition variable while the process exits.
    static WorkerPool* pool = new WorkerPool;
    return *pool;
  }

  void run(Job& job) {
    {
      std::lock_guard lock(mutex_);
      grow(job.helpers_allowed);
      jobs_.push_back(&job);
    }
    work_.notify_all();
    run_pieces(job);
    std::unique_lock lock(mutex_);
    std::erase(jobs_, &job);
    done_.wait(lock, [&] { return job.helpers_inside == 0; });
  }

 private:
  WorkerPool() = default;

  // Enough workers for `helpers` to join one job (threads are added, never removed). Holds mutex_.
  void grow(unsigned helpers) {
    constexpr unsigned kMaxWorkers = 1024;
    while (workers_ < std::min(helpers, kMaxWorkers)) {
      std::thread([this] { work(); }).detach();
      ++workers_;
    }
  }

  void run_pieces(Job& job) {
    for (;;) {
      const size_t piece = job.next.fetch_add(1);
      if (piece >= job.pieces) return;
      try {
        (*job.fn)(piece * job.grain, std::min(job.n, (piece + 1) * job.grain));
      } catch (...) {
        std::lock_guard lock(mutex_);
        if (!job.error) job.error = std::current_exception();
        job.next.store(job.pieces);
      }
    }
  }

  Job* joinable() {
    for (Job* j : jobs_)
      if (j->helpers_joined < j->helpers_allowed && j->next.load() < j->pieces) return j;
    return nullptr;
  }

  void work() {
    std::unique_lock lock(mutex_);
    for (;;) {
      Job* job = nullptr;
      work_.wait(lock, [&] { return (job = joinable()) != nullptr; });
      ++job->helpers_joined;
      ++job->helpers_inside;
      lock.unlock();
      run_pieces(*job);
      lock.lock();
      if (--job->helpers_inside == 0) done_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable work_, done_;
  std::vector<Job*> jobs_;
  unsigned workers_ = 0;
};

}  // namespace

void parallel_for(size_t n, size_t grain, unsigned threads,
                  const std::function<void(size_t, size_t)>& fn) {
  if (n == 0) return;
  grain = std::max<size_t>(grain, 1);
  const size_t pieces = (n + grain - 1) / grain;
  const unsigned workers = static_cast<unsigned>(std::min<size_t>(std::max(threads, 1u), pieces));
  if (workers == 1) {
    for (size_t piece = 0; piece < pieces; ++piece) fn(piece * grain, std::min(n, (piece + 1) * grain));
    return;
  }
  WorkerPool::Job job;
  job.fn = &fn;
  job.n = n;
  job.grain = grain;
  job.pieces = pieces;
  job.helpers_allowed = workers - 1;
  WorkerPool::instance().run(job);
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace fp4kit
