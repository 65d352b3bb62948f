#pragma once
// A one-line progress meter on stderr: percent, GB/s and ETA. Silent when stderr is not a terminal
// unless forced, so that logs and pipes stay clean.
#include <chrono>
#include <cstdint>
#include <string>

namespace fp4kit::cli {

class Progress {
 public:
  Progress(std::string label, bool enabled);
  ~Progress();
  void update(uint64_t done, uint64_t total);
  void finish();

 private:
  std::string label_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

bool stderr_is_terminal();

}  // namespace fp4kit::cli
