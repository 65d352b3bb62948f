#include "serve/metrics.h"

#include <algorithm>
#include <cstdio>

namespace fp4kit::serve {

namespace {
std::string metric_number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}
std::string counter(const std::string& name, const std::string& help, uint64_t v) {
  return "# HELP " + name + " " + help + "\n# TYPE " + name + " counter\n" + name + " " + std::to_string(v) + "\n";
}
std::string gauge(const std::string& name, const std::string& help, int64_t v) {
  return "# HELP " + name + " " + help + "\n# TYPE " + name + " gauge\n" + name + " " + std::to_string(v) + "\n";
}
}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  const size_t bucket = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  std::lock_guard lock(mutex_);
  ++counts_[bucket];
  sum_ += value;
  ++count_;
}

std::string Histogram::render(const std::string& name, const std::string& help) const {
  std::lock_guard lock(mutex_);
  std::string out = "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += name + "_bucket{le=\"" + metric_number(bounds_[i]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(count_) + "\n";
  out += name + "_sum " + metric_number(sum_) + "\n" + name + "_count " + std::to_string(count_) + "\n";
  return out;
}

ServeMetrics::ServeMetrics()
    : time_to_first_token({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}),
      inter_token_latency({0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0}),
      e2e_latency({0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0}),
      decode_step({0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0, 2.0, 4.0}),
      sampling({0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256}) {}

std::string ServeMetrics::render(int64_t running, int64_t waiting) const {
  std::string out;
  out += gauge("fp4kit:num_requests_running", "Requests in the running batch.", running);
  out += gauge("fp4kit:num_requests_waiting", "Requests queued for a slot.", waiting);
  out += counter("fp4kit:prompt_tokens_total", "Prompt tokens processed.", prompt_tokens);
  out += counter("fp4kit:generation_tokens_total", "Tokens generated.", generation_tokens);
  out += "# HELP fp4kit:request_success_total Finished requests by finish reason.\n"
         "# TYPE fp4kit:request_success_total counter\n";
  out += "fp4kit:request_success_total{finished_reason=\"stop\"} " + std::to_string(finished_stop) + "\n";
  out += "fp4kit:request_success_total{finished_reason=\"length\"} " + std::to_string(finished_length) + "\n";
  out += "fp4kit:request_success_total{finished_reason=\"abort\"} " + std::to_string(finished_abort) + "\n";
  out += counter("fp4kit:request_failure_total", "Requests ended by an engine error.", finished_error);
  out += counter("fp4kit:request_rejected_total", "Requests refused with 503 because the queue was full.", rejected_queue_full);
  out += time_to_first_token.render("fp4kit:time_to_first_token_seconds", "Time from arrival to the first generated token.");
  out += inter_token_latency.render("fp4kit:inter_token_latency_seconds", "Time between consecutive generated tokens.");
  out += e2e_latency.render("fp4kit:e2e_request_latency_seconds", "Time from arrival to the last token.");
  out += decode_step.render("fp4kit:decode_step_seconds", "The engine's time for one decode step of the running batch.");
  out += sampling.render("fp4kit:sampling_seconds", "Time to draw the tokens of one decode step.");
  return out;
}

}  // namespace fp4kit::serve
