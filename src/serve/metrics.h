#pragma once
// The server's Prometheus metrics, named as vLLM names them (with the fp4kit: prefix): requests
// running and waiting, prompt and generated token counters, finished requests by reason, and
// histograms of time to first token, inter-token latency and end-to-end latency (seconds); and, as
// fp4kit's own, where a decode step's time goes: the engine's call and the sampling of its tokens.
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace fp4kit::serve {

// A Prometheus histogram: cumulative bucket counts, sum and count.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  // The exposition lines for metric `name` (# HELP and # TYPE included).
  std::string render(const std::string& name, const std::string& help) const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mutex_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; the last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct ServeMetrics {
  ServeMetrics();
  std::atomic<uint64_t> prompt_tokens{0}, generation_tokens{0};
  std::atomic<uint64_t> finished_stop{0}, finished_length{0}, finished_abort{0}, finished_error{0};
  std::atomic<uint64_t> rejected_queue_full{0};
  Histogram time_to_first_token, inter_token_latency, e2e_latency;
  Histogram decode_step, sampling;  // per decode step: the engine's advance, then every token's draw
  // The whole page; `running` and `waiting` are read from the scheduler at the time of the scrape.
  std::string render(int64_t running, int64_t waiting) const;
};

}  // namespace fp4kit::serve
