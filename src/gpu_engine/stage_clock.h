#pragma once
// Where the device time of a layer goes: events recorded on the stream at stage boundaries, the
// time between two marks added to the stage that the second one names. Host work between the
// marks (routing read back, allocations, synchronisations) falls into the stage it delays, which is
// the time a stage really costs. Events are reused from layer to layer.
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cuda/runtime.h"

namespace fp4kit::gpu_engine {

class StageClock {
 public:
  // Starts a layer: drops the last layer's marks and records the first event. Without
  // device_times only the host's times are kept (no events: a decode step reads no device split,
  // and its ~30 event records cost the host more than some of its kernels take).
  void start(const cuda::Stream& s, bool device_times = true) {
    marks_.clear();
    host_.clear();
    device_times_ = device_times;
    record(s, "");
  }
  // The device time since the previous mark belongs to `stage`.
  void mark(const char* stage, const cuda::Stream& s) {
    if (!marks_.empty()) record(s, stage);
  }
  // Seconds per stage in order of first appearance (waits for the last event); none without
  // device times.
  std::vector<std::pair<std::string, double>> seconds() const {
    if (marks_.size() < 2 || !device_times_) return {};
    events_[marks_.size() - 1]->synchronize();
    return per_stage([this](size_t i) { return cuda::Event::elapsed_ms(*events_[i - 1], *events_[i]) / 1e3; });
  }
  // The host's seconds per stage, the same way: what the host spent between the marks (queueing
  // the stage's work, or waiting in it), whatever the device did meanwhile.
  std::vector<std::pair<std::string, double>> host_seconds() const {
    return per_stage([this](size_t i) { return std::chrono::duration<double>(host_[i] - host_[i - 1]).count(); });
  }

 private:
  void record(const cuda::Stream& s, const char* stage) {
    if (device_times_) {
      if (events_.size() == marks_.size()) events_.push_back(std::make_unique<cuda::Event>());
      events_[marks_.size()]->record(s);
    }
    marks_.emplace_back(stage);
    host_.push_back(std::chrono::steady_clock::now());
  }
  template <class Seconds>
  std::vector<std::pair<std::string, double>> per_stage(Seconds between) const {
    std::vector<std::pair<std::string, double>> out;
    for (size_t i = 1; i < marks_.size(); ++i) {
      const double s = between(i);
      auto it = out.begin();
      while (it != out.end() && it->first != marks_[i]) ++it;
      if (it == out.end()) out.emplace_back(marks_[i], s);
      else it->second += s;
    }
    return out;
  }
  bool device_times_ = true;
  std::vector<std::unique_ptr<cuda::Event>> events_;
  std::vector<std::string> marks_;
  std::vector<std::chrono::steady_clock::time_point> host_;
};

}  // namespace fp4kit::gpu_engine
