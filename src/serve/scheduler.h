#pragma once
// Continuous batching over a sequence model (engine/sequence_model.h: the CPU engine, or the GPU
// pass). One scheduler thread owns the model. Requests wait in a
// bounded queue (submit() refuses when it is full: the caller answers 503 at once) and join the
// running batch when one of the `parallel` slots is free. Each running request keeps its own KV
// cache (a SequenceModel::Sequence). Each step, a request still reading its prompt runs the next
// chunk of it (at most `prefill_chunk` tokens, so that a long prompt does not stall the others for
// long), the chunks of one length together in one model call; then every request past its prompt
// advances by one token in ONE model call (the CPU engine puts their states side by side, each at
// its own position, so the weights are read once per call for all of them). The models compute
// every sequence on its own and a prompt in chunks as in one piece, so a request's tokens do not
// depend on what else runs beside it; when a call of several prompts fails, those that had not
// started run again alone, so that one request's failure is not its neighbours'.
// Callbacks run on the scheduler thread; a request whose `cancelled` flag is set (its client went
// away) leaves the batch before the next step.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/sequence_model.h"
#include "serve/metrics.h"
#include "serve/sampling.h"

namespace fp4kit::serve {

enum class FinishReason { Stop, Length, Abort, Error };
// What a request says after each token: go on, it hit a stop string, or its client is gone.
enum class TokenVerdict { Continue, Stop, Abort };

struct GenerationJob {
  std::vector<int64_t> prompt;
  SamplingParams sampling;
  int64_t max_tokens = 1;
  std::optional<int64_t> eos;  // finish (reason stop) after this token
  std::function<TokenVerdict(const SampledToken&)> on_token;
  std::function<void(FinishReason, const std::string& error)> on_finish;  // exactly once
  std::atomic<bool> cancelled{false};
  std::chrono::steady_clock::time_point arrival = std::chrono::steady_clock::now();
};

struct SchedulerOptions {
  int64_t parallel = 1;      // requests in the running batch
  int64_t max_waiting = 16;  // requests queued behind them
  int64_t prefill_chunk = 512;  // prompt tokens a request runs per step
};

class Scheduler {
 public:
  Scheduler(engine::SequenceModel& model, SchedulerOptions options, ServeMetrics& metrics);
  ~Scheduler();  // stop(), then waits for the scheduler thread
  // Finishes every request still queued or running with Abort and refuses new ones (server shutdown).
  void stop();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues the job; false when `max_waiting` jobs already wait beyond the free slots (the job is
  // not touched).
  bool submit(const std::shared_ptr<GenerationJob>& job);
  int64_t running() const { return running_; }
  // Jobs queued, including those about to take a free slot.
  int64_t waiting() const;
  // Decode steps run so far and the largest batch one of them had (for tests and the load report).
  int64_t steps() const { return steps_; }
  int64_t largest_batch() const { return largest_batch_; }

 private:
  struct Slot {
    explicit Slot(std::shared_ptr<GenerationJob> j) : job(std::move(j)) {}
    std::shared_ptr<GenerationJob> job;
    std::unique_ptr<engine::SequenceModel::Sequence> sequence;
    int64_t cached = 0;      // tokens in the sequence's cache (prompt ones included)
    int64_t last_token = 0;  // sampled, not yet run
    int64_t generated = 0;
    std::chrono::steady_clock::time_point last_time;
    bool done = false;
  };
  void loop();
  int64_t chunk_length(const Slot& slot) const;  // of the prompt's next chunk
  // The next chunk (n tokens) of each of these prompts, in one model call; a prompt's last chunk
  // gives its first token.
  void prefill_together(const std::vector<Slot*>& slots, int64_t n);
  void decode_step(const std::vector<Slot*>& slots);
  // What a model that draws its tokens is asked for each slot's next token.
  static std::vector<engine::TokenDraw> draws_of(const std::vector<Slot*>& slots);
  void record_step(std::chrono::steady_clock::time_point start, std::chrono::steady_clock::time_point end, size_t batch);
  void deliver(Slot& slot, const SampledToken& token);
  void finish(Slot& slot, FinishReason reason, const std::string& error = "");

  engine::SequenceModel& model_;
  SchedulerOptions options_;
  ServeMetrics& metrics_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<GenerationJob>> queue_;
  bool stopping_ = false;
  std::atomic<int64_t> running_{0}, steps_{0}, largest_batch_{0};
  std::thread thread_;
};

}  // namespace fp4kit::serve
